"""Content near-duplicates on the LAION path: the same photo under another URL, resized or
re-encoded.

img2dataset gives every downloaded image its own key, so keys never say that two images are one
photo; the web holds many copies of a photo (mirrors, thumbnails, re-encodings), and the study's
benchmarks are web photos too (XTD10: COCO, Multi30K: Flickr30k, Crossmodal-3600: Open Images).
A 64-bit perceptual hash (``imagehash.phash``: the 8x8 lowest frequencies of the DCT of the
image in grey at 32x32, each bit above or below their median) keeps the coarse structure of a
photo, which resizing and JPEG re-encoding hardly move, so a copy differs from its original in
a few bits while two unrelated photos differ in about 32. Pairs within a Hamming radius
(``data.laion.near_duplicate_bits``) are found exactly by faiss's brute-force binary index
(popcount over every pair: seconds for 5,000 queries against a million codes).

:func:`image_hashes` hashes a set once (in ``run.workers`` processes, :mod:`xlr.workers`) and
keeps the codes in a parquet file keyed by image key and the SHA-256 of the image's bytes, so a
re-run hashes only what changed (a re-download that gives a key other bytes is hashed again).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
from PIL import Image

from xlr.data.imagetext import ArrayImages, FileImages, ImageStore, ImageTextSet
from xlr.data.laion.holdout import validation_size
from xlr.data.shards import ShardImages, store_subset
from xlr.faiss_builds import import_faiss
from xlr.io import atomic_write_parquet
from xlr.workers import run_jobs

faiss = import_faiss()

HASH_BITS = 64  # imagehash.phash's default hash_size 8: an 8x8 grid of bits
CHUNK_IMAGES = 2000  # images a hashing job takes: about 3 s of work, so progress moves


def phash_code(image: Image.Image) -> np.ndarray:
    """``image``'s pHash as the 8 bytes faiss's binary indexes take (``uint8 [8]``)."""
    return np.packbits(imagehash.phash(image).hash.reshape(-1))


def _image_bytes(images: ImageStore, index: int) -> bytes:
    """What ``images`` stores for image ``index``: the file's bytes, or the decoded pixels
    (with their shape, so two arrays of one size's bytes but other shapes differ)."""
    if isinstance(images, ShardImages):
        return images.read(index)
    if isinstance(images, FileImages):
        return Path(images.paths[index]).read_bytes()
    if isinstance(images, ArrayImages):
        pixels = images.pixels[index]
        return repr(pixels.shape).encode() + pixels.tobytes()
    raise TypeError(f"cannot read the bytes of {type(images).__name__} images")


def image_digests(images: ImageStore) -> list[str]:
    """The SHA-256 of every image's stored bytes: what the hash cache is checked against."""
    return [hashlib.sha256(_image_bytes(images, i)).hexdigest() for i in range(len(images))]


@dataclass(frozen=True)
class HashImages:
    """One hashing job for :func:`xlr.workers.run_jobs`: the pHash codes of ``images``
    (a subset of a set's store, so only its own index travels to the worker)."""

    images: ImageStore

    def __call__(self) -> np.ndarray:
        codes = [phash_code(self.images[i]) for i in range(len(self.images))]
        return np.stack(codes) if codes else np.zeros((0, HASH_BITS // 8), dtype=np.uint8)


@dataclass(frozen=True)
class ImageHashes:
    """The pHash code (``uint8 [N, 8]``) of each image key of a set."""

    keys: pd.Index
    codes: np.ndarray

    def of(self, keys: Sequence[str]) -> np.ndarray:
        """The codes of ``keys``, in their order; a key this set lacks is an error."""
        where = self.keys.get_indexer(pd.Index(keys, dtype=object))
        if (where < 0).any():
            missing = [key for key, at in zip(keys, where, strict=True) if at < 0]
            raise KeyError(f"no pHash for image keys {missing[:5]} ({len(missing)} in all)")
        return self.codes[where]


def image_hashes(
    images: ImageStore,
    keys: Sequence[str],
    cache: Path,
    workers: int = 1,
    progress: bool = True,
) -> ImageHashes:
    """The pHash codes of ``images`` (named ``keys``), from the parquet ``cache`` where it holds
    an image's key with the SHA-256 of the same bytes, hashed (``workers`` processes, chunks of
    :data:`CHUNK_IMAGES`) otherwise; the cache is then rewritten, atomically, for this set."""
    digests = image_digests(images)
    table = pd.DataFrame({"key": pd.Series(keys, dtype=object), "sha256": digests})
    known = pd.DataFrame(columns=["key", "sha256", "phash"])
    if cache.is_file():
        known = pd.read_parquet(cache)
    table = table.merge(known, on=["key", "sha256"], how="left", validate="one_to_one")
    todo = np.flatnonzero(table["phash"].isna().to_numpy())
    if len(todo):
        chunks = np.array_split(todo, math.ceil(len(todo) / CHUNK_IMAGES))
        jobs = [HashImages(store_subset(images, chunk)) for chunk in chunks]
        desc = f"pHash of {len(todo)} images ({cache.stem})"
        codes = run_jobs(jobs, workers=workers, desc=desc, progress=progress)
        hashed = pd.Series([bytes(code) for code in np.concatenate(codes)], index=todo)
        table.loc[todo, "phash"] = hashed
        atomic_write_parquet(table, cache)
    codes = np.frombuffer(b"".join(table["phash"]), dtype=np.uint8).reshape(-1, HASH_BITS // 8)
    return ImageHashes(pd.Index(table["key"], dtype=object), codes)


def pairs_within(queries: np.ndarray, base: np.ndarray, bits: int) -> np.ndarray:
    """``[P, 2]`` (query row, base row) of every pair of codes whose Hamming distance is at most
    ``bits``, in query order. faiss's binary range search keeps distances strictly below its
    radius (tests/test_laion_near_duplicates.py checks), hence ``bits + 1``."""
    if not len(queries) or not len(base):
        return np.zeros((0, 2), dtype=np.int64)
    index = faiss.IndexBinaryFlat(HASH_BITS)
    index.add(np.ascontiguousarray(base, dtype=np.uint8))
    limits, _, found = index.range_search(np.ascontiguousarray(queries, dtype=np.uint8), bits + 1)
    rows = np.repeat(np.arange(len(queries)), np.diff(limits).astype(np.int64))
    return np.column_stack([rows, found]).astype(np.int64)


def near_keys(
    queries: np.ndarray, hashes: ImageHashes, keys: Sequence[str], bits: int
) -> list[str]:
    """Those of ``keys`` (in their order) whose image is within ``bits`` of any code of
    ``queries``."""
    found = np.unique(pairs_within(hashes.of(keys), queries, bits)[:, 0])
    return [keys[i] for i in found]


def copies_of(
    benchmarks: dict[str, ImageHashes], hashes: ImageHashes, keys: Sequence[str], bits: int
) -> dict[str, list[str]]:
    """Those of ``keys`` (with their ``hashes``) within ``bits`` of an image of a benchmark,
    each with the benchmarks (named as in ``benchmarks``) it copies an image of."""
    copies: dict[str, list[str]] = {}
    for name, codes in benchmarks.items():
        for key in near_keys(codes.codes, hashes, keys, bits):
            copies.setdefault(key, []).append(name)
    return copies


def check_copies_left_enough(
    held_out: int, copies: int, candidates: int, fraction: float, bits: int
) -> None:
    """Raise when dropping the ``copies`` of training photos from the ``held_out`` validation
    images leaves fewer than half of what ``fraction`` of the ``candidates`` wants (the floor
    :func:`xlr.data.laion.holdout.held_out_images` keeps before the drop)."""
    wanted = validation_size(candidates, fraction)
    if 2 * (held_out - copies) < wanted:
        raise ValueError(
            f"{copies} of the {held_out} LAION validation images are copies of training images "
            f"(pHash within data.laion.near_duplicate_bits {bits}), leaving fewer than half of "
            f"the {wanted} wanted: the pool holds many near-identical photos (placeholders, "
            "product shots on white). Raise data.laion.val_fraction or data.laion.quotas, or "
            "tighten data.laion.filters"
        )


def benchmark_overlap(
    benchmarks: dict[str, ImageHashes],
    copies: dict[str, list[str]],
    hashes: ImageHashes,
    parts: tuple[ImageTextSet, ImageTextSet],
    bits: int,
) -> pd.DataFrame:
    """One row per benchmark: its images, the pool images removed as copies of them
    (``copies``: pool key -> the benchmarks it copies), and the copies the final training and
    validation ``parts`` still hold, found afresh from their codes (``hashes``, by image key):
    zero, or :func:`check_benchmark_overlap` refuses."""
    rows = []
    for name, codes in benchmarks.items():
        removed = sum(name in found for found in copies.values())
        left = [len(near_keys(codes.codes, hashes, part.image_keys, bits)) for part in parts]
        rows.append((name, len(codes.codes), bits, removed, *left))
    columns = ["benchmark", "benchmark_images", "radius_bits", "removed_from_pool",
               "left_in_finetune", "left_in_val"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def check_benchmark_overlap(overlap: pd.DataFrame) -> None:
    """Raise unless no benchmark image has a copy left in training or validation: a benchmark
    photo that training shows would flatter the evaluation it is part of."""
    counts = overlap[["left_in_finetune", "left_in_val"]].to_numpy()
    left = counts.sum()
    if left:
        offending = overlap[counts.sum(axis=1) > 0].to_dict("records")
        raise ValueError(
            f"{left} copies of benchmark images are left in the LAION pool after their removal: "
            f"{offending}; this is a bug in xlr.data.prepare, report it"
        )
