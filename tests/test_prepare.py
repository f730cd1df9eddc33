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
import pyarrow as pa
import pytest
import torch
from loopback import serve_folder
from mt_models import build_mt_model
from test_benchmarks import COCO_NAMES, xtd10_tree
from test_laion_near_duplicates import jpeg, photo

from xlr.config import Params, parse_params
from xlr.data.img2dataset_shards import load_downloaded
from xlr.data.laion import holdout, near_duplicates
from xlr.data.laion.translate import Seq2SeqTranslator, TranslationCache
from xlr.data.overview import (
    benchmark_copies,
    caption_sources,
    held_out_overlaps,
    input_language_counts,
    language_counts,
    sampled_language_counts,
)
from xlr.data.prepare import (
    BENCHMARK_OVERLAP,
    caption_noise,
    eval_sets,
    finetune_pool,
    prepare_data,
    read_contract,
    val_sets,
)
from xlr.data.shards import Sample, sample_key, write_shards
from xlr.data.synthetic import NOISE_KINDS, corpus_overlaps, generate_corpus, load_pool
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
    assert input_language_counts(contract) is None and benchmark_copies(contract) is None
    audit = held_out_overlaps(contract)
    assert set(audit["pool"]) == {"val", "eval"}
    assert (audit[["shared_compositions", "shared_texts"]] == 0).all().all()
    noise = caption_noise(params)  # one label per fine-tuning caption, every language
    pool = load_pool(Path(contract["corpus"]), "finetune").captions
    assert len(noise) == len(pool) and set(noise["noise"]) <= set(NOISE_KINDS)
    assert set(noise["noise"]) > {"clean"}  # the pool's planted noise is labelled


def test_synthetic_path_refuses_a_corpus_whose_held_out_pools_leak(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's promise that prepare_data (so notebook 01 and `xlr prepare`) refuses a corpus
    whose evaluation captions leak into training: check_held_out alone is tested in test_world,
    so here the audit of the corpus on disk reports two evaluation captions that fine-tuning
    also says, and no contract may be written; with the honest audit the same corpus passes."""
    params = parse_params(
        {
            "run": {"name": "leak", "runs_dir": str(tmp_path / "runs"), "cache_dir": str(tmp_path)},
            "data": {"train_langs": ["en", "de"], "heldout_langs": ["ja"], "synthetic": SYNTHETIC},
        }
    )

    def leaking(corpus: Path) -> pd.DataFrame:
        audit = corpus_overlaps(corpus)
        row = (audit["pool"] == "eval") & (audit["against"] == "finetune")
        assert row.sum() == 1
        audit.loc[row, "shared_texts"] = 2
        return audit

    monkeypatch.setattr("xlr.data.prepare.corpus_overlaps", leaking)
    with pytest.raises(ValueError) as err:
        prepare_data(params, progress=False)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'corpus'}")
    assert "held-out pools leak (eval vs finetune: shared_texts 2)" in message
    assert message.endswith("delete the folder and run `xlr prepare` again")
    with pytest.raises(FileNotFoundError, match="run notebook 01_data_sampling"):
        read_contract(params)
    monkeypatch.undo()
    assert prepare_data(params, progress=False)["source"] == "synthetic"


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
                "benchmark_root": str(xtd10_tree(tmp_path / "benchmarks" / "xtd10").parent),
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
    # a seeded fifth of the images (at most) is held out for validation, by image, less the
    # validation images that are copies of training images (the generated corpus draws its
    # scenes with replacement, so some are); none is a copy of the benchmark's two images
    excluded = json.loads(Path(contract["excluded_images"]).read_text())
    assert excluded["benchmark_copies"] == {}
    copies = len(excluded["validation_copies"])
    assert len(pool) + len(validation) + copies == sum(counts.values())
    assert len(validation) + copies == int(0.2 * sum(counts.values()))  # rounded down
    assert not set(pool.image_keys) & set(validation.image_keys)
    assert validation.name == "laion-val" and validation.parallel
    # ENG TEXT gives every non-English image an English caption: the cross arms' parallel text
    english = pool.captions[pool.captions["lang"] == "en"]
    assert english["image_id"].nunique() == len(pool)
    assert contract["benchmarks"]["xtd10"] == str(tmp_path / "benchmarks" / "xtd10")
    audit = held_out_overlaps(contract)
    assert audit[["shared_images", "shared_texts", "near_duplicate_pairs"]].sum().sum() == 0
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
    shards = Path(contract["shards"])
    captions = load_downloaded(shards, langs=contract["train_langs"], eng_text=True).captions
    english = set(
        captions.loc[(captions["lang"] == "en") & (captions["caption_idx"] == 0), "caption"]
    )
    with closing(TranslationCache(tmp_path / "cache" / "translations.sqlite")) as cache:
        for lang in ("de", "hi"):
            cache.store(translator.identity(lang), lang, [(t, f"{t} ({lang})") for t in english])
    prepare_data(translated, progress=False)
    pool = finetune_pool(translated)
    assert val_sets(translated)["laion"].image_keys == validation.image_keys
    assert len(pool) == len(finetune_pool(params))
    machine = pool.captions[pool.captions["translated_by"].str.startswith(str(model))]
    own = pool.captions[pool.captions["translated_by"] == ""]
    for lang in ("de", "hi"):
        assert (machine["lang"] == lang).sum() == len(pool) - (own["lang"] == lang).sum()
    graph = pair_graph(pool.captions, ["en", "de", "hi"], batch_size=4)
    assert graph.images[("de", "hi")] == len(pool) and not graph.dropped
    assert caption_sources(pool).loc["hi", "machine-translated"] == (machine["lang"] == "hi").sum()
    assert len(finetune_pool(given)) == len(pool)
    # paraphrased: each fine-tuning caption's round trip, mono's text-text target; validation
    # gets none, and the captions every batch queries and pairs stay as they were
    spec["run"]["name"] = "paraphrased"
    spec["data"]["laion"]["translate"]["paraphrase_via"] = ["es", "it"]
    paraphrased = parse_params(spec)
    assert "paraphrases" in prepare_data(paraphrased, progress=False)
    rich = finetune_pool(paraphrased).captions
    marked = rich["target_only"].to_numpy(bool)
    kept = rich[~marked].drop(columns="target_only").reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, pool.captions.reset_index(drop=True))
    round_trips = rich[marked]
    assert len(round_trips) and set(round_trips["translated_by"].str[:17]) == {"round trip via es"}
    written = pd.read_parquet(prepare_data(paraphrased, progress=False)["paraphrases"])
    keys = finetune_pool(paraphrased).image_keys  # each round trip on its own image's row
    assert [keys[i] for i in round_trips["image_id"]] == written["image_key"].tolist()
    assert round_trips["caption"].tolist() == written["caption"].tolist()
    assert language_counts({"p": finetune_pool(paraphrased)}).equals(
        language_counts({"p": pool})
    )  # the round trips are counted apart (caption_sources)
    assert "target_only" not in val_sets(paraphrased)["laion"].captions
    assert caption_sources(finetune_pool(paraphrased))["round trip"].sum() == marked.sum()
    rich_graph = pair_graph(rich, ["en", "de", "hi"], batch_size=4)
    assert rich_graph.images == graph.images
    assert rich_graph.paraphrases == round_trips.groupby("lang")["image_id"].nunique().to_dict()


def given_shards(folder: Path, images: list[bytes], captions: list[str]) -> Path:
    """img2dataset-layout shards of German ``images`` with their ``captions`` and an ENG TEXT."""
    samples = [
        Sample(f"http://x/{i}.jpg", text, data, 64, 64,
               {"LANGUAGE": "de", "ENG TEXT": f"{text} (en)"})
        for i, (data, text) in enumerate(zip(images, captions, strict=True))
    ]  # fmt: skip
    additional = pa.schema([("LANGUAGE", pa.string()), ("ENG TEXT", pa.string())])
    write_shards(samples, folder, 100, additional)
    return folder


def xtd10_and_a_pool(tmp_path: Path, run: str, images: list[bytes], captions: list[str]) -> Params:
    """LAION-path params over XTD10 (its two COCO photos as JPEGs) and shards of ``images``
    with ``captions`` (German), a fifth of the pool held out for validation."""
    benchmarks = tmp_path / "benchmarks"
    xtd10 = xtd10_tree(benchmarks / "xtd10")
    for i, name in enumerate(COCO_NAMES):
        (xtd10 / "images" / name).write_bytes(jpeg(photo(100 + i), quality=95))
    shards = given_shards(tmp_path / "shards", images, captions)
    return parse_params(
        {
            "run": {"name": run, "runs_dir": str(tmp_path / "runs"), "device": "cpu"},
            "data": {
                "source": "laion",
                "train_langs": ["en", "de"],
                "benchmark_root": str(benchmarks),
                "laion": {"shards": str(shards), "val_fraction": 0.2},
            },
            "model": {"kind": "open_clip"},
            "eval": {"benchmarks": ["xtd10"]},
        }
    )


def test_laion_copies_of_benchmark_and_training_images_leave_the_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Image 0 of the pool is a resized, re-encoded copy of a benchmark image: it leaves
    training and validation, and the audit counts it. Images 1-6 are each the same photo as one
    of images 34-39 under another key, with another caption: no twin of a training image stays
    in validation. A second run reads every pHash from the cache."""
    images = [jpeg(photo(100), quality=40, scale=0.5)] + [jpeg(photo(i)) for i in range(1, 40)]
    images[34:40] = images[1:7]
    captions = [f"Bild {i}" for i in range(34)] + [f"Foto {i} vom Strand" for i in range(1, 7)]
    params = xtd10_and_a_pool(tmp_path, "dedup", images, captions)
    keys = [sample_key(0, i, 100) for i in range(40)]
    twin = {keys[i]: keys[i + 33] for i in range(1, 7)} | {
        keys[i + 33]: keys[i] for i in range(1, 7)
    }
    contract = prepare_data(params, progress=False)
    train, val = finetune_pool(params).image_keys, val_sets(params)["laion"].image_keys
    excluded = json.loads(Path(contract["excluded_images"]).read_text())
    assert excluded["benchmark_copies"] == {keys[0]: ["xtd10"]}
    assert keys[0] not in train + val
    repeats = excluded["validation_copies"]
    assert repeats and all(twin[key] in train for key in repeats)  # seed 0 cuts a pair
    assert not set(repeats) & set(train + val)
    assert sorted(train + val + repeats + [keys[0]]) == keys
    assert not [key for key in val if twin.get(key) in train]
    assert Path(contract["benchmark_overlap"]).name == BENCHMARK_OVERLAP
    assert benchmark_copies(contract).to_dict("records") == [
        {"benchmark": "xtd10", "benchmark_images": 2, "radius_bits": 10, "removed_from_pool": 1,
         "left_in_finetune": 0, "left_in_val": 0}
    ]  # fmt: skip
    audit = held_out_overlaps(contract)
    assert audit["near_duplicate_pairs"].tolist() == [0]
    assert audit["val_images"].tolist() == [len(val)] and len(val) + len(repeats) == 7

    # a re-run hashes nothing again and splits alike
    def refuse(image: object) -> None:
        raise AssertionError("hashed again")

    monkeypatch.setattr(near_duplicates, "phash_code", refuse)
    again = prepare_data(params, progress=False)
    assert json.loads(Path(again["excluded_images"]).read_text()) == excluded
    assert val_sets(params)["laion"].image_keys == val

    # a failed audit leaves what it audited to be read; a refused hold-out writes no split
    def refused(*args: object) -> None:
        raise ValueError("refused here")

    written = [Path(again[name]) for name in ("audit", "benchmark_overlap", "excluded_images")]
    for path in written:
        path.unlink()
    monkeypatch.setattr(holdout, "check_holdout", refused)
    with pytest.raises(ValueError, match="refused here"):
        prepare_data(params, progress=False)
    assert all(path.is_file() for path in written)
    written[2].unlink()
    monkeypatch.setattr(near_duplicates, "check_copies_left_enough", refused)
    with pytest.raises(ValueError, match="refused here"):
        prepare_data(params, progress=False)
    assert not written[2].exists()


def test_laion_path_stops_on_a_benchmark_copy_left_in_the_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's "a copy left stops notebook 01": image 0 of the pool is a copy of an XTD10
    photo, and the removal is made to miss it (copies_of finds none), so it stays in training
    or validation. prepare_data must refuse, naming the benchmark, after writing the
    benchmark_overlap.csv that counts it, and write no contract."""
    images = [jpeg(photo(100), quality=40, scale=0.5)] + [jpeg(photo(i)) for i in range(1, 10)]
    params = xtd10_and_a_pool(tmp_path, "left", images, [f"Bild {i}" for i in range(10)])

    def missed(*args: object) -> dict[str, list[str]]:
        return {}

    monkeypatch.setattr(near_duplicates, "copies_of", missed)
    left = r"^1 copies of benchmark images are left in the LAION pool after their removal: "
    with pytest.raises(ValueError, match=left + r"\[\{'benchmark': 'xtd10'.*report it$"):
        prepare_data(params, progress=False)
    data = tmp_path / "runs" / "left" / "data"
    overlap = pd.read_csv(data / BENCHMARK_OVERLAP)
    assert overlap[["left_in_finetune", "left_in_val"]].to_numpy().tolist() in ([[1, 0]], [[0, 1]])
    assert not (data / "data.json").exists()


def test_laion_path_needs_the_benchmarks_before_the_split(tmp_path: Path) -> None:
    shards = given_shards(tmp_path / "shards", [jpeg(photo(i)) for i in range(10)],
                          [f"Bild {i}" for i in range(10)])  # fmt: skip
    params = parse_params(
        {
            "run": {"name": "nob", "runs_dir": str(tmp_path / "runs"), "device": "cpu"},
            "data": {"source": "laion", "train_langs": ["en", "de"],
                     "benchmark_root": str(tmp_path / "none"),
                     "laion": {"shards": str(shards), "val_fraction": 0.2}},
            "model": {"kind": "open_clip"},
            "eval": {"benchmarks": ["xtd10"]},
        }
    )  # fmt: skip
    with pytest.raises(FileNotFoundError, match=r"none/xtd10.*published at.*Notebook 01 removes "
                       r"copies of the evaluation benchmarks' images"):  # fmt: skip
        prepare_data(params, progress=False)
