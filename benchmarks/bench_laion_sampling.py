"""Benchmark LAION quota sampling: the scalable sampler against the full-materialisation query.

Why: the real study samples 900k rows from about 4.6B (laion2B-en 2.3B, laion2B-multi 2.2B); a
selection that holds every filtered row of the quota languages cannot run there. This generates
a LAION-schema parquet set shaped like laion2B-en + laion2B-multi (cached under
``runs/bench/laion_sampling/``, not committed), samples it with the study's quotas and filters
(``params/laion5b_xlmr_b32.yaml``) both ways, each in a fresh process, at the full size and at a
quarter of it, and reports wall time, CPU time (less disturbed by other load), peak resident
memory, their ratios, whether the two samples are byte-identical, and an extrapolation to the
real metadata (a line through the two sizes, and the full size scaled in proportion).

    .venv/bin/python benchmarks/bench_laion_sampling.py [--rows 10000000] [--skip-reference]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from xlr.data.laion import (
    SAMPLE_FILE,
    LaionEngine,
    LaionFilters,
    LaionInputs,
    LaionQuotas,
    sample_laion,
    select_reference,
    select_scalable,
)
from xlr.langs import LANGUAGES
from xlr.paths import project_root

REAL_ROWS = {"english": 2_320_000_000, "metadata": 2_260_000_000}  # laion2B-en, laion2B-multi
QUOTAS = LaionQuotas(
    counts={
        "en": 200_000,
        "de": 100_000,
        "fr": 100_000,
        "es": 100_000,
        "it": 100_000,
        "ru": 100_000,
        "zh": 100_000,
        "ja": 100_000,
    }
)
FILTERS = LaionFilters(
    min_similarity=0.26,
    max_punsafe=0.5,
    max_pwatermark=0.8,
    min_width=64,
    min_height=64,
    min_caption_chars=5,
)
PART_ROWS = 250_000
FORMAT = 1  # bump when the generator changes, so the cache is rebuilt


def _words(rng: np.random.Generator, n: int) -> pa.Array:
    """A vocabulary of ``n`` pseudo-words, 3-10 letters."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lengths = rng.integers(3, 11, n)
    return pa.array(["".join(rng.choice(letters, k)) for k in lengths], pa.string())


def _captions(rng: np.random.Generator, vocab: pa.Array, n: int) -> pa.Array:
    """Captions of 2-14 vocabulary words; 12% are drawn from a Zipf-weighted pool of common
    captions in random case, as LAION repeats stock captions ("image", product names)."""
    counts = rng.integers(2, 15, n)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    words = vocab.take(pa.array(rng.integers(0, len(vocab), offsets[-1])))
    text = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), words), " ")
    common = rng.random(n) < 0.12
    rank = np.minimum(rng.zipf(1.3, int(common.sum())), 20_000)
    stock = pc.binary_join_element_wise("stock caption", pa.array(rank.astype(str)), " ")
    stock = pc.if_else(pa.array(rng.random(len(rank)) < 0.3), pc.utf8_upper(stock), stock)
    return pc.replace_with_mask(text, pa.array(common), stock)


def _part(
    rng: np.random.Generator,
    vocab: pa.Array,
    n: int,
    offset: int,
    langs: list[str] | None,
    shares: np.ndarray | None,
    url_space: int,
) -> pa.Table:
    """One parquet part: LAION's columns, about 3% of URLs repeating others in the set."""
    ids = np.arange(offset, offset + n)
    repeat = rng.random(n) < 0.03
    ids[repeat] = rng.integers(0, url_space, int(repeat.sum()))
    hexes = pa.array(np.char.mod("%012x", ids * 2654435761 % (1 << 48)))
    hosts = pa.array(np.char.mod("cdn%d.shop", ids % 977))
    url = pc.binary_join_element_wise("https://", hosts, ".example.com/img/", hexes, ".jpg", "")
    columns = {
        "URL": url,
        "TEXT": _captions(rng, vocab, n),
        "similarity": pa.array(rng.normal(0.31, 0.035, n).astype(np.float32)),
        "punsafe": pa.array(rng.beta(0.4, 6, n).astype(np.float32)),
        "pwatermark": pa.array(rng.beta(0.6, 3, n).astype(np.float32)),
        "WIDTH": pa.array(rng.integers(32, 2048, n).astype(np.int32)),
        "HEIGHT": pa.array(rng.integers(32, 2048, n).astype(np.int32)),
        "hash": pa.array(rng.integers(-(2**62), 2**62, n)),
    }
    if langs is not None and shares is not None:
        columns["LANGUAGE"] = pa.array(np.array(langs)[rng.choice(len(langs), n, p=shares)])
    return pa.table(columns)


def generate(root: Path, rows: int) -> dict[str, list[str]]:
    """The parquet set (cached): half laion2B-en, half laion2B-multi (LAION's own ratio is
    2.32 : 2.26), the multi languages at their LAION shares plus codes LAION's language ID also
    emits (none, unregistered) at 3%; returns the part files per role."""
    rng = np.random.default_rng(0)
    others = [code for code in LANGUAGES if code != "en"]
    weights = np.array([LANGUAGES[c].laion_share for c in others])
    langs, shares = (
        [*others, "", "xx"],
        np.concatenate([weights / weights.sum() * 0.97, [0.02, 0.01]]),
    )
    vocab = _words(rng, 50_000)
    files: dict[str, list[str]] = {"english": [], "metadata": []}
    done = root / "done.json"
    parts = max(1, rows // (2 * PART_ROWS))
    for role, folder in (("english", "laion2B-en"), ("metadata", "laion2B-multi")):
        for i in range(parts):
            files[role].append(str(root / folder / f"part-{i:05d}.snappy.parquet"))
    if done.is_file() and json.loads(done.read_text()) == {"rows": rows, "format": FORMAT}:
        return files
    shutil.rmtree(root, ignore_errors=True)
    offset = 0
    for role, paths in files.items():
        for path in paths:
            coded = role == "metadata"
            table = _part(
                rng,
                vocab,
                PART_ROWS,
                offset,
                langs if coded else None,
                shares if coded else None,
                rows,
            )
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path, row_group_size=100_000)
            offset += PART_ROWS
    done.write_text(json.dumps({"rows": rows, "format": FORMAT}))
    return files


def child(args: argparse.Namespace) -> None:
    """Sample once in this fresh process; print wall time, CPU time and peak RSS as JSON."""
    files = json.loads(args.files)
    inputs = LaionInputs(metadata=files["metadata"], english=files["english"])
    engine = LaionEngine(memory_limit=args.memory_limit, threads=args.threads)
    select = select_scalable if args.child == "scalable" else select_reference
    start = time.perf_counter()
    result = sample_laion(
        inputs, QUOTAS, FILTERS, 0, Path(args.out), engine=engine, hash_inputs=False, select=select
    )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    measured = {
        "wall_s": time.perf_counter() - start,
        "cpu_s": usage.ru_utime + usage.ru_stime,  # all DuckDB threads; includes the imports
        "peak_rss": usage.ru_maxrss * 1024,
        "selection": result.manifest["selection"],
    }
    print(json.dumps(measured))


def run(kind: str, files: dict[str, list[str]], out: Path, args: argparse.Namespace) -> dict:
    """Run :func:`child` for ``kind`` in a fresh interpreter, so peak RSS is this run's alone.

    The reference runs with DuckDB's default memory limit (80% of RAM), as it did before the
    scalable sampler; the scalable one with ``--memory-limit``."""
    memory_limit = args.memory_limit if kind == "scalable" else None
    command = [sys.executable, __file__, "--child", kind, "--files", json.dumps(files)]
    command += ["--out", str(out), "--memory-limit", str(memory_limit)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def describe(kind: str, m: dict) -> str:
    return (
        f"{kind} {m['wall_s']:6.1f} s wall, {m['cpu_s']:6.1f} s CPU, "
        f"{m['peak_rss'] / 2**30:5.2f} GiB peak RSS"
    )


def extrapolate(kind: str, small: dict, full: dict, real: int) -> str:
    """A line through the two sizes (fixed cost + cost per row), evaluated at ``real`` rows, and
    the full size scaled in proportion (as if every cost grew with the rows).

    The line can flatter the scalable sampler: at the smaller size its quotas are a larger share
    of the rows, so more of its cost there is the examined rows' (fixed at scale) and the slope
    comes out lower than the cost of the scans alone; the proportional figure bounds it above.
    For the reference both are lower bounds: it sorts, and spills at scale."""
    parts = []
    for what in ("wall_s", "cpu_s"):
        per_row = (full[what] - small[what]) / (full["n"] - small["n"])
        fixed = full[what] - per_row * full["n"]
        scaled = full[what] * real / full["n"] / 3600
        parts.append(
            f"{what[:-2]} {fixed:.0f} s + {per_row * 1e9:.0f} s/billion rows -> "
            f"{(fixed + per_row * real) / 3600:.1f} h (in proportion: {scaled:.1f} h)"
        )
    return f"extrapolated {kind} to {real / 1e9:.2f}B rows: " + "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument(
        "--memory-limit",
        default=LaionEngine().memory_limit,
        help="DuckDB memory_limit of the scalable sampler ('None': DuckDB's)",
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--child", choices=["scalable", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--files", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_limit == "None":
        args.memory_limit = None
    if args.child:
        child(args)
        return
    cache = project_root() / "runs" / "bench" / "laion_sampling" / f"rows{args.rows}"
    start = time.perf_counter()
    files = generate(cache, args.rows)
    size = sum(Path(f).stat().st_size for fs in files.values() for f in fs)
    print(
        f"input: {args.rows:,} rows in {sum(map(len, files.values()))} parts, "
        f"{size / 1e9:.2f} GB parquet ({time.perf_counter() - start:.0f} s to generate or find)"
    )
    print(
        f"quotas {QUOTAS.per_language()}; scalable: memory_limit={args.memory_limit}, "
        f"threads={args.threads or 'all cores'}; reference: DuckDB's defaults; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start"
    )
    kinds = ["scalable"] if args.skip_reference else ["scalable", "reference"]
    sizes = {"quarter": {role: fs[: max(1, len(fs) // 4)] for role, fs in files.items()}}
    sizes["full"] = files
    measured: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_laion-") as tmp:
        for label, subset in sizes.items():
            n = sum(map(len, subset.values())) * PART_ROWS
            runs = {kind: run(kind, subset, Path(tmp) / f"{label}-{kind}", args) for kind in kinds}
            measured[label] = {kind: m | {"n": n} for kind, m in runs.items()}
            print(f"{label} ({n / 1e6:.1f}M rows):")
            for kind, m in runs.items():
                print(f"  {describe(kind, m)}")
            new = runs["scalable"]
            print(
                f"  scalable: {new['selection']['rounds']} round(s), examined fractions "
                f"{ {k: round(v['fraction'], 3) for k, v in new['selection']['examined'].items()} }"
            )
            if "reference" in runs:
                ref = runs["reference"]
                samples = [(Path(tmp) / f"{label}-{k}" / SAMPLE_FILE).read_bytes() for k in kinds]
                print(
                    f"  scalable / reference: wall {new['wall_s'] / ref['wall_s']:.2f}, CPU "
                    f"{new['cpu_s'] / ref['cpu_s']:.2f}, peak RSS "
                    f"{new['peak_rss'] / ref['peak_rss']:.2f}; samples byte-identical: "
                    f"{samples[0] == samples[1]}"
                )
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    for kind in kinds:
        small, full = measured["quarter"][kind], measured["full"][kind]
        print(extrapolate(kind, small, full, sum(REAL_ROWS.values())))


if __name__ == "__main__":
    main()
