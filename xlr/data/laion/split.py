"""The downloaded LAION pool's split into training and validation images, as notebook 01 makes
it (:func:`xlr.data.prepare.prepare_data` writes and checks what these return): the pool's
copies of benchmark images out of both parts, a seeded share of the rest held out
(:func:`xlr.data.laion.holdout.held_out_images`), the validation images that training shows
under another URL out of both, and the audits of what is left.

The near-duplicate search is imported where it runs, so that reading a split that was made
(:func:`split_pool`) needs neither faiss nor the image hashes.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from xlr.data.imagetext import ImageTextSet
from xlr.data.laion.holdout import held_out_images, holdout_audit, image_subset
from xlr.data.laion_settings import LaionSection

if TYPE_CHECKING:
    from xlr.data.laion.near_duplicates import ImageHashes


def hold_out(
    laion: LaionSection,
    seed: int,
    pool: ImageTextSet,
    hashes: ImageHashes,
    benchmarks: dict[str, ImageHashes],
) -> tuple[list[str], dict[str, Any]]:
    """The validation images' keys, and the images kept out of both parts (``benchmark_copies``:
    key -> the benchmarks it copies; ``validation_copies``: keys): the pool's copies of benchmark
    images first, then ``laion.val_fraction`` of the rest held out (seeded by ``seed``), then the
    validation images that training shows under another URL, dropped from both sides (in
    training such a photo could bring captions its validation group shares)."""
    from xlr.data.laion.near_duplicates import check_copies_left_enough, copies_of, near_keys

    bits = laion.near_duplicate_bits
    copies = copies_of(benchmarks, hashes, pool.image_keys, bits)
    clean = np.flatnonzero(~pd.Index(pool.image_keys).isin(list(copies)))
    candidates = image_subset(pool, clean, pool.name, None)
    val_ids = held_out_images(candidates, laion.val_fraction, seed)
    keys = [candidates.image_keys[i] for i in val_ids]
    train, val = split_pool(pool, keys, list(copies))
    repeats = near_keys(hashes.of(train.image_keys), hashes, val.image_keys, bits)
    check_copies_left_enough(len(keys), len(repeats), len(candidates), laion.val_fraction, bits)
    dropped = set(repeats)
    kept = [key for key in keys if key not in dropped]
    return kept, {"benchmark_copies": copies, "validation_copies": repeats}


def excluded_keys(excluded: dict[str, Any]) -> list[str]:
    """The keys of the images :func:`hold_out` keeps out of both parts."""
    return [*excluded["benchmark_copies"], *excluded["validation_copies"]]


def split_pool(
    pool: ImageTextSet, val_keys: Collection[str], out_keys: Collection[str]
) -> tuple[ImageTextSet, ImageTextSet]:
    """The training and validation parts of ``pool``, without the images of ``out_keys``.
    Validation is declared parallel: an image's captions in other languages are translations of
    its own (ENG TEXT, ours)."""
    # a hash lookup: np.isin compares object arrays pair by pair (2 s at 200k x 1k keys, 8 ms)
    keys = pd.Index(pool.image_keys)
    held, out = keys.isin(list(val_keys)), keys.isin(list(out_keys))
    if held.sum() < len(set(val_keys)) or out.sum() < len(set(out_keys)):
        raise ValueError(
            f"{pool.name}: {len(set(val_keys)) - held.sum()} validation and "
            f"{len(set(out_keys)) - out.sum()} excluded images of the split are not in the pool "
            "any more (its shards or the languages it keeps changed since the split was made): "
            "run notebook 01 again, which splits the pool anew"
        )
    train = image_subset(pool, np.flatnonzero(~held & ~out), pool.name, None)
    return train, image_subset(pool, np.flatnonzero(held & ~out), f"{pool.name}-val", True)


def split_audits(
    laion: LaionSection,
    parts: tuple[ImageTextSet, ImageTextSet],
    hashes: ImageHashes,
    benchmarks: dict[str, ImageHashes],
    copies: dict[str, list[str]],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The split's audit (:func:`xlr.data.laion.holdout.holdout_audit`, with the near-duplicate
    pairs left between validation and training) and its overlap with the benchmarks
    (:func:`xlr.data.laion.near_duplicates.benchmark_overlap`; ``copies`` as :func:`hold_out`
    found them)."""
    from xlr.data.laion.near_duplicates import benchmark_overlap, pairs_within

    train, val = parts
    bits = laion.near_duplicate_bits
    pairs = pairs_within(hashes.of(val.image_keys), hashes.of(train.image_keys), bits)
    audit = holdout_audit(train, val, laion.val_fraction, len(pairs))
    return audit, benchmark_overlap(benchmarks, copies, hashes, parts, bits)
