"""How often a relative claim (rank distance: a below b by at least 10% of b's level) is called
supported, by three rules: the claims' (:func:`xlr.analysis.verdicts.relative_verdict`, the tests
of a - 0.9 b and a - 1.1 b themselves), Fieller's interval of a / b read against 0.9 and 1.1
(:mod:`xlr.analysis.ratios`, what the table shows), and the rule of sessions before 19: the
difference's interval beyond 10% of b's *estimated* level, read as if known. With the true
a / b at the minimum (``--ratio 0.9``, the default) that is the rate of false support; below
it (``--ratio 0.7``), the power.

Each simulated study (:func:`boundary_study`) has ``--bases`` of ``--seeds`` runs each; b's
per-query values are its level, times a base's own level (bases differ in how biased they are,
by each row's base SD, a fraction of the level), plus seed noise, an image's difficulty shared
by both arms, and query noise; a is b less a shift. In the *additive* world the shift is the
minimum at the bases' mean level, so b's base effects cancel in a - b but not in b's estimated
level; in the *proportional* world a is (1 - minimum) times b, and they cancel in both. With one
base (the real study's design) the additive world's true a / b is the minimum only where the
base SD is 0: its other rows are not at the boundary. A one-sided rule at the boundary should
call "supported" in at most (1 - level) / 2 of studies: 2.5% at 95%, 0.31% at the batches
family's 1 - 0.05/8.

    python benchmarks/bench_relative.py [--studies 2000] [--images 1500] [--ratio 0.9]
        [--bases 3] [--seeds 2]
"""

from __future__ import annotations

import argparse

import numpy as np

from xlr.analysis.ratios import ratio_interval
from xlr.analysis.stats import Cells, cells_interval, linear_parts
from xlr.analysis.verdicts import relative_verdict, verdict

LANGS = 6
LEVEL = 10.0  # b's mean rank distance
SEED_SD, IMAGE_SD, QUERY_SD = 0.2, 3.0, 4.0  # in ranks
MINIMUM = 0.1  # report.min_effect.rank_distance
CONFIDENCES = (0.95, 1 - 0.05 / 8)
BASE_SDS = (0.0, 0.1, 0.2, 0.4)  # between bases, as a fraction of b's level
WORLDS = ("additive", "proportional")


def boundary_study(
    rng: np.random.Generator,
    world: str,
    bases: int,
    n_images: int,
    base_sd: float,
    ratio: float = 1 - MINIMUM,
    seeds: int = 2,
) -> tuple[Cells, Cells]:
    """One study whose true a / b is ``ratio`` (by default exactly 1 - :data:`MINIMUM`, module
    doc) over ``bases`` x ``seeds`` runs: the cells of a and of b, one query per run, language
    and image."""
    run_base = np.repeat(np.arange(bases), seeds)
    shape = (bases * seeds, LANGS, n_images)
    level = LEVEL * (1 + rng.normal(0, base_sd, bases))[run_base]
    image = rng.normal(0, IMAGE_SD, n_images)
    b = level[:, None, None] + rng.normal(0, SEED_SD, shape[0])[:, None, None] + image
    b = b + rng.normal(0, QUERY_SD, shape)
    noise = rng.normal(0, SEED_SD, shape[0])[:, None, None] + rng.normal(0, QUERY_SD, shape)
    if world == "additive":
        a = b - (1 - ratio) * LEVEL + noise
    elif world == "proportional":
        a = ratio * b + noise
    else:
        raise ValueError(f"unknown world {world!r}: {WORLDS}")
    counts = np.ones(shape)
    return Cells(a, counts, run_base), Cells(b, counts, run_base)


RULES = ("claims'", "Fieller", "plug-in")


def supported(a: Cells, b: Cells, confidence: float) -> tuple[bool, bool, bool]:
    """Whether a below b by the minimum is supported by each of :data:`RULES`."""
    difference = cells_interval(Cells(a.sums - b.sums, a.counts, a.run_base), confidence)
    plug_in = difference.high < -MINIMUM * linear_parts(b).estimate
    ratio = ratio_interval(a, b, confidence)
    fieller = verdict(ratio.low - 1, ratio.high - 1, -1, MINIMUM) == "supported"
    return relative_verdict(a, b, -1, MINIMUM, confidence) == "supported", fieller, plug_in


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=2000)
    parser.add_argument("--images", type=int, default=1500)
    parser.add_argument("--bases", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=2, help="fine-tuning seeds of each base")
    parser.add_argument("--ratio", type=float, default=1 - MINIMUM)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(
        f"{args.studies} studies per row, true a / b = {args.ratio:g} (minimum {1 - MINIMUM:g}), "
        f"{args.bases} bases x {args.seeds} seeds, {LANGS} languages x {args.images} images; "
        "share called supported (at the minimum: at most (1 - level) / 2)"
    )
    header = " | ".join(f"{c:.2%}: {', '.join(RULES)}" for c in CONFIDENCES)
    print(f"world         base SD | {header}")
    for world in WORLDS:
        for base_sd in BASE_SDS:
            counts = np.zeros((len(CONFIDENCES), len(RULES)))
            for _ in range(args.studies):
                a, b = boundary_study(
                    rng, world, args.bases, args.images, base_sd, args.ratio, args.seeds
                )
                for row, confidence in enumerate(CONFIDENCES):
                    counts[row] += supported(a, b, confidence)
            rates = " | ".join(
                " ".join(f"{100 * rate:6.2f}%" for rate in row) for row in counts / args.studies
            )
            print(f"{world:12s}  {base_sd:7.2f} | {rates}", flush=True)


if __name__ == "__main__":
    main()
