"""Machine translation of a LAION pool (``data.laion.translate``) with tiny random-weight M2M100
and NLLB models built offline: the cache, resuming, batching, the language codes, the params
errors, and a LAION-shaped pool whose translations make every pair of languages trainable."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

import huggingface_hub
import numpy as np
import pandas as pd
import pytest
import torch
from mt_models import TEXTS, build_marian_model, build_mt_model
from transformers import M2M100ForConditionalGeneration

from xlr.config import ParamsError, parse_params
from xlr.data.imagetext import ArrayImages, ImageTextSet
from xlr.data.laion.translate import (
    LOOKUP_CHUNK,
    Seq2SeqTranslator,
    TranslationCache,
    TranslationError,
    model_language,
    model_revision,
    translate_pool,
    with_translations,
)
from xlr.data.translate_settings import TranslateSection
from xlr.train.batching import BatchSampler
from xlr.train.pairs import pair_graph

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mt")
    return {family: build_mt_model(root / family, family) for family in ("m2m100", "nllb")}


@pytest.fixture
def generations(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Every ``generate`` call of the real model, with its keyword arguments."""
    calls: list[dict] = []
    real = M2M100ForConditionalGeneration.generate

    def counted(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(kwargs)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(M2M100ForConditionalGeneration, "generate", counted)
    return calls


def laion_pool(images: int) -> ImageTextSet:
    """LAION's shape: image ``i`` captioned in de, fr or en by turn; de and fr images also carry
    ENG TEXT (their English caption), marked as LAION's translation."""
    rows = []
    for i in range(images):
        own = ["de", "fr", "en"][i % 3]
        english = f"{TEXTS[i % len(TEXTS)]} {i}"
        rows.append((i, own, 0, english if own == "en" else f"{own} caption {i}", ""))
        if own != "en":
            rows.append((i, "en", 0, english, "ENG TEXT"))
    captions = pd.DataFrame(
        rows, columns=["image_id", "lang", "caption_idx", "caption", "translated_by"]
    )
    pixels = np.zeros((images, 4, 4, 3), dtype=np.uint8)
    return ImageTextSet("laion", [f"{i:05d}" for i in range(images)], ArrayImages(pixels), captions)


def settings(model: Path, family: str = "m2m100", **more: int | str) -> TranslateSection:
    return TranslateSection(model=str(model), family=family, max_new_tokens=6, **more)


def test_second_run_is_all_cache_hits(models: dict, generations: list, tmp_path: Path) -> None:
    pool = laion_pool(9)
    translator = Seq2SeqTranslator(settings(models["m2m100"], batch_size=4), CPU)
    cache = tmp_path / "cache.sqlite"
    first = translate_pool(pool.captions, pool.image_keys, ["en", "de", "fr"], translator, cache)
    # 6 images lack de (3 fr + 3 en): 2 batches of 4; the same for fr
    assert len(generations) == 4
    assert set(first["lang"]) == {"de", "fr"} and len(first) <= 12
    generations.clear()
    fresh = Seq2SeqTranslator(settings(models["m2m100"], batch_size=4), CPU)
    again = translate_pool(pool.captions, pool.image_keys, ["en", "de", "fr"], fresh, cache)
    assert generations == [] and not fresh._loaded  # no model even loaded
    pd.testing.assert_frame_equal(first, again)


def test_a_replaced_model_folder_translates_afresh(generations: list, tmp_path: Path) -> None:
    folder = build_mt_model(tmp_path / "m2m100", "m2m100")
    pool = laion_pool(6)  # 4 images lack de: one batch
    cache = tmp_path / "cache.sqlite"

    def run() -> pd.DataFrame:
        generations.clear()
        translator = Seq2SeqTranslator(settings(folder, batch_size=8), CPU)
        return translate_pool(pool.captions, pool.image_keys, ["de"], translator, cache)

    first = run()
    assert len(generations) == 1
    run()
    assert generations == []  # the same folder: all cache hits
    model = M2M100ForConditionalGeneration.from_pretrained(folder)
    with torch.no_grad():
        model.model.shared.weight.mul_(-1.0)  # other weights, the same size
    model.save_pretrained(folder)
    again = run()
    assert len(generations) == 1  # the new weights translate again
    assert set(first["translated_by"]).isdisjoint(again["translated_by"])
    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT COUNT(DISTINCT translator) FROM translations").fetchone()[0] == 2
    # a config edited in place, its time stamp kept: read by content; hidden files are not read
    before = model_revision(str(folder))
    (folder / ".notes").write_text("not the model")
    assert model_revision(str(folder)) == before
    config = folder / "generation_config.json"
    stamp = config.stat()
    config.write_text(config.read_text().replace("{", '{"num_beams": 2, ', 1))
    os.utime(config, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert model_revision(str(folder)) != before


def test_a_hub_model_is_keyed_by_its_cached_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--someone--mt-model"

    def cached(commit: str) -> None:
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "config.json").write_text("{}")
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(commit)

    assert model_revision("someone/mt-model") is None  # not downloaded: the translator loads it
    cached("a1b2c3")
    hub = TranslateSection(model="someone/mt-model", family="m2m100", max_new_tokens=6)
    translator = Seq2SeqTranslator(hub, CPU)
    assert translator.identity("de") == "someone/mt-model rev=a1b2c3 beams=1 max=6"
    assert not translator._loaded  # read from the cache's folders, no model loaded
    cached("d4e5f6")  # the hub model updated
    assert Seq2SeqTranslator(hub, CPU).identity("de").startswith("someone/mt-model rev=d4e5f6 ")


def test_the_cache_reads_back_more_texts_than_one_query_holds(tmp_path: Path) -> None:
    """Lookups go ``LOOKUP_CHUNK`` texts a query: every stored text comes back with its own
    translation across chunk edges, quotes and non-ASCII included, and no text is invented."""
    texts = [f'a "quoted" caption {i} ünïcode\'s' for i in range(2 * LOOKUP_CHUNK + 7)]
    with closing(TranslationCache(tmp_path / "c.sqlite")) as cache:
        cache.store("mt", "de", [(text, f"de {i}") for i, text in enumerate(texts[:-5])])
        cache.store("other mt", "de", [(texts[-1], "from another translator")])
        found = cache.lookup("mt", "de", texts)
    assert found == {text: f"de {i}" for i, text in enumerate(texts[:-5])}


def test_a_bf16_translator_loads_bf16_weights_and_keys_its_translations_apart(
    models: dict, generations: list, tmp_path: Path
) -> None:
    """``precision`` is the dtype the weights load in; its translations differ from fp32's in
    the last bits, so they are cached under their own key (fp32 keeps the key it always had)."""
    pool = laion_pool(3)
    cache = tmp_path / "c.sqlite"
    fp32 = Seq2SeqTranslator(settings(models["m2m100"], batch_size=4), CPU)
    bf16 = Seq2SeqTranslator(settings(models["m2m100"], batch_size=4, precision="bf16"), CPU)
    assert bf16.identity("de") == fp32.identity("de") + " dtype=bf16"
    assert "dtype" not in fp32.identity("de")
    translate_pool(pool.captions, pool.image_keys, ["de"], fp32, cache)
    table = translate_pool(pool.captions, pool.image_keys, ["de"], bf16, cache)
    assert len(generations) == 2  # nothing of fp32's reused
    _, model = bf16._loaded[str(models["m2m100"])]
    assert {param.dtype for param in model.parameters()} == {torch.bfloat16}
    assert (table["translated_by"] == bf16.identity("de")).all()
    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT COUNT(DISTINCT translator) FROM translations").fetchone()[0] == 2


def test_the_precision_at_its_default_leaves_a_runs_identity_alone(models: dict) -> None:
    """Runs from before ``precision`` existed keep their params hash (arm and tuning keys);
    another dtype changes it, and fp16 off CUDA is refused as training refuses it."""
    translate = {"model": str(models["m2m100"]), "family": "m2m100"}
    before = parse_params(_laion_params(translate)).weights_hash("data")
    auto = parse_params(_laion_params({**translate, "precision": "auto"}))
    assert auto.weights_hash("data") == before
    assert (
        parse_params(_laion_params({**translate, "precision": "bf16"})).weights_hash("data")
        != before
    )
    with pytest.raises(TranslationError, match="fp16 is for GPUs without bf16"):
        Seq2SeqTranslator(settings(models["m2m100"], precision="fp16"), CPU)


def test_batches_and_repeated_texts(models: dict, generations: list, tmp_path: Path) -> None:
    pool = laion_pool(15)  # 10 images lack de
    captions = pool.captions.copy()
    english = captions["lang"] == "en"
    captions.loc[english, "caption"] = [TEXTS[i % 2] for i in range(english.sum())]  # 2 texts
    translator = Seq2SeqTranslator(settings(models["m2m100"], batch_size=1), CPU)
    table = translate_pool(captions, pool.image_keys, ["de"], translator, tmp_path / "c.sqlite")
    assert len(generations) == 2  # one per distinct text, batch_size 1
    assert all(call["num_beams"] == 1 and call["max_new_tokens"] == 6 for call in generations)
    lacking = captions.groupby("image_id")["lang"].agg(set).map(lambda s: "de" not in s).sum()
    assert len(table) == lacking == 10  # each image gets its text's one translation
    assert (table["translated_by"].str.contains("beams=1 max=6")).all()


def test_an_interrupted_run_keeps_its_batches(
    models: dict, generations: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = laion_pool(12)  # 8 images lack de: 4 batches of 2
    cache = tmp_path / "cache.sqlite"
    translator = Seq2SeqTranslator(settings(models["m2m100"], batch_size=2), CPU)
    real = translator.translate

    def dies_on_the_third(texts: list[str], lang: str, source: str) -> list[str]:
        if len(generations) == 2:
            raise KeyboardInterrupt
        return real(texts, lang, source)

    monkeypatch.setattr(translator, "translate", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        translate_pool(pool.captions, pool.image_keys, ["de"], translator, cache)
    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT COUNT(*) FROM translations").fetchone()[0] == 4
    generations.clear()
    fresh = Seq2SeqTranslator(settings(models["m2m100"], batch_size=2), CPU)
    translate_pool(pool.captions, pool.image_keys, ["de"], fresh, cache)
    assert len(generations) == 2  # only the two batches not finished before
    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT COUNT(*) FROM translations").fetchone()[0] == 8


def test_nllb_is_told_its_own_target_code(models: dict, generations: list, tmp_path: Path):
    pool = laion_pool(3)
    translator = Seq2SeqTranslator(settings(models["nllb"], family="nllb"), CPU)
    translate_pool(pool.captions, pool.image_keys, ["fr"], translator, tmp_path / "c.sqlite")
    tokenizer, _ = translator._loaded[str(models["nllb"])]
    assert tokenizer.src_lang == "eng_Latn"
    assert [call["forced_bos_token_id"] for call in generations] == [
        tokenizer.convert_tokens_to_ids("fra_Latn")
    ]
    with sqlite3.connect(tmp_path / "c.sqlite") as db:
        assert db.execute("SELECT DISTINCT lang FROM translations").fetchall() == [("fr",)]
    generations.clear()  # a round trip's leg from German: the model is told so
    translator.translate(["ein Hund"], "fr", source="de")
    assert tokenizer.src_lang == "deu_Latn"
    assert generations[0]["input_ids"][0, 0] == tokenizer.convert_tokens_to_ids("deu_Latn")


def test_marian_loads_one_model_per_target(tmp_path: Path) -> None:
    for lang in ("de", "fr"):
        build_marian_model(tmp_path / f"opus-mt-en-{lang}")
    pool = laion_pool(6)
    marian = settings(tmp_path / "opus-mt-en-{lang}", family="marian")
    translator = Seq2SeqTranslator(marian, CPU)
    table = translate_pool(
        pool.captions, pool.image_keys, ["en", "de", "fr"], translator, tmp_path / "c.sqlite"
    )
    assert sorted(translator._loaded) == [
        str(tmp_path / f"opus-mt-en-{lang}") for lang in ("de", "fr")
    ]
    assert table.groupby("lang")["translated_by"].first().str.split().str[0].to_dict() == {
        lang: str(tmp_path / f"opus-mt-en-{lang}") for lang in ("de", "fr")
    }
    with pytest.raises(TranslationError, match=r"opus-mt-en-it' does not load"):
        translate_pool(pool.captions, pool.image_keys, ["it"], translator, tmp_path / "c.sqlite")


def test_language_codes_per_family() -> None:
    assert model_language("nllb", "de") == "deu_Latn"
    assert model_language("nllb", "jp") == "jpn_Jpan"  # aliases go through the registry
    assert model_language("nllb", "zh") == "zho_Hans"
    assert model_language("m2m100", "ja") == "ja"
    assert model_language("marian", "de") == "de"
    with pytest.raises(
        TranslationError,
        match=r"data.train_langs has 'mi', which "
        r"data.laion.translate.family 'm2m100' cannot translate; drop it from data.train_langs",
    ):
        model_language("m2m100", "mi")


def test_an_unsupported_language_fails_before_any_model_runs(
    models: dict, generations: list, tmp_path: Path
) -> None:
    pool = laion_pool(6)
    translator = Seq2SeqTranslator(settings(models["m2m100"]), CPU)
    with pytest.raises(TranslationError, match="'qu'"):
        translate_pool(pool.captions, pool.image_keys, ["de", "qu"], translator, tmp_path / "c")
    assert generations == [] and not translator._loaded


def _laion_params(translate: dict) -> dict:
    return {
        "run": {"name": "t"},
        "data": {
            "source": "laion",
            "train_langs": ["de", "fr"],
            "laion": {"shards": "/nowhere", "translate": translate},
        },
        "model": {"kind": "open_clip"},
        "eval": {"benchmarks": ["xtd10"]},
    }


def test_local_model_folders_resolve_from_home_and_the_project_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``~/models/nllb`` is the home folder's, not ``<root>/~/models/nllb``; a one-level
    ``models/nllb-600M`` that exists under the project root is that folder, though it also
    reads as a hub id ``owner/name``. A hub id with no such folder stays a hub id."""
    home, root = tmp_path / "home", tmp_path / "root"
    (home / "models" / "nllb").mkdir(parents=True)
    (root / "models" / "nllb-600M").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XLR_ROOT", str(root))
    in_home = TranslateSection(model="~/models/nllb", family="nllb")
    assert in_home.model_for("de") == str(home / "models" / "nllb")
    in_root = TranslateSection(model="models/nllb-600M", family="nllb")
    assert in_root.model_for("de") == str(root / "models" / "nllb-600M")
    hub = TranslateSection(model="facebook/nllb-200-distilled-600M", family="nllb")
    assert hub.model_for("de") == "facebook/nllb-200-distilled-600M"


def test_params_name_the_translate_fields(tmp_path: Path, models: dict) -> None:
    params = parse_params(_laion_params({"model": str(models["nllb"]), "family": "nllb"}))
    assert params.data.laion.translate.family == "nllb"  # and no 'en' needed: all pairs parallel
    with pytest.raises(
        ParamsError,
        match=r"data.laion.translate.model './no/such/model' is "
        r"written as a path but .* is not a folder",
    ):
        parse_params(_laion_params({"model": "./no/such/model", "family": "nllb"}))
    with pytest.raises(
        ParamsError,
        match=r"a Marian model translates one pair, so its name "
        r"holds \{lang\}",
    ):
        parse_params(_laion_params({"model": "Helsinki-NLP/opus-mt-en-de", "family": "marian"}))
    marian = TranslateSection(model="Helsinki-NLP/opus-mt-en-{lang}", family="marian")
    assert marian.model_for("fr") == "Helsinki-NLP/opus-mt-en-fr"
    wrong_family = Seq2SeqTranslator(settings(models["nllb"], family="m2m100"), CPU)
    with pytest.raises(
        TranslationError,
        match=r"has no token '__de__' for 'de'; is "
        r"data.laion.translate.family 'm2m100' the model's family",
    ):
        wrong_family.translate(["a cat"], "de")
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    translator = Seq2SeqTranslator(settings(not_a_model), CPU)
    with pytest.raises(
        TranslationError,
        match=r"data.laion.translate.model: .*empty' does not "
        r"load as a seq2seq translation model",
    ):
        translator.translate(["a cat"], "de")


def test_translations_make_every_pair_trainable(models: dict, tmp_path: Path) -> None:
    pool = laion_pool(30)
    assert pair_graph(pool.captions, ["en", "de", "fr"], 4).dropped == [("de", "fr")]
    translator = Seq2SeqTranslator(settings(models["m2m100"], batch_size=8), CPU)
    table = translate_pool(
        pool.captions, pool.image_keys, ["en", "de", "fr"], translator, tmp_path / "c.sqlite"
    )
    translated = with_translations(pool, table)
    marked = translated.captions[
        translated.captions["translated_by"].str.startswith(str(models["m2m100"]))
    ]
    assert marked.groupby("lang").size().to_dict() == {"de": 20, "fr": 20}
    graph = pair_graph(translated.captions, ["en", "de", "fr"], batch_size=4)
    assert ("de", "fr") in graph.drawn and graph.images[("de", "fr")] == 30
    assert pair_graph(translated.captions, ["de", "fr"], batch_size=4).drawn == [("de", "fr")]
    sampler = BatchSampler("cross", translated.captions, ["en", "de", "fr"], batch_size=4, seed=0)
    batches = [sampler.batch(step) for step in range(30)]
    pairs = {frozenset((b.query_langs[0], b.target_langs[0])) for b in batches}
    assert frozenset(("de", "fr")) in pairs
    batch = next(b for b in batches if {b.query_langs[0], b.target_langs[0]} == {"de", "fr"})
    rows = translated.captions.iloc[np.r_[batch.query_rows, batch.target_rows]]
    assert rows["image_id"].nunique() == 4  # each de caption meets the fr one of its image
