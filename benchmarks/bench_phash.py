"""The LAION near-duplicate check's costs: pHash throughput in one process, a re-run served by
the hash cache against hashing again (the plain alternative), and faiss's binary range search at
the real study's scale.

Images are the generated corpus's scenes re-encoded as 256-px JPEGs (img2dataset's size in
``params/laion5b_xlmr_b32.yaml``); the range search takes a validation split's 5,000 codes
against ``--pool`` random codes (the study's pool is about 900k images).

    python benchmarks/bench_phash.py [--images 2000] [--pool 1000000]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from PIL import Image

from xlr.config import SyntheticSection
from xlr.data.imagetext import FileImages
from xlr.data.laion.near_duplicates import image_hashes, pairs_within
from xlr.data.synthetic import generate_corpus, load_pool

SIZE = 256  # data.laion.download.image_size of the real study


def write_photos(count: int, folder: Path) -> FileImages:
    """``count`` generated scenes, upscaled to :data:`SIZE` px and saved as JPEG files."""
    corpus = generate_corpus(
        SyntheticSection(pretrain_images=count, image_size=128, shard_size=1000),
        folder / "corpus",
        progress=False,
    )
    pool = load_pool(corpus, "pretrain")
    paths = []
    for i in range(len(pool)):
        buffer = io.BytesIO()
        pool.images[i].resize((SIZE, SIZE), Image.Resampling.BICUBIC).save(buffer, "JPEG")
        paths.append(folder / f"{i:07d}.jpg")
        paths[-1].write_bytes(buffer.getvalue())
    return FileImages(paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--pool", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        images = write_photos(args.images, Path(tmp))
        keys = [path.stem for path in images.paths]
        cache = Path(tmp) / "phash.parquet"
        start = time.perf_counter()
        first = image_hashes(images, keys, cache, workers=1, progress=False)
        hashing = time.perf_counter() - start
        start = time.perf_counter()
        again = image_hashes(images, keys, cache, workers=1, progress=False)
        cached = time.perf_counter() - start
    assert np.array_equal(first.codes, again.codes)
    print(f"{args.images} JPEGs of {SIZE} px, one process:")
    print(f"  pHash           {args.images / hashing:8.0f} images/s ({hashing:.2f} s)")
    print(f"  re-run, cached  {args.images / cached:8.0f} images/s ({cached:.2f} s)")
    print(f"  cached / hashed speed: {hashing / cached:.1f}x")
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, (args.pool, 8), dtype=np.uint8)
    val = rng.integers(0, 256, (5000, 8), dtype=np.uint8)
    start = time.perf_counter()
    pairs = pairs_within(val, pool, 10)
    search = time.perf_counter() - start
    print(
        f"range search, 5000 codes against {args.pool} within 10 bits: {search:.2f} s "
        f"({len(pairs)} pairs; faiss with {faiss.omp_get_max_threads()} threads)"
    )


if __name__ == "__main__":
    main()
