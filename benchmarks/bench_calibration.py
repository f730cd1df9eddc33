"""What notebook 05's calibration gate sees, on simulated null studies: how often an honest
interval's A/A rate of intervals excluding zero reaches its limit (it should not), how often
too narrow intervals' rates do (they should), and the resampled power at each study's minimum
detectable effect (0.8 if the MDE and the resamples agree).

Each study is :mod:`bench_intervals`'s (training noise at a seed SD, an image difficulty shared
by every run, per-query residuals; 6 languages). Its A/A resamples are
:func:`xlr.analysis.resamples.null_worlds`; each reads the interval's variance parts
(:func:`xlr.analysis.stats.cells_interval`) and judges every rule from them at 95% and at the
batches family's level (1 - 0.05/24), against :func:`xlr.analysis.calibration.nonzero_rate_limit`.
Rules: the claims' interval (``honest``), half and a third of its width, a normal quantile for
the training part (its degrees of freedom overstated: ``normal_training``) and Satterthwaite's
degrees of freedom. ``power`` plants the MDE at the family level and counts intervals above zero.

    python benchmarks/bench_calibration.py [--studies 30] [--resamples 200] [--images 150]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from collections.abc import Callable

import numpy as np
import pandas as pd
from bench_intervals import LEVELS, null_study, satterthwaite_half_width
from scipy import stats

from xlr.analysis.calibration import minimum_detectable_effect, nonzero_rate_limit
from xlr.analysis.resamples import null_worlds
from xlr.analysis.stats import Interval, cells_interval

DESIGNS = ((1, 3), (3, 2), (1, 2))  # the real study's, the synthetic one's, two units
SEED_SDS = (0.0, 0.01, 0.03, 0.06)


def normal_training_half_width(interval: Interval, level: float) -> float:
    """The claims' half-width with the normal quantile in place of t for the training part."""
    tail = (1 - level) / 2
    training, _, images, images_df = interval.variance_parts()
    image_part = stats.t.isf(tail, images_df) * np.sqrt(images)
    return float(np.hypot(stats.norm.isf(tail) * np.sqrt(training), image_part))


RULES: dict[str, Callable[[Interval, float], float]] = {
    "honest": Interval.half_width,
    "half": lambda interval, level: interval.half_width(level) / 2,
    "third": lambda interval, level: interval.half_width(level) / 3,
    "normal_training": normal_training_half_width,
    "satterthwaite": satterthwaite_half_width,
}


def calibrate_study(
    rng: np.random.Generator, bases: int, seeds: int, images: int, seed_sd: float, resamples: int
) -> dict[str, float]:
    """One null study's A/A nonzero rate under every rule at both levels, and its power."""
    cells = null_study(rng, bases, seeds, images, seed_sd)
    observed = cells_interval(cells, LEVELS[1])
    planted = minimum_detectable_effect(observed) * cells.counts
    excluded = np.zeros((resamples, len(LEVELS), len(RULES)), dtype=bool)
    detected = np.zeros(resamples, dtype=bool)
    worlds = null_worlds(cells, observed.estimate, rng)
    for i, null in enumerate(itertools.islice(worlds, resamples)):
        aa = cells_interval(dataclasses.replace(cells, sums=null), LEVELS[1])
        for j, level in enumerate(LEVELS):
            for k, rule in enumerate(RULES.values()):
                excluded[i, j, k] = abs(aa.estimate) > rule(aa, level)
        hit = cells_interval(dataclasses.replace(cells, sums=null + planted), LEVELS[1])
        detected[i] = hit.low > 0
    rates = excluded.mean(axis=0)
    row = {"training_share": observed.training_variance / observed.se**2, "power": detected.mean()}
    for j, level in enumerate(LEVELS):
        for k, name in enumerate(RULES):
            row[f"{name}@{level:.4g}"] = rates[j, k]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=30)
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--images", type=int, default=150)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for bases, seeds in DESIGNS:
        for seed_sd in SEED_SDS:
            for _ in range(args.studies):
                row = calibrate_study(rng, bases, seeds, args.images, seed_sd, args.resamples)
                rows.append({"design": f"{bases}x{seeds}", "seed_sd": seed_sd, **row})
    table = pd.DataFrame(rows)
    keys = ["design", "seed_sd"]
    summary = table.groupby(keys, sort=False)[["training_share", "power"]].mean()
    print(
        f"{args.studies} null studies a row, {args.resamples} resamples each, {args.images} images"
    )
    for level in LEVELS:
        limit = nonzero_rate_limit(level, args.resamples)
        columns = [f"{name}@{level:.4g}" for name in RULES]
        honest = table.groupby(keys, sort=False)[columns[0]]
        caught = (table[columns] >= limit).groupby([table[k] for k in keys], sort=False).mean()
        print(f"\nlevel {level:.4g}: A/A nonzero rate limit {limit:.1%}")
        print(f"honest interval's rate: mean and max ({1 - level:.2%} nominal)")
        print(pd.concat([honest.mean(), honest.max()], axis=1, keys=["mean", "max"]).round(4))
        print("share of studies whose check fails, by rule (honest: false alarms)")
        print(caught.rename(columns=lambda c: c.split("@")[0]).round(2))
    print("\nmean training share of the variance, and power at the MDE (target 0.8)")
    print(summary.round(3))


if __name__ == "__main__":
    main()
