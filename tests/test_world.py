"""The held-out world: the composition space and its split, captions that name exactly one
composition, and the leak audit (no val or eval composition or caption text in training, none
shared between val and eval, none repeated within either) on the shipped params' corpora."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xlr.config import load_params
from xlr.data.synthetic import (
    COLOURS,
    GRAMMARS,
    POOLS,
    RELATIONS,
    SHAPES,
    SIZES,
    TEMPLATES,
    Scene,
    Thing,
    all_scenes,
    check_held_out,
    corpus_overlaps,
    describe,
    generate_corpus,
    is_canonical,
    overlaps,
    pool_captions,
    pool_scenes,
    pretrain_mix,
    sample_scenes,
    split_world,
)

PARAMS_DIR = Path(__file__).resolve().parents[1] / "params"
MIRROR = {"left_of": "right_of", "right_of": "left_of", "above": "below", "below": "above"}


def test_the_world_has_91200_compositions_each_one_picture() -> None:
    world = all_scenes()
    assert len(world) == len(set(world)) == 91_200
    assert all(is_canonical(scene) for scene in world)
    # a group of one is another single object: its mirror spelling is not a second composition
    singles = [scene for scene in world if scene.count == 1]
    members = set(world)
    assert not any(
        Scene(s.reference, 1, MIRROR[s.relation], s.group) in members for s in singles[::7]
    )
    assert not any(scene.group == scene.reference for scene in world)
    assert {s.relation for s in world} == set(RELATIONS) and {s.count for s in world} == {1, 2, 3}


def test_split_draws_without_replacement_and_keeps_pools_apart() -> None:
    split = split_world(0, 200, 200)
    assert len(set(split.eval)) == 200 and len(set(split.val)) == 200
    assert not set(split.eval) & set(split.val)
    assert not (set(split.eval) | set(split.val)) & set(split.train)
    assert len(split.train) == len(all_scenes()) - 400
    # each pool's size never moves the other's compositions
    assert list(split_world(0, 200, 50).eval) == list(split.eval)
    assert list(split_world(0, 30, 200).val) == list(split.val)
    assert list(split_world(1, 200, 200).eval) != list(split.eval)
    with pytest.raises(ValueError, match="more than half of the 91,200 compositions; lower them"):
        split_world(0, 30_000, 20_000)


def test_training_still_sees_every_attribute_in_every_role() -> None:
    split = split_world(0, 200, 200)
    drawn = sample_scenes(np.random.default_rng(0), 3000, split.train)
    held_out = {all_scenes()[i] for i in (*split.eval, *split.val)}
    assert not held_out & set(drawn)
    for role in ("group", "reference"):
        things = [getattr(scene, role) for scene in drawn]
        assert {t.shape for t in things} == set(SHAPES)
        assert {t.colour for t in things} == set(COLOURS)
        assert {t.size for t in things} == set(SIZES)


def _neighbours(scene: Scene) -> list[Scene]:
    """Scenes one change away: each attribute of either object, the count, the relation, and
    the two objects swapped (the mirror picture's confusers)."""
    out = [Scene(scene.reference, scene.count, scene.relation, scene.group)]
    out.append(replace(scene, relation=MIRROR[scene.relation]))
    out += [replace(scene, count=c) for c in (1, 2, 3) if c != scene.count]
    for role in ("group", "reference"):
        thing = getattr(scene, role)
        for field, values in (("shape", SHAPES), ("colour", COLOURS), ("size", SIZES)):
            other = next(v for v in values if v != getattr(thing, field))
            out.append(replace(scene, **{role: replace(thing, **{field: other})}))
    return [s for s in out if s != scene]


@pytest.mark.parametrize("lang", list(GRAMMARS))
def test_every_caption_names_its_composition(lang: str) -> None:
    """A caption states every attribute: no template of a scene one change away (nor any
    other template of the same scene) gives the same text. This is what turns held-out
    compositions into held-out caption text."""
    for scene in sample_scenes(np.random.default_rng(4), 60):
        own = [describe(scene, lang, k) for k in range(len(TEMPLATES))]
        assert len(set(own)) == len(TEMPLATES), own
        others = {describe(n, lang, k) for n in _neighbours(scene) for k in range(len(TEMPLATES))}
        assert not set(own) & others, (lang, scene)


def test_the_audit_finds_what_leaks() -> None:
    a, b, c = (Thing(s, "red", "small") for s in ("circle", "star", "heart"))
    compositions = {
        "pretrain": [(a, 1), (b, 1)],
        "finetune": [(c, 1)],
        "val": [(b, 1), (b, 1)],
        "eval": [(c, 2)],
    }
    texts = {
        "pretrain": ["IMG_1.jpg a red star - stock photo"],
        "finetune": ["a red heart"],
        "val": ["a red star", "a red star"],
        "eval": ["two red hearts", "a red heart"],
    }
    table = overlaps(compositions, texts).set_index(["pool", "against"])
    shared = ["shared_compositions", "shared_texts", "texts_inside"]
    assert table.loc[("val", "val"), shared[:2]].tolist() == [1, 1]  # repeats within val
    assert table.loc[("val", "pretrain"), shared].tolist() == [1, 0, 1]  # inside a wrap
    assert table.loc[("eval", "finetune"), "shared_texts"] == 1
    assert table.loc[("eval", "pretrain+finetune"), "shared_texts"] == 1
    assert table.loc[("eval", "val"), "shared_compositions"] == 0
    with pytest.raises(
        ValueError,
        match=r"corpus-x: the held-out pools leak \(val vs val: "
        r"shared_compositions 1, shared_texts 1; val vs pretrain: .*delete",
    ):
        check_held_out(overlaps(compositions, texts), Path("corpus-x"))
    check_held_out(
        table.reset_index().assign(shared_compositions=0, shared_texts=0, texts_inside=0),
        Path("corpus-x"),
    )


def _no_leaks(table: pd.DataFrame) -> None:
    shared = table[["shared_compositions", "shared_texts"]]
    assert (shared == 0).all().all(), table
    assert (table["texts_inside"].fillna(0) == 0).all(), table


def test_smoke_corpus_on_disk_leaks_nothing(tmp_path: Path) -> None:
    """The whole smoke corpus, generated and read back: every pool, every text as written."""
    cfg = load_params(PARAMS_DIR / "smoke.yaml").data.synthetic
    table = corpus_overlaps(generate_corpus(cfg, tmp_path / "smoke", progress=False))
    _no_leaks(table)
    assert set(table["against"]) == {"pretrain", "finetune", "val", "eval", "pretrain+finetune"}
    held_out = table[table["pool"] == table["against"]]
    assert held_out["compositions"].tolist() == [cfg.validation_images, cfg.eval_images]


def test_synthetic_study_pools_leak_nothing() -> None:
    """params/synthetic.yaml's pools at full size, generated in memory without rendering
    (rendering its 33,400 images would take most of a minute; the pools' scenes and captions
    are what a leak is made of). About 10 s on 2 cores."""
    cfg = load_params(PARAMS_DIR / "synthetic.yaml").data.synthetic
    start = time.perf_counter()
    compositions, texts = {}, {}
    for pool in POOLS:
        scenes = pool_scenes(cfg, pool)
        compositions[pool] = scenes
        texts[pool] = [row.caption.text for row in pool_captions(cfg, pool, scenes)]
    table = overlaps(compositions, texts)
    _no_leaks(table)
    assert len(texts["pretrain"]) == 30_000 and len(texts["finetune"]) == 3000 * 14 * 2
    assert time.perf_counter() - start < 120


@pytest.mark.parametrize("name", ["smoke", "synthetic"])
def test_shipped_language_mix_has_a_rare_seen_and_an_absent_held_out_language(name: str) -> None:
    params = load_params(PARAMS_DIR / f"{name}.yaml")
    mix = pretrain_mix(params.data.synthetic)
    assert min(mix[lang] for lang in params.data.train_langs) < 0.01
    assert all(mix[lang] > 0 for lang in params.data.train_langs)  # seen: rare, not absent
    assert [lang for lang in params.data.heldout_langs if mix[lang] == 0]
    assert params.data.synthetic.val_images == params.data.synthetic.eval_images
