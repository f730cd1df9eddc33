"""Notebook 01's two data paths end to end: the generated corpus, and the real LAION path
(DuckDB sampling, then the real img2dataset) run offline against the generated corpus's images
served on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pandas as pd
import pytest
import torch
from loopback import serve_folder
from mt_models import build_mt_model

from xlr.config import parse_params
from xlr.data.img2dataset_shards import load_downloaded
from xlr.data.laion.translate import Seq2SeqTranslator, TranslationCache
from xlr.data.prepare import (
    caption_noise,
    caption_sources,
    eval_sets,
    finetune_pool,
    held_out_overlaps,
    input_language_counts,
    prepare_data,
    read_contract,
    sampled_language_counts,
    val_sets,
)
from xlr.data.synthetic import NOISE_KINDS, generate_corpus, load_pool
from xlr.train.pairs import pair_graph

SYNTHETIC = {"pretrain_images": 300, "finetune_images": 40, "eval_images": 20, "shard_size": 100}


@pytest.fixture(scope="module")
def served_corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A generated corpus whose LAION-schema URLs point at a loopback server over its images."""
    root = tmp_path_factory.mktemp("www")
    params = parse_params(
        {"run": {"name": "c"}, "data": {"train_langs": ["en", "de"], "synthetic": SYNTHETIC}}
    )
    with serve_folder(root) as url:
        base_url = f"{url}/corpus/images"
        yield generate_corpus(
            params.data.synthetic, root / "corpus", progress=False, base_url=base_url
        )


def test_synthetic_path_writes_the_contract(tmp_path: Path) -> None:
    params = parse_params(
        {
            "run": {"name": "s", "runs_dir": str(tmp_path / "runs"), "cache_dir": str(tmp_path)},
            "data": {"train_langs": ["en", "de"], "heldout_langs": ["ja"], "synthetic": SYNTHETIC},
        }
    )
    with pytest.raises(FileNotFoundError, match="run notebook 01_data_sampling"):
        finetune_pool(params)
    contract = prepare_data(params, progress=False)
    assert read_contract(params) == json.loads(json.dumps(contract))
    assert set(finetune_pool(params).captions["lang"]) == {"en", "de"}  # held-out stays unseen
    evaluation = eval_sets(params)["synthetic"]
    assert set(evaluation.captions["lang"]) == {"en", "de", "ja"}
    assert evaluation.parallel is True  # declared by load_pool, kept
    validation = val_sets(params)["synthetic"]
    assert validation.name == "synthetic-val" and len(validation) == SYNTHETIC["eval_images"]
    assert set(validation.captions["lang"]) == {"en", "de", "ja"} and validation.parallel
    assert not set(validation.captions["caption"]) & set(evaluation.captions["caption"])
    counts = sampled_language_counts(contract)
    assert sum(counts.values()) == SYNTHETIC["pretrain_images"] and counts["en"] > counts["de"]
    assert input_language_counts(contract) is None
    audit = held_out_overlaps(contract)
    assert set(audit["pool"]) == {"val", "eval"}
    assert (audit[["shared_compositions", "shared_texts"]] == 0).all().all()
    noise = caption_noise(params)  # one label per fine-tuning caption, every language
    pool = load_pool(Path(contract["corpus"]), "finetune").captions
    assert len(noise) == len(pool) and set(noise["noise"]) <= set(NOISE_KINDS)
    assert set(noise["noise"]) > {"clean"}  # the pool's planted noise is labelled


@pytest.mark.skipif(importlib.util.find_spec("img2dataset") is None, reason="needs img2dataset")
def test_a_download_without_images_is_an_error_naming_its_report(
    served_corpus: Path, tmp_path: Path
) -> None:
    """Every URL dead (nothing listens on port 1): notebook 01 stops with where to look."""
    metadata = pd.read_parquet(served_corpus / "pretrain" / "metadata.parquet")
    metadata["URL"] = "http://127.0.0.1:1/gone.jpg?" + metadata["URL"]  # still unique
    dead = tmp_path / "dead.parquet"
    metadata.to_parquet(dead)
    params = parse_params(
        {
            "run": {"name": "d", "runs_dir": str(tmp_path / "runs"), "device": "cpu"},
            "data": {
                "source": "laion",
                "train_langs": ["en", "de"],
                "laion": {
                    "inputs": {"metadata": [str(dead)], "translations": [str(dead)]},
                    "quotas": {"counts": {"en": 4, "de": 4}},
                    "filters": {"min_similarity": 0.25},
                    "download": {"processes": 1, "threads": 4, "image_size": 32},
                },
            },
            "model": {"kind": "open_clip"},
            "eval": {"benchmarks": ["xtd10"]},
        }
    )
    with pytest.raises(ValueError, match=r"no image in the shards \(8 sampled rows failed.*"
                       r"download_report.json"):  # fmt: skip
        prepare_data(params, progress=False)


def test_laion_path_offline(served_corpus: Path, tmp_path: Path) -> None:
    metadata = served_corpus / "pretrain" / "metadata.parquet"
    params = parse_params(
        {
            "run": {
                "name": "l",
                "runs_dir": str(tmp_path / "runs"),
                "device": "cpu",
                "cache_dir": str(tmp_path / "cache"),
            },  # fmt: skip
            "data": {
                "source": "laion",
                "train_langs": ["en", "de", "hi"],
                "heldout_langs": [],
                "laion": {
                    # the generated metadata carries ENG TEXT, like the translated release
                    "inputs": {"metadata": [str(metadata)], "translations": [str(metadata)]},
                    "quotas": {"counts": {"en": 12, "de": 6, "hi": 40}},
                    "filters": {"min_similarity": 0.25},
                    "download": {"processes": 1, "threads": 4, "image_size": 32},
                    "val_fraction": 0.2,
                },
            },
            "model": {"kind": "open_clip"},
            "eval": {"benchmarks": ["xtd10"]},
        }
    )
    contract = prepare_data(params, progress=False)
    manifest = json.loads(Path(contract["sample_manifest"]).read_text())
    assert "hi" in manifest["shortfalls"]  # a rare language falls short and is reported
    counts = sampled_language_counts(contract)
    assert counts["en"] == 12 and counts["de"] == 6 and counts["hi"] < 40
    before = input_language_counts(contract)
    assert sum(before.values()) == SYNTHETIC["pretrain_images"]
    assert all(before[lang] >= n for lang, n in counts.items())
    assert contract["download_failed"] == 0
    pool = finetune_pool(params)
    validation = val_sets(params)["laion"]
    # a seeded fifth of the images (at most) is held out for validation, by image
    assert len(pool) + len(validation) == sum(counts.values())
    assert len(validation) == int(0.2 * sum(counts.values()))  # rounded down: at most 0.2
    assert not set(pool.image_keys) & set(validation.image_keys)
    assert validation.name == "laion-val" and validation.parallel
    # ENG TEXT gives every non-English image an English caption: the cross arms' parallel text
    english = pool.captions[pool.captions["lang"] == "en"]
    assert english["image_id"].nunique() == len(pool)
    assert contract["benchmarks"]["xtd10"].endswith("data/benchmarks/xtd10")
    audit = held_out_overlaps(contract)
    assert audit[["shared_images", "shared_texts"]].sum().sum() == 0
    # the same shards as if downloaded elsewhere: used as they are, nothing sampled or fetched
    spec = params.model_dump()
    spec["run"]["name"] = "given"
    spec["data"]["laion"]["shards"] = contract["shards"]
    given = parse_params(spec)
    reused = prepare_data(given, progress=False)
    assert reused["given_shards"] == ["00000"] and "sample" not in reused
    assert sampled_language_counts(reused) == counts
    assert input_language_counts(reused) is None and reused["download_failed"] == 0
    assert val_sets(given)["laion"].image_keys == validation.image_keys  # seeded, by image
    # translated: every image gets the training languages it lacks, from its English caption
    model = build_mt_model(tmp_path / "m2m100", "m2m100")
    spec["run"]["name"] = "translated"
    spec["data"]["laion"]["translate"] = {
        "model": str(model),
        "family": "m2m100",
        "max_new_tokens": 4,
    }
    translated = parse_params(spec)
    # the tiny random model translates every caption alike, which would join all images into one
    # group the split rightly refuses; so the cache holds distinct translations first, which
    # translate_pool reads back (generation itself: tests/test_laion_translate.py)
    translator = Seq2SeqTranslator(translated.data.laion.translate, torch.device("cpu"))
    captions = load_downloaded(Path(contract["shards"]), eng_text=True).captions
    english = set(
        captions.loc[(captions["lang"] == "en") & (captions["caption_idx"] == 0), "caption"]
    )
    with closing(TranslationCache(tmp_path / "cache" / "translations.sqlite")) as cache:
        for lang in ("de", "hi"):
            cache.store(translator.identity(lang), lang, [(t, f"{t} ({lang})") for t in english])
    prepare_data(translated, progress=False)
    pool = finetune_pool(translated)
    assert val_sets(translated)["laion"].image_keys == validation.image_keys
    machine = pool.captions[pool.captions["translated_by"].str.startswith(str(model))]
    own = pool.captions[pool.captions["translated_by"] == ""]
    for lang in ("de", "hi"):
        assert (machine["lang"] == lang).sum() == len(pool) - (own["lang"] == lang).sum()
    graph = pair_graph(pool.captions, ["en", "de", "hi"], batch_size=4)
    assert graph.images[("de", "hi")] == len(pool) and not graph.dropped
    assert caption_sources(pool).loc["hi", "machine-translated"] == (machine["lang"] == "hi").sum()
    assert len(finetune_pool(given)) == len(pool)
