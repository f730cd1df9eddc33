"""The pair graph on a LAION-shaped pool (one caption per image in its own language, plus ENG TEXT
as its English caption): which pairs the batch strategies draw, the errors when a language has
none, and every arm training on such a pool."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import build_tiny_world, tiny_raw_params

from xlr.arms import LOG_CSV, SUMMARY_FILE, adapter_arms, trained_arms
from xlr.config import ParamsError, parse_params
from xlr.data.imagetext import CAPTION_COLUMNS, ImageTextSet
from xlr.models.factory import load_model
from xlr.train.adapters import train_adapters
from xlr.train.batching import BatchSampler
from xlr.train.finetune import train_arm
from xlr.train.pairs import PairGraphError, pair_graph
from xlr.train.study import example_batches, train_arms, training_pairs

LANGS = ["en", "de", "es", "ja"]
TRAIN = ["en", "de", "es"]


def laion_captions(captions: pd.DataFrame, langs: list[str]) -> pd.DataFrame:
    """LAION's shape from a parallel captions table: image ``i`` keeps its first caption in
    ``langs[i % len(langs)]`` and, unless that is English, its first English caption (the
    translated release's ENG TEXT, parallel to it)."""
    rows = []
    for image in sorted(set(captions["image_id"])):
        own = langs[image % len(langs)]
        for lang in dict.fromkeys([own, "en"]):
            first = captions[
                (captions["image_id"] == image)
                & (captions["lang"] == lang)
                & (captions["caption_idx"] == 0)
            ]
            rows.append((image, lang, 0, first["caption"].item()))
    return pd.DataFrame(rows, columns=list(CAPTION_COLUMNS))


def parallel_table(images: int, langs: list[str]) -> pd.DataFrame:
    rows = [(i, lang, 0, f"{lang}:{i}") for i in range(images) for lang in langs]
    return pd.DataFrame(rows, columns=list(CAPTION_COLUMNS))


TABLE = laion_captions(parallel_table(60, ["en", "de", "fr"]), ["en", "de", "fr"])


def test_laion_graph_keeps_only_pairs_with_english() -> None:
    graph = pair_graph(TABLE, ["en", "de", "fr"], batch_size=8)
    assert graph.images == {("en", "de"): 20, ("en", "fr"): 20, ("de", "fr"): 0}
    assert graph.drawn == [("en", "de"), ("en", "fr")] and graph.dropped == [("de", "fr")]
    assert graph.paraphrases == {"en": 0, "de": 0, "fr": 0}  # mono has no text-text target
    assert graph.stranded == []
    frame = graph.to_frame()
    assert frame.loc["de", "fr"] == frame.loc["fr", "de"] == 0 and frame.loc["fr", "en"] == 20
    assert np.diag(frame.to_numpy()).tolist() == [0, 0, 0]
    text = graph.describe()
    assert "en-de (20), en-fr (20)" in text and "dropped: de-fr (0)" in text
    assert "mono trains image-text only" in text


@pytest.mark.parametrize("strategy", ["cross", "multi", "hybrid"])
def test_pair_strategies_draw_only_pairs_with_parallel_captions(strategy: str) -> None:
    sampler = BatchSampler(strategy, TABLE, ["en", "de", "fr"], batch_size=8, seed=0, alpha=0.5)
    probs = sampler.sampler.pair_probs
    assert probs[1, 2] == probs[2, 1] == 0.0 and probs.sum() == pytest.approx(1.0)
    seen = set()
    for step in range(40):
        batch = sampler.batch(step)
        assert len(set(batch.image_ids.tolist())) == 8
        pairs = set(zip(batch.query_langs, batch.target_langs, strict=True))
        if batch.kind == "mono":
            assert not batch.has_target.any()  # one caption per image and language
            continue
        assert batch.has_target.all() and all("en" in pair for pair in pairs)
        for row, target in zip(batch.query_rows, batch.target_rows, strict=True):
            assert TABLE.iloc[row]["image_id"] == TABLE.iloc[target]["image_id"]
        seen |= pairs
    assert seen == {("en", "de"), ("de", "en"), ("en", "fr"), ("fr", "en")}


def test_a_thin_pair_is_dropped_while_its_languages_stay_paired() -> None:
    table = pd.concat(
        [TABLE, pd.DataFrame([(1, "fr", 0, "fr:1"), (4, "fr", 0, "fr:4")], columns=TABLE.columns)]
    )  # images 1 and 4 are de images: two de-fr pairs, too few for a batch of 8
    sampler = BatchSampler("cross", table, ["en", "de", "fr"], batch_size=8, seed=1)
    assert sampler.graph.images[("de", "fr")] == 2 and sampler.graph.dropped == [("de", "fr")]
    kinds = {sampler.batch(step).query_langs[0] + sampler.batch(step).target_langs[0]
             for step in range(30)}  # fmt: skip
    assert "defr" not in kinds and "frde" not in kinds


def test_a_language_in_no_pair_is_an_error_naming_it() -> None:
    with pytest.raises(PairGraphError, match=r"strategy 'cross' .*\['de', 'fr'\] are in none"):
        BatchSampler("cross", TABLE, ["de", "fr"], batch_size=4, seed=0)
    with pytest.raises(
        PairGraphError, match=r"batch_size 32 exceeds the 20 images available for pair .*'de'"
    ):
        BatchSampler("multi", TABLE, ["en", "de", "fr"], batch_size=32, seed=0)
    BatchSampler("mono", TABLE, ["de"], batch_size=4, seed=0)  # mono needs no pair


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny model and a LAION-shaped fine-tuning pool of en, de, es (16 images each)."""
    root = tmp_path_factory.mktemp("laion_pool")
    train = {"arms": ["zeroshot", "mono", "cross", "multi", "hybrid"],
             "trainable": ["full", "lora"], "steps": 3, "batch_size": 8, "checkpoint_every": 3,
             "warmup": 1}  # fmt: skip
    raw = tiny_raw_params(root / "runs", LANGS, TRAIN, ["ja"], train=train)
    tiny = build_tiny_world(root, raw)
    pool = tiny.pool
    captions = laion_captions(pool.captions, TRAIN)
    laion = ImageTextSet("laion", pool.image_keys, pool.images, captions)
    return {"tiny": tiny, "pool": laion, "base": load_model(tiny.model_dir)}


def test_every_arm_trains_on_a_laion_shaped_pool(world: dict, tmp_path: Path) -> None:
    params = world["tiny"].params()
    arms = trained_arms(params)
    assert {arm.family for arm in arms} == {
        "mono", "cross", "multi", "hybrid", "adapters", "adapters_hybrid"
    }  # fmt: skip
    assert {arm.trained for arm in arms} == {"full", "lora", "adapters"}
    for arm in arms:
        train = train_adapters if arm.is_adapters else train_arm
        out = tmp_path / arm.name
        result = train(world["base"], world["pool"], params, arm, out, progress=False)
        summary = json.loads((out / SUMMARY_FILE).read_text())
        assert summary["steps"] == 3 and result.summary["name"] == arm.name
        log = pd.read_csv(out / LOG_CSV)
        assert len(log) == 3 and np.isfinite(log["loss"]).all()
        if arm.strategy == "mono":
            assert "pairs" not in summary and (log["loss_text_text"] == 0).all()
        else:
            assert summary["pairs"] == ["en-de", "en-es"]
            assert summary["dropped_pairs"] == ["de-es"]


def test_the_pool_is_checked_before_any_arm_trains(world: dict) -> None:
    params = world["tiny"].params(data={"train_langs": ["de", "es"]})
    captions = world["pool"].captions
    pool = ImageTextSet("laion", world["pool"].image_keys, world["pool"].images,
                        captions[captions["lang"] != "en"].reset_index(drop=True))  # fmt: skip
    with pytest.raises(PairGraphError, match=r"arms cross-full, cross-lora, .*\['de', 'es'\]"):
        train_arms(params, pool, progress=False)
    arm = next(arm for arm in adapter_arms(params) if arm.strategy == "hybrid")
    with pytest.raises(PairGraphError, match=r"arm 'adapters_hybrid-a0.5': strategy 'hybrid'"):
        train_adapters(world["base"], pool, params, arm, progress=False)


def test_notebook_helpers_show_the_graph_and_configured_strategies(world: dict) -> None:
    params = world["tiny"].params()
    graph = training_pairs(params, world["pool"])
    assert graph.drawn == [("en", "de"), ("en", "es")] and graph.batch_size == 8
    assert list(example_batches(params, world["pool"])) == ["mono", "cross", "multi", "hybrid"]
    only = world["tiny"].params(
        train={"arms": ["zeroshot", "cross"], "steps": 3, "batch_size": 8},
        adapters={"enabled": False, "hybrid_alpha": None},
    )
    batches = example_batches(only, world["pool"])
    assert list(batches) == ["cross"]
    assert {batches["cross"].query_langs[0], batches["cross"].target_langs[0]} in (
        {"en", "de"}, {"en", "es"}
    )  # fmt: skip


def test_laion_params_without_english_are_refused_at_load() -> None:
    laion = {
        "source": "laion",
        "train_langs": ["de", "fr"],
        "laion": {"inputs": {"metadata": ["x.parquet"]}, "quotas": {"counts": {"de": 5}}},
    }
    raw = {"run": {"name": "l"}, "data": laion, "model": {"kind": "open_clip"},
           "eval": {"benchmarks": ["xtd10"]}}  # fmt: skip
    with pytest.raises(ParamsError, match=r"arms cross, hybrid, adapters_hybrid .*add 'en'"):
        parse_params(raw)
    mono_only = raw | {"train": {"arms": ["zeroshot", "mono"]},
                       "adapters": {"hybrid_alpha": None}}  # fmt: skip
    assert parse_params(mono_only).data.train_langs == ["de", "fr"]
    with_en = raw | {"data": laion | {"train_langs": ["en", "de", "fr"]}}
    assert parse_params(with_en)
