"""Benchmark: generate a 100k-pair LAION-like corpus and report pairs/s and peak memory.

Why: the embedded default must be regenerated from its seed on any machine in minutes; this
measures generation (rendering, captions, JPEG, shards, parquet, manifest), the cache-hit path
and loading the pretraining pool back. Peak memory is the process's maximum resident set size.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_corpus.py [--pretrain 100000]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from xlr.config import SyntheticSection
from xlr.data.synthetic import generate_corpus, load_pool


def peak_rss_mb() -> float:
    """Maximum resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def disk_mb(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrain", type=int, default=100_000)
    parser.add_argument("--finetune", type=int, default=500)
    parser.add_argument("--eval", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--load", action="store_true", help="also time load_pool('pretrain')")
    args = parser.parse_args()
    cfg = SyntheticSection(
        pretrain_images=args.pretrain,
        finetune_images=args.finetune,
        eval_images=args.eval,
        image_size=args.image_size,
    )
    pairs = args.pretrain + (args.finetune + args.eval) * len(cfg.langs) * cfg.captions_per_image
    images = args.pretrain + args.finetune + args.eval
    baseline = peak_rss_mb()  # mostly torch, which webdataset imports
    with tempfile.TemporaryDirectory(prefix="bench_corpus-") as tmp:
        out = Path(tmp) / "corpus"
        start = time.perf_counter()
        generate_corpus(cfg, out, progress=False)
        wall = time.perf_counter() - start
        print(f"images={images} pairs={pairs} image_size={args.image_size}px")
        print(f"generate: {wall:.1f} s, {args.pretrain / wall:.0f} pretrain pairs/s,")
        print(f"          {images / wall:.0f} images/s, {pairs / wall:.0f} pairs/s (all pools)")
        print(f"peak RSS: {peak_rss_mb():.0f} MiB ({baseline:.0f} MiB after imports)")
        print(f"on disk: {disk_mb(out):.0f} MiB")
        start = time.perf_counter()
        generate_corpus(cfg, out, progress=False)
        print(f"cache hit: {time.perf_counter() - start:.2f} s")
        if args.load:
            start = time.perf_counter()
            pool = load_pool(out, "pretrain")
            seconds = time.perf_counter() - start
            print(f"load_pool(pretrain): {seconds:.1f} s for {len(pool)} images")
            print(f"peak RSS after load: {peak_rss_mb():.0f} MiB")


if __name__ == "__main__":
    main()
