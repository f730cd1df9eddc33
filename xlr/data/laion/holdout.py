"""The LAION path's validation split: images held out of the sampled training pool.

Tuning and the controls choose by looking at validation results, never at the evaluation
benchmarks, so the LAION path needs its own validation set as the generated corpus has one.
It is a seeded share of the downloaded images (``data.laion.val_fraction``, at most
:data:`VAL_IMAGES_MAX`), drawn by image, so an image and every caption of it (its own, ENG TEXT,
machine translations) fall on one side. Images that share any caption (case, whitespace, punctuation
and Unicode forms folded, in any language and from any source: a German and a French image whose ENG
TEXT both read "dog" share one) are drawn together, as are images linked through a chain of such
shares, so no held-out caption is also a training caption. The same photo under two URLs with two
captions is found by its pixels instead (:mod:`xlr.data.laion.near_duplicates`, which
:func:`xlr.data.prepare.prepare_data` runs after the split); :func:`holdout_audit` counts all three
overlaps.
"""

from __future__ import annotations

import hashlib
import math
import sys
import unicodedata
from dataclasses import replace
from functools import cache

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from xlr.data.imagetext import ImageTextSet
from xlr.data.shards import store_subset

VAL_IMAGES_MAX = 5000  # a retrieval gallery this size already ranks finely; more only slows
AUDIT_COLUMNS: tuple[str, ...] = (
    "pool", "against", "val_images", "wanted_images", "shared_images", "shared_texts",
    "near_duplicate_pairs",
)  # fmt: skip
LEAK_COLUMNS: tuple[str, ...] = ("shared_images", "shared_texts", "near_duplicate_pairs")


@cache
def _punctuation() -> dict[int, str]:
    """Every Unicode punctuation character (categories P*), mapped to a space. Not ``[^\\w\\s]``:
    that would also cut the vowel signs of Devanagari and other scripts, which are marks."""
    chars = map(chr, range(sys.maxunicode + 1))
    return {ord(c): " " for c in chars if unicodedata.category(c).startswith("P")}


def folded(texts: pd.Series) -> pd.Series:
    """Captions folded for comparison: Unicode compatibility forms (NFKC: a decomposed accent,
    full-width Latin letters as in Japanese captions), case, punctuation and runs of
    whitespace."""
    normal = texts.str.normalize("NFKC").str.casefold()
    return normal.str.translate(_punctuation()).str.split().str.join(" ")


def caption_groups(pool: ImageTextSet) -> np.ndarray:
    """Each image's group: the connected components of the graph joining every image to each
    of its folded captions (own, ENG TEXT, machine translations; the text alone, not its
    language). Two images in different groups share no caption. A missing caption is refused:
    it has no text to group by, and factorize's code -1 would link its image to the last one."""
    missing = pool.captions[pool.captions["caption"].isna()]
    if len(missing):
        first = missing.iloc[0]
        raise ValueError(
            f"{pool.name}: {len(missing)} caption(s) without text (null), e.g. image "
            f"{pool.image_keys[int(first['image_id'])]!r} in {first['lang']!r} (translated_by "
            f"{first.get('translated_by', '')!r}); the validation split groups images by caption "
            "text, so drop the rows without text (or translate them) before the split"
        )
    images = len(pool)
    texts, distinct = pd.factorize(folded(pool.captions["caption"]))
    edges = coo_matrix(
        (np.ones(len(texts)), (pool.captions["image_id"].to_numpy(), images + texts)),
        shape=(images + len(distinct),) * 2,
    )
    _, labels = connected_components(edges, directed=False)
    return labels[:images]


def _group_order(pool: ImageTextSet, groups: np.ndarray, seed: int) -> list[int]:
    """The groups in the seeded order ``md5(seed, the group's first folded caption)``: it depends
    on the captions, not on where the shards list the images. A group without captions is named
    by its first image key ("~" sorts after the "t" of every caption)."""
    captions = pool.captions
    texts = "t" + folded(captions["caption"])
    keys = "~" + pd.Series(pool.image_keys, dtype=object)
    names = pd.DataFrame(
        {
            "group": np.r_[groups[captions["image_id"].to_numpy()], groups],
            "name": np.r_[texts.to_numpy(), keys.to_numpy()],
        }
    )
    # each group's smallest name (a sort: groupby's min of strings runs in Python, per group)
    first = names.sort_values("name").drop_duplicates("group")
    digest = {
        g: hashlib.md5(f"{seed}\x00{name}".encode()).hexdigest()
        for g, name in zip(first["group"], first["name"], strict=True)
    }
    return sorted(digest, key=digest.__getitem__)


def validation_size(images: int, fraction: float) -> int:
    """How many of ``images`` the validation split wants: ``fraction`` of them (rounded down,
    but at least one), at most :data:`VAL_IMAGES_MAX`, and never all (training keeps one)."""
    share = max(1, math.floor(fraction * images + 1e-9))  # the epsilon keeps 0.29 * 100 at 29
    return min(share, VAL_IMAGES_MAX, images - 1)


def held_out_images(pool: ImageTextSet, fraction: float, seed: int) -> np.ndarray:
    """Sorted ids of the images held out for validation: whole :func:`caption_groups`, in a
    seeded order, each taken only if it keeps the total within :func:`validation_size`. A group
    too large to fit (a boilerplate caption such as "Untitled" shared by many images) stays in
    training, and smaller groups after it are still taken, so the split never exceeds its size.
    A split short of half its size is refused: duplicate captions then chain most images into
    groups too large to hold out, and validation would be too small to choose by."""
    if len(pool) < 2:
        raise ValueError(
            f"{pool.name}: {len(pool)} image(s) downloaded; a validation split needs at least 2 "
            "(raise data.laion.quotas)"
        )
    wanted = validation_size(len(pool), fraction)
    groups = caption_groups(pool)
    members = np.argsort(groups, kind="stable")  # group g's images: members[starts[g]:][:sizes[g]]
    sizes = np.bincount(groups)
    starts = np.cumsum(sizes) - sizes
    chosen: list[np.ndarray] = []
    total = 0
    for group in _group_order(pool, groups, seed):
        if total + sizes[group] <= wanted:
            chosen.append(members[starts[group] : starts[group] + sizes[group]])
            total += sizes[group]
            if total == wanted:
                break
    if 2 * total < wanted:
        raise ValueError(
            f"{pool.name}: only {total} of the {wanted} validation images "
            f"(data.laion.val_fraction {fraction} of {len(pool)}) can be held out: images that "
            "share a caption (duplicate captions, in any language, and chains of them) fall on "
            f"one side, and the largest such group holds {sizes.max()} images, too many to hold "
            "out without its captions also training. Raise data.laion.val_fraction or "
            "data.laion.quotas, or data.laion.filters.min_caption_chars to drop short "
            "boilerplate captions ('Untitled', 'image') that chain images"
        )
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def image_subset(
    pool: ImageTextSet, ids: np.ndarray, name: str, parallel: bool | None
) -> ImageTextSet:
    """The images ``ids`` (sorted) of ``pool``, renumbered from 0, with their captions."""
    position = pd.Series(np.arange(len(ids)), index=ids)
    captions = pool.captions[pool.captions["image_id"].isin(ids)].copy()
    captions["image_id"] = position.loc[captions["image_id"]].to_numpy()
    return replace(
        pool,
        name=name,
        image_keys=[pool.image_keys[i] for i in ids],
        images=store_subset(pool.images, ids),
        captions=captions.reset_index(drop=True),
        parallel=parallel,
    )


def holdout_audit(
    train: ImageTextSet, val: ImageTextSet, fraction: float, near_duplicate_pairs: int
) -> pd.DataFrame:
    """The validation split's size beside the size ``fraction`` wants (:func:`validation_size`
    of both parts' images: caption groups and near-duplicates can leave it short), and what the
    validation images share with training: image keys, captions (folded; every language and
    source: own, ENG TEXT, machine translations), and ``near_duplicate_pairs``, the
    (validation, training) image pairs within the pHash radius
    (:func:`xlr.data.laion.near_duplicates.pairs_within` of the two parts' codes)."""
    texts = [set(folded(part.captions["caption"])) for part in (train, val)]
    keys = set(train.image_keys) & set(val.image_keys)
    wanted = validation_size(len(train) + len(val), fraction)
    shared = (len(keys), len(texts[0] & texts[1]), near_duplicate_pairs)
    row = ("val", "finetune", len(val), wanted, *shared)
    return pd.DataFrame([row], columns=list(AUDIT_COLUMNS))


def check_holdout(audit: pd.DataFrame) -> None:
    """Raise unless the :func:`holdout_audit` table is zero: a validation image, caption or
    photo (another copy of it) that training also shows would flatter every choice made on
    validation."""
    leaks = audit[list(LEAK_COLUMNS)].to_numpy().sum()
    if leaks:
        raise ValueError(
            f"the LAION validation split shares {leaks} images, captions or near-duplicate "
            f"photos with training: {audit.to_dict('records')}; this is a bug in "
            "xlr.data.laion.holdout or xlr.data.prepare, report it"
        )
