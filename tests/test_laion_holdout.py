"""The LAION path's validation split (:mod:`xlr.data.laion.holdout`): seeded, by image, whole
groups of images with the same caption, audited; and shaped so the controls' tasks run on it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import build_tiny_world, tiny_raw_params

from xlr.data.imagetext import ArrayImages, ImageTextSet
from xlr.data.laion import holdout
from xlr.data.laion.holdout import (
    LEAK_COLUMNS,
    check_holdout,
    held_out_images,
    holdout_audit,
    image_subset,
)
from xlr.data.laion.near_duplicates import pairs_within, phash_code
from xlr.data.laion.split import split_pool
from xlr.data.laion_settings import LaionSection
from xlr.eval.encoders import ModelEncoder
from xlr.eval.runner import CONTROL_TASKS
from xlr.eval.tasks import evaluate_arm

BITS = LaionSection.model_fields["near_duplicate_bits"].default


def laion_shaped(pool: ImageTextSet, langs: list[str]) -> ImageTextSet:
    """Image ``i`` keeps its first caption in ``langs[i % len(langs)]`` and, unless English, its
    first English caption as LAION's ENG TEXT."""
    first = pool.captions[pool.captions["caption_idx"] == 0].set_index(["image_id", "lang"])
    rows = []
    for image in range(len(pool)):
        own = langs[image % len(langs)]
        rows.append((image, own, 0, first.loc[(image, own), "caption"], ""))
        if own != "en":
            rows.append((image, "en", 0, first.loc[(image, "en"), "caption"], "ENG TEXT"))
    columns = ["image_id", "lang", "caption_idx", "caption", "translated_by"]
    return ImageTextSet("laion", pool.image_keys, pool.images, pd.DataFrame(rows, columns=columns))


def numbered(images: int, texts: list[str] | None = None) -> ImageTextSet:
    """``images`` images of 8x8 random pixels (no two alike, nor near-duplicates of one
    another), captioned ``texts``."""
    texts = texts or [f"caption {i}" for i in range(images)]
    captions = pd.DataFrame(
        {"image_id": range(images), "lang": "de", "caption_idx": 0, "caption": texts,
         "translated_by": ""}
    )  # fmt: skip
    pixels = np.random.default_rng(images).integers(0, 256, (images, 8, 8, 3), dtype=np.uint8)
    return ImageTextSet("laion", [f"k{i}" for i in range(images)], ArrayImages(pixels), captions)


def split_audit(
    pool: ImageTextSet, train_ids: np.ndarray, val_ids: np.ndarray, fraction: float
) -> pd.DataFrame:
    """:func:`holdout_audit` of images ``train_ids`` against ``val_ids`` of ``pool``, its
    near-duplicate pairs counted as :func:`xlr.data.prepare.prepare_data` counts them."""
    train = image_subset(pool, train_ids, "laion", None)
    val = image_subset(pool, val_ids, "laion-val", True)
    codes = np.stack([phash_code(pool.images[i]) for i in range(len(pool))])
    pairs = pairs_within(codes[val_ids], codes[train_ids], BITS)
    return holdout_audit(train, val, fraction, len(pairs))


def test_split_is_seeded_sized_and_by_image(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = numbered(200)
    ids = held_out_images(pool, 0.05, seed=0)
    assert len(ids) == 10 and np.array_equal(ids, held_out_images(pool, 0.05, seed=0))
    assert not np.array_equal(ids, held_out_images(pool, 0.05, seed=1))
    assert len(held_out_images(numbered(10), 0.01, seed=0)) == 1  # never none
    assert len(held_out_images(numbered(2), 0.2, seed=0)) == 1  # never all
    twins = numbered(3, ["a cat", "A  cat!", "a dog"])
    assert held_out_images(twins, 0.2, seed=0).tolist() == [2]  # the pair would be 2 of 1
    with pytest.raises(ValueError, match=r"only 0 of the 1 validation images"):
        held_out_images(numbered(2, ["a cat", "a cat"]), 0.2, seed=0)
    monkeypatch.setattr(holdout, "VAL_IMAGES_MAX", 4)
    assert len(held_out_images(pool, 0.2, seed=0)) == 4
    with pytest.raises(
        ValueError, match=r"1 image\(s\) downloaded; .* \(raise data.laion.quotas\)"
    ):
        held_out_images(numbered(1), 0.2, seed=0)


def test_images_with_one_caption_fall_on_one_side() -> None:
    texts = [f"caption {i}" for i in range(40)]
    texts[5] = texts[30] = "Same  CAPTION"  # folded alike
    texts[6] = texts[31] = "same caption"
    texts[7], texts[32] = "caf\u00e9 on the corner", "cafe\u0301 on the corner"  # NFC, NFD
    texts[8], texts[33] = "red dress", "\uff52\uff45\uff44 dress"  # full-width letters
    pool = numbered(40, texts)
    for seed in range(20):
        ids = set(held_out_images(pool, 0.25, seed).tolist())
        assert len({i in ids for i in (5, 6, 30, 31)}) == 1
        assert (7 in ids) == (32 in ids) and (8 in ids) == (33 in ids)
    ids = held_out_images(pool, 0.25, seed=0)
    val = image_subset(pool, ids, "laion-val", True)
    audit = split_audit(pool, np.setdiff1d(np.arange(40), ids), ids, 0.25)
    assert audit[list(LEAK_COLUMNS)].to_numpy().tolist() == [[0, 0, 0]]
    assert audit[["val_images", "wanted_images"]].to_numpy().tolist() == [[10, 10]]
    check_holdout(audit)
    assert val.captions["image_id"].tolist() == list(range(len(val)))  # renumbered
    assert [val.captions["caption"].iloc[i] for i in range(len(val))] == [texts[i] for i in ids]
    assert np.array_equal(np.asarray(val.images[0]), np.asarray(pool.images[int(ids[0])]))
    audit = split_audit(pool, np.array([0, 5]), np.array([0, 6]), 0.25)  # image 0 on both sides
    assert audit[list(LEAK_COLUMNS)].to_numpy().tolist() == [[1, 2, 1]]
    with pytest.raises(ValueError, match="shares 4 images, captions or near-duplicate photos"):
        check_holdout(audit)


def with_eng_text(pool: ImageTextSet, english: dict[int, str], source: str) -> ImageTextSet:
    """``pool`` with an English caption added to the images of ``english``, marked ``source``
    (LAION's "ENG TEXT" or a translation model's name)."""
    added = pd.DataFrame(
        {"image_id": list(english), "lang": "en", "caption_idx": 0,
         "caption": list(english.values()), "translated_by": source}
    )  # fmt: skip
    return ImageTextSet(
        pool.name,
        pool.image_keys,
        pool.images,
        pd.concat([pool.captions, added], ignore_index=True),
    )


@pytest.mark.parametrize("source", ["ENG TEXT", "facebook/nllb-200-distilled-600M"])
def test_images_sharing_a_translated_caption_fall_on_one_side(source: str) -> None:
    # image 3 ("Hund") and image 17 ("chien") both read "dog" in English; image 20's English
    # caption reads as image 29's own
    texts = [f"bild {i}" for i in range(40)]
    texts[3], texts[17], texts[29] = "Hund", "chien", "Katze"
    pool = with_eng_text(numbered(40, texts), {3: "dog", 17: " Dog", 20: "Katze"}, source)
    for seed in range(30):
        ids = held_out_images(pool, 0.2, seed)
        assert len({i in ids for i in (3, 17)}) == 1 and len({i in ids for i in (20, 29)}) == 1
        audit = split_audit(pool, np.setdiff1d(np.arange(40), ids), ids, 0.2)
        assert audit[list(LEAK_COLUMNS)].to_numpy().tolist() == [[0, 0, 0]]
    # the audit compares every caption: a German validation image whose English caption trains
    audit = split_audit(pool, np.array([17, 29]), np.array([3]), 0.2)
    assert audit[list(LEAK_COLUMNS)].to_numpy().tolist() == [[0, 1, 0]]


def test_a_boilerplate_group_never_swells_the_split(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [f"caption {i}" for i in range(1000)]
    texts[:400] = ["Untitled"] * 400
    pool = numbered(1000, texts)
    for seed in range(40):
        ids = held_out_images(pool, 0.02, seed)
        assert len(ids) == 20 and not set(ids.tolist()) & set(range(400))
    # the README's bounds: at most val_fraction (0.2 at most) of the images, and 5,000
    big = numbered(30_000, ["Untitled"] * 7_000 + [f"caption {i}" for i in range(23_000)])
    assert holdout.VAL_IMAGES_MAX == 5000
    assert LaionSection.model_fields["val_fraction"].default == 0.02  # the README's default
    assert len(held_out_images(big, 0.2, seed=23)) == 5000
    small = numbered(8, ["a", "a", "b", "b", "c", "c", "d", "e"])
    assert all(len(held_out_images(small, 0.2, seed)) == 1 for seed in range(10))  # 1.6: 1
    monkeypatch.setattr(holdout, "VAL_IMAGES_MAX", 7)
    assert len(held_out_images(numbered(100, ["x"] * 6 + texts[400:494]), 0.2, seed=0)) == 7


def test_a_split_short_of_half_its_size_is_refused_and_audited() -> None:
    """Duplicate captions chain 91 of 100 images into one group: of the 20 wanted, only the
    9 others can be held out, and the error says so; a split over half passes, and the audit
    records its size beside the wanted one."""
    texts = [f"caption {i}" for i in range(100)]
    for i in range(91):  # image i shares a caption with image i + 1: one chain of 91
        texts[i] = f"link {i // 2}"
    pool = with_eng_text(numbered(100, texts), {i: f"link {(i + 1) // 2}" for i in range(90)}, "")
    with pytest.raises(
        ValueError,
        match=r"only 9 of the 20 validation images \(data.laion.val_fraction 0.2 of 100\).*"
        r"duplicate captions.*largest such group holds 91 images",
    ):
        held_out_images(pool, 0.2, seed=0)
    assert len(held_out_images(pool, 0.1, seed=0)) == 9
    ids = held_out_images(pool, 0.15, seed=0)  # 9 of 15: more than half
    audit = split_audit(pool, np.setdiff1d(np.arange(100), ids), ids, 0.15)
    assert audit[["val_images", "wanted_images"]].to_numpy().tolist() == [[9, 15]]


def test_a_caption_without_text_is_refused() -> None:
    """A null caption would factorize to -1 and link its image to the last one."""
    pool = numbered(10)
    captions = pool.captions.copy()
    captions.loc[3, "caption"] = None
    with pytest.raises(ValueError, match=r"1 caption\(s\) without text \(null\), e.g. image 'k3'"):
        held_out_images(ImageTextSet("laion", pool.image_keys, pool.images, captions), 0.2, 0)


def test_controls_tasks_run_on_a_laion_validation_set(tmp_path: Path) -> None:
    tiny = build_tiny_world(tmp_path, tiny_raw_params(tmp_path / "runs", ["en", "de", "es"],
                                                      ["en", "de", "es"], []))  # fmt: skip
    pool = laion_shaped(tiny.pool, ["en", "de", "es"])
    ids = held_out_images(pool, 0.2, seed=0)
    val = image_subset(pool, ids, "laion-val", True)
    with pytest.warns(UserWarning, match="xt2t de->es skipped"):
        results, _ = evaluate_arm(
            ModelEncoder.from_folder(tiny.model_dir), val, ["en", "de", "es"], [],
            tasks=list(CONTROL_TASKS), arm="zeroshot", base_seed=0, cache_dir=tmp_path / "c",
        )  # fmt: skip
    assert set(CONTROL_TASKS) <= set(results["task"])
    xt2t = results[(results["task"] == "xt2t") & (results["metric"] == "R@1")]
    pairs = set(zip(xt2t["query_lang"], xt2t["target_lang"], strict=True))
    # LAION-val is parallel only X-en (ENG TEXT), so only those pairs have queries
    assert pairs == {("de", "en"), ("en", "de"), ("es", "en"), ("en", "es")}


def test_one_photo_under_two_urls_with_captions_apart_by_punctuation_falls_on_one_side() -> None:
    """The review's case: every odd image is the same photo (pixel for pixel) as the image
    before it, under another key, its caption ending in a full stop. Punctuation is folded, so
    each pair is one caption group; the audit counts the photos a split shows on both sides."""
    images = 40
    pixels = np.random.default_rng(0).integers(0, 256, size=(images, 4, 4, 3), dtype=np.uint8)
    pixels[1::2] = pixels[0::2]
    texts = [f"photo {i // 2} of a dog on the beach" + ("." if i % 2 else "") for i in range(40)]
    pool = replace(numbered(images, texts), images=ArrayImages(pixels))
    for seed in range(10):
        ids = held_out_images(pool, 0.2, seed)
        assert len(ids) == 8 and set((ids ^ 1).tolist()) == set(ids.tolist())  # whole pairs
        audit = split_audit(pool, np.setdiff1d(np.arange(images), ids), ids, 0.2)
        assert audit[list(LEAK_COLUMNS)].to_numpy().tolist() == [[0, 0, 0]]
        check_holdout(audit)
    # a split that cuts pairs: each pair is a near-duplicate pair (distance 0) and a caption
    # (folded alike) on both sides
    val = np.array([1, 3, 5])
    audit = split_audit(pool, np.setdiff1d(np.arange(images), val), val, 0.2)
    assert audit[list(LEAK_COLUMNS)].to_numpy().tolist() == [[0, 3, 3]]
    with pytest.raises(ValueError, match="shares 6 images, captions or near-duplicate photos"):
        check_holdout(audit)


def test_a_split_whose_images_left_the_pool_is_refused() -> None:
    """A split names its images by key: where the pool lost some (shards copied again, or the
    languages it keeps changed), the parts would silently shrink, and the split's audits would
    describe another pool."""
    captions = pd.DataFrame(
        {"image_id": [0, 1, 2], "lang": ["en"] * 3, "caption_idx": [0] * 3, "caption": list("abc")}
    )
    pool = ImageTextSet(
        "laion", ["k0", "k1", "k2"], ArrayImages(np.zeros((3, 2, 2, 3), np.uint8)), captions
    )
    train, val = split_pool(pool, ["k1"], ["k2"])
    assert train.image_keys == ["k0"] and val.image_keys == ["k1"]
    with pytest.raises(ValueError, match=r"1 validation and 0 excluded images .* notebook 01"):
        split_pool(pool, ["k1", "gone"], ["k2"])
    with pytest.raises(ValueError, match=r"0 validation and 1 excluded images"):
        split_pool(pool, ["k1"], ["gone"])
