"""The LAION path's validation split: images held out of the sampled training pool.

Tuning and the controls choose by looking at validation results, never at the evaluation
benchmarks, so the LAION path needs its own validation set as the generated corpus has one.
It is a seeded share of the downloaded images (``data.laion.val_fraction``, at most
:data:`VAL_IMAGES_MAX`), drawn by image, so an image and every caption of it (its own, ENG TEXT,
machine translations) fall on one side. Images whose own captions read the same (case and
whitespace folded: shards downloaded elsewhere need not be deduplicated) are drawn together, so
no held-out caption is also a training caption; :func:`holdout_audit` counts both overlaps.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pandas as pd

from xlr.data.imagetext import ArrayImages, FileImages, ImageStore, ImageTextSet
from xlr.data.shards import ShardImages

VAL_IMAGES_MAX = 5000  # a retrieval gallery this size already ranks finely; more only slows
AUDIT_COLUMNS: tuple[str, ...] = ("pool", "against", "shared_images", "shared_texts")


def _normalised(texts: pd.Series) -> pd.Series:
    return texts.str.casefold().str.split().str.join(" ")


def own_captions(pool: ImageTextSet) -> pd.DataFrame:
    """Each image's caption as written (not LAION's or our translation)."""
    captions = pool.captions
    return captions[captions["translated_by"] == ""]


def held_out_images(pool: ImageTextSet, fraction: float, seed: int) -> np.ndarray:
    """Sorted ids of the images held out for validation: ``fraction`` of the pool's images
    (at least one, at most :data:`VAL_IMAGES_MAX`), whole groups of images with the same own
    caption, in the seeded order ``md5(seed, caption)``."""
    if len(pool) < 2:
        raise ValueError(
            f"{pool.name}: {len(pool)} image(s) downloaded; a validation split needs at least 2 "
            "(raise data.laion.quotas)"
        )
    wanted = min(max(1, round(fraction * len(pool))), VAL_IMAGES_MAX, len(pool) - 1)
    texts = _normalised(own_captions(pool).set_index("image_id")["caption"])
    order = {text: hashlib.md5(f"{seed}\x00{text}".encode()).hexdigest() for text in set(texts)}
    ranked = sorted(order, key=order.__getitem__)
    groups = texts.groupby(texts).groups
    chosen: list[int] = []
    for text in ranked:
        if len(chosen) >= wanted:
            break
        if len(chosen) + len(groups[text]) < len(pool):  # training keeps an image
            chosen += [int(i) for i in groups[text]]
    if not chosen:
        raise ValueError(f"{pool.name}: every image has the same caption; nothing to hold out")
    return np.sort(np.asarray(chosen, dtype=np.int64))


def _store_subset(images: ImageStore, ids: np.ndarray) -> ImageStore:
    """Images ``ids`` of ``images`` as a store of their own: only they travel when a set is
    pickled to a worker, not the whole download's index."""
    if isinstance(images, ShardImages):
        return ShardImages(images.tars, images.tar_ids[ids], images.offsets[ids], images.sizes[ids])
    if isinstance(images, ArrayImages):
        return ArrayImages(images.pixels[ids])
    if isinstance(images, FileImages):
        return FileImages([images.paths[i] for i in ids])
    raise TypeError(f"cannot take a subset of {type(images).__name__} images")


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
        images=_store_subset(pool.images, ids),
        captions=captions.reset_index(drop=True),
        parallel=parallel,
    )


def holdout_audit(train: ImageTextSet, val: ImageTextSet) -> pd.DataFrame:
    """What the validation images share with training: image keys, and own captions (folded)."""
    texts = [set(_normalised(own_captions(part)["caption"])) for part in (train, val)]
    keys = set(train.image_keys) & set(val.image_keys)
    row = ("val", "finetune", len(keys), len(texts[0] & texts[1]))
    return pd.DataFrame([row], columns=list(AUDIT_COLUMNS))


def check_holdout(audit: pd.DataFrame) -> None:
    """Raise unless the :func:`holdout_audit` table is zero: a validation image or caption that
    training also shows would flatter every choice made on validation."""
    leaks = audit[["shared_images", "shared_texts"]].to_numpy().sum()
    if leaks:
        raise ValueError(
            f"the LAION validation split shares {leaks} images or captions with training: "
            f"{audit.to_dict('records')}; this is a bug in xlr.data.laion.holdout, report it"
        )
