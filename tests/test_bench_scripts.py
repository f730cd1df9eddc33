"""Every speed benchmark in ``benchmarks/`` starts: it imports what it needs from ``xlr`` and
parses its arguments (``--help``), so ``make bench``, which runs them all and stops at the first
failure, is not broken by a module moved under it (``bench_laion_sampling.py`` imported
``project_root`` from where it no longer lives until session 20). Benchmarks cheap enough to run
at a tiny size run end to end here or in the tests of what they measure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
SCRIPTS = sorted(path.name for path in (ROOT / "benchmarks").glob("bench_*.py"))


def run_script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, f"benchmarks/{name}", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_every_benchmark_is_found() -> None:
    assert len(SCRIPTS) >= 14 and "bench_laion_sampling.py" in SCRIPTS


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_benchmark_starts(name: str) -> None:
    done = run_script(name, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:"), done.stdout


def test_the_caption_index_benchmark_runs() -> None:
    """Its figures are in the README; at 2,000 images, once, with the one-by-one index too."""
    for extra in ([], ["--one-by-one", "--round-trips"]):
        done = run_script("bench_caption_index.py", "--images", "2000", "--repeats", "1", *extra)
        assert done.returncode == 0, done.stderr
        assert "coded/plain" in done.stdout, done.stdout


def test_the_quantile_benchmark_runs() -> None:
    """Its ratio is in the notes; the two quantile functions' intervals are checked equal first."""
    done = run_script("bench_quantile.py", "--intervals", "5", "--images", "20", "--repeats", "1")
    assert done.returncode == 0, done.stderr
    assert "stdtrit/isf" in done.stdout, done.stdout
