"""Content near-duplicates (:mod:`xlr.data.laion.near_duplicates`): the pHash radius on known
answers, faiss's radius convention, and the cache of hashes."""

from __future__ import annotations

import io
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from xlr.data.imagetext import ArrayImages, FileImages, ImageTextSet
from xlr.data.laion import near_duplicates
from xlr.data.laion.near_duplicates import (
    ImageHashes,
    benchmark_overlap,
    check_benchmark_overlap,
    check_copies_left_enough,
    copies_of,
    image_hashes,
    near_keys,
    pairs_within,
    phash_code,
)
from xlr.data.laion.split import split_pool
from xlr.data.laion_settings import LaionSection

BITS = LaionSection.model_fields["near_duplicate_bits"].default


def photo(seed: int, size: int = 128) -> Image.Image:
    """A photo-like image: a smooth random colour field (a 6x6 grid upsampled) with an ellipse."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
    x, y = rng.uniform(0.1, 0.6, 2) * size
    colour = tuple(int(v) for v in rng.integers(0, 256, 3))
    ImageDraw.Draw(image).ellipse((x, y, x + size / 3, y + size / 4), fill=colour)
    return image


def jpeg(image: Image.Image, quality: int = 90, scale: float = 1.0) -> bytes:
    """``image`` resized by ``scale`` and encoded as a JPEG of ``quality``."""
    size = (round(image.width * scale), round(image.height * scale))
    buffer = io.BytesIO()
    image.resize(size, Image.Resampling.BILINEAR).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def decoded(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def hamming(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.unpackbits(a ^ b).sum())


def test_a_resized_reencoded_copy_is_within_the_radius_and_another_photo_is_not() -> None:
    assert BITS == 10
    apart = []
    for seed in range(30):
        original = phash_code(decoded(jpeg(photo(seed))))
        copy = phash_code(decoded(jpeg(photo(seed), quality=30, scale=0.6)))
        other = phash_code(decoded(jpeg(photo(seed + 1000))))
        assert original.dtype == np.uint8 and original.shape == (8,)
        assert hamming(original, copy) <= BITS < hamming(original, other)
        pairs = pairs_within(np.stack([copy, other]), original[None], BITS)
        assert pairs.tolist() == [[0, 0]]  # the copy matches, the other photo does not
        apart.append(hamming(original, other))
    assert 28 <= np.median(apart) <= 36  # unrelated photos: about half the 64 bits differ


def test_faiss_radius_is_strict_and_pairs_within_includes_its_bound() -> None:
    base = np.zeros((1, 8), dtype=np.uint8)
    query = base.copy()
    query[0, 0] = 0b1111  # 4 bits apart
    query[0, 7] = 0b1  # 5
    index = faiss.IndexBinaryFlat(64)
    index.add(base)
    assert len(index.range_search(query, 5)[2]) == 0  # distance 5 is not below radius 5
    assert index.range_search(query, 6)[1].tolist() == [5]
    assert pairs_within(query, base, 5).tolist() == [[0, 0]]
    assert pairs_within(query, base, 4).tolist() == []
    # every pair, in query order; an empty side finds none
    queries = np.stack([base[0], query[0], base[0]])
    assert pairs_within(queries, np.concatenate([base, base]), 0).tolist() == [
        [0, 0], [0, 1], [2, 0], [2, 1],
    ]  # fmt: skip
    assert pairs_within(queries[:0], base, 64).shape == (0, 2)


def photo_files(folder: Path, n: int) -> tuple[list[Path], list[str]]:
    """``n`` JPEG files of different photos in ``folder``, and their keys ``k0``, ``k1``..."""
    paths = [folder / f"{seed}.jpg" for seed in range(n)]
    for seed, path in enumerate(paths):
        path.write_bytes(jpeg(photo(seed)))
    return paths, [f"k{i}" for i in range(n)]


def test_hashes_are_cached_by_key_and_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths, keys = photo_files(tmp_path, 5)
    cache = tmp_path / "phash" / "pool.parquet"
    first = image_hashes(FileImages(paths), keys, cache, progress=False)
    assert hamming(first.of(["k2"])[0], phash_code(photo(2))) <= 2
    assert np.array_equal(first.of(["k3", "k0"]), first.codes[[3, 0]])
    with pytest.raises(KeyError, match=r"no pHash for image keys \['k9'\]"):
        first.of(["k9"])
    hashed: list[int] = []

    def counting(image: Image.Image) -> np.ndarray:
        hashed.append(1)
        return phash_code(image)

    monkeypatch.setattr(near_duplicates, "phash_code", counting)
    again = image_hashes(FileImages(paths), keys, cache, progress=False)
    assert hashed == [] and np.array_equal(again.codes, first.codes)  # nothing re-hashed
    paths[1].write_bytes(jpeg(photo(7)))  # key k1 now names other bytes: hashed again
    changed = image_hashes(FileImages(paths), keys, cache, progress=False)
    assert len(hashed) == 1 and hamming(changed.of(["k1"])[0], phash_code(photo(7))) <= 2
    assert near_keys(changed.of(["k1"]), changed, keys, BITS) == ["k1"]


def test_hashing_in_worker_processes_gives_the_same_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths, keys = photo_files(tmp_path, 6)
    here = image_hashes(FileImages(paths), keys, tmp_path / "here.parquet", progress=False)
    monkeypatch.setattr(near_duplicates, "CHUNK_IMAGES", 2)  # three jobs
    spawned = image_hashes(
        FileImages(paths), keys, tmp_path / "spawned.parquet", workers=2, progress=False
    )
    assert np.array_equal(here.codes, spawned.codes)


def test_too_many_validation_copies_stop_the_split_saying_why() -> None:
    """500 candidates at 0.02 want 10 validation images: half must stay after the copies go."""
    check_copies_left_enough(10, 5, 500, 0.02, BITS)
    why = r"6 of the 10 LAION validation images are copies .* fewer than half of the 10 wanted"
    with pytest.raises(ValueError, match=why + r".*Raise data\.laion\.val_fraction"):
        check_copies_left_enough(10, 6, 500, 0.02, BITS)


def hashed_set(name: str, images: list[Image.Image]) -> tuple[ImageTextSet, ImageHashes]:
    """A set of ``images`` keyed ``{name}0``, ``{name}1``... (one German caption each), and
    their pHash codes."""
    keys = [f"{name}{i}" for i in range(len(images))]
    captions = pd.DataFrame(
        {"image_id": range(len(images)), "lang": "de", "caption_idx": 0,
         "caption": [f"Bild {i}" for i in range(len(images))]}
    )  # fmt: skip
    pixels = ArrayImages(np.stack([np.asarray(image) for image in images]))
    codes = np.stack([phash_code(pixels[i]) for i in range(len(images))])
    hashes = ImageHashes(pd.Index(keys, dtype=object), codes)
    return ImageTextSet(name, keys, pixels, captions), hashes


def benchmark_world() -> tuple[
    ImageTextSet, ImageHashes, dict[str, ImageHashes], dict[str, list[str]]
]:
    """Two benchmarks (xtd10: photos 100 and 101; multi30k: photo 200) and a LAION pool whose
    p0 is a copy of xtd10's first photo and p1 one of multi30k's (halved, re-encoded, scaled
    back to the pool's size), p2-p7 other photos; with the copies :func:`copies_of` finds (what
    the split removes)."""
    benchmarks = {
        name: hashed_set(name, [photo(seed) for seed in seeds])[1]
        for name, seeds in (("xtd10", [100, 101]), ("multi30k", [200]))
    }
    copies = [
        decoded(jpeg(photo(seed), quality=40, scale=0.5)).resize((128, 128)) for seed in (100, 200)
    ]
    pool, hashes = hashed_set("p", copies + [photo(seed) for seed in range(2, 8)])
    found = copies_of(benchmarks, hashes, pool.image_keys, BITS)
    assert found == {"p0": ["xtd10"], "p1": ["multi30k"]}
    return pool, hashes, benchmarks, found


def test_no_benchmark_copy_left_passes() -> None:
    """The split as notebook 01 makes it, both copies removed: the table counts them as removed,
    none left, and the check lets it through."""
    pool, hashes, benchmarks, copies = benchmark_world()
    parts = split_pool(pool, ["p6", "p7"], list(copies))
    overlap = benchmark_overlap(benchmarks, copies, hashes, parts, BITS)
    assert overlap.to_dict("records") == [
        {"benchmark": "xtd10", "benchmark_images": 2, "radius_bits": BITS, "removed_from_pool": 1,
         "left_in_finetune": 0, "left_in_val": 0},
        {"benchmark": "multi30k", "benchmark_images": 1, "radius_bits": BITS,
         "removed_from_pool": 1, "left_in_finetune": 0, "left_in_val": 0},
    ]  # fmt: skip
    check_benchmark_overlap(overlap)


@pytest.mark.parametrize(
    ("val_keys", "removed", "left"),
    [
        (
            ["p6", "p7"],
            ["p1"],
            "'benchmark': 'xtd10', 'benchmark_images': 2, 'radius_bits': 10, "
            "'removed_from_pool': 1, 'left_in_finetune': 1, 'left_in_val': 0",
        ),
        (
            ["p1", "p7"],
            ["p0"],
            "'benchmark': 'multi30k', 'benchmark_images': 1, 'radius_bits': 10, "
            "'removed_from_pool': 1, 'left_in_finetune': 0, 'left_in_val': 1",
        ),
    ],
    ids=["finetune", "val"],
)
def test_a_benchmark_copy_left_in_training_or_validation_stops_the_split(
    val_keys: list[str], removed: list[str], left: str
) -> None:
    """The README's "a copy left stops notebook 01": a benchmark photo that the fine-tuning or
    the validation part still shows (its removal missed) is refused, the message naming the
    benchmark with its counts and saying what to do (a removal that missed is a bug)."""
    pool, hashes, benchmarks, copies = benchmark_world()
    parts = split_pool(pool, val_keys, removed)
    overlap = benchmark_overlap(benchmarks, copies, hashes, parts, BITS)
    with pytest.raises(ValueError) as err:
        check_benchmark_overlap(overlap)
    message = str(err.value)
    assert message.startswith("1 copies of benchmark images are left in the LAION pool")
    assert left in message
    clean = "multi30k" if "'xtd10'" in left else "xtd10"
    assert f"'benchmark': '{clean}'" not in message  # only the benchmarks with a copy left
    assert message.endswith("this is a bug in xlr.data.prepare, report it")
