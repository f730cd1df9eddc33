"""Time the intervals' t quantiles (:func:`xlr.analysis.stats.t_quantile`) against
``scipy.stats.t.isf``, the plain call they replace, inside whole intervals.

An interval's p-value is found by root finding over its half-width, about 30 quantiles each, and
calibration computes thousands of intervals (notebook 05 on the synthetic study: 264,508
quantiles; ``scipy.stats.t.isf`` took 90 of its 137 profiled seconds). Each of ``--intervals``
designs (3 bases x 2 seeds x 6 languages x ``--images`` images of simulated per-query values) is
summarised by :func:`xlr.analysis.stats.cells_interval` with each quantile function in turn,
outputs checked equal first; the ratio is from the same run (best of ``--repeats``).

    python benchmarks/bench_quantile.py [--intervals 300] [--images 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
from unittest import mock

import numpy as np
from scipy import stats as distributions
from timing import best_times

from xlr.analysis import stats
from xlr.analysis.stats import Cells, cells_interval, design_cells

BASES, SEEDS, LANGS = 3, 2, 6


def designs(count: int, images: int, rng: np.random.Generator) -> list[Cells]:
    """``count`` simulated studies' cells: base, seed, image and query noise around 0.1."""
    base, seed, lang, image = (
        grid.ravel() for grid in np.meshgrid(*map(np.arange, (BASES, SEEDS, LANGS, images)),
                                             indexing="ij")
    )  # fmt: skip
    cells = []
    for _ in range(count):
        values = (
            0.1
            + rng.normal(0, 0.02, BASES)[base]
            + rng.normal(0, 0.01, (BASES, SEEDS))[base, seed]
            + rng.normal(0, 0.05, images)[image]
            + rng.normal(0, 0.1, len(base))
        )
        cells.append(design_cells(values, base, seed, image, lang))
    return cells


def scipy_quantile(tail: float, df: float) -> float:
    """The plain call: scipy's t distribution object."""
    return float(distributions.t.isf(tail, df))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=int, default=300)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    studies = designs(args.intervals, args.images, np.random.default_rng(0))

    def with_stdtrit() -> list:
        return [cells_interval(cells) for cells in studies]

    def with_scipy() -> list:
        with mock.patch.object(stats, "t_quantile", scipy_quantile):
            return [cells_interval(cells) for cells in studies]

    assert with_stdtrit() == with_scipy(), "the two quantile functions gave other intervals"
    fast, plain = best_times([with_stdtrit, with_scipy], args.repeats)
    print(f"{args.intervals} intervals (p-values included), {args.images} images each:")
    print(f"  t_quantile (stdtrit) {fast:.3f} s, scipy.stats.t.isf {plain:.3f} s")
    print(f"  stdtrit/isf {fast / plain:.3f} ({plain / fast:.1f}x faster)")


if __name__ == "__main__":
    main()
