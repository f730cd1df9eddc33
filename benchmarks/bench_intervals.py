"""How often the claims' interval excludes a true zero, and its width, against a t interval with
Satterthwaite's degrees of freedom (the rule it replaced), on simulated null studies.

Each study's per-query values are ``seed_r + image_i + residual`` in every (run, language,
image) cell: runs are one base's seeds, or bases of two seeds each (the base shift and the seed
noise then both enter, at the same SD), so the ratio of training noise to image noise is set by
the seed SD. Both rules read the same estimated variance parts of
:func:`xlr.analysis.stats.cells_interval`; the rates are at 95% and at the batches family's
level (1 - 0.05/24). Satterthwaite's df come from the estimated parts, so they rise when the
training part comes out small: the tails run narrow where it dominates. The nominal rates are
5% and 0.21%.

``--training`` draws the training effects from a heavy-tailed (t3) or skewed distribution of
the same SD instead of a normal one, which three units cannot reveal (the A/A gate cannot see
it: :mod:`xlr.analysis.calibration`); ``--image-effects`` does the same for the images'
difficulty, where few images of skewed difficulty make ``images - 1`` overstate the image
part's degrees of freedom.

    python benchmarks/bench_intervals.py [--studies 2000] [--images 300] [--training normal]
        [--image-effects normal] [--image-sd 0.1]
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import stats

from xlr.analysis.stats import Cells, Interval, cells_interval

LANGS = 6
IMAGE_SD, RESIDUAL_SD = 0.1, 0.3  # an image's difficulty; the rest of a query's paired difference
LEVELS = (0.95, 1 - 0.05 / 24)
DESIGNS = ((1, 3), (3, 2))  # (bases, seeds per base): the real study's and the synthetic one's
SEED_SDS = (0.0, 0.01, 0.02, 0.03, 0.06)
SHAPES = ("normal", "t3", "skewed")  # the training effects' distribution (training_effects)


def training_effects(
    rng: np.random.Generator, sd: float, size: int, shape: str = "normal"
) -> np.ndarray:
    """``size`` training effects of mean 0 and standard deviation ``sd``: normal, as the
    interval's t quantile assumes; ``t3`` (Student's t with 3 degrees of freedom, heavy tails);
    or ``skewed`` (an exponential, centred: a unit now and then far above the rest)."""
    if shape == "normal":
        return rng.normal(0, sd, size)
    if shape == "t3":
        return rng.standard_t(3, size) * sd / np.sqrt(3)
    if shape == "skewed":
        return (rng.exponential(1.0, size) - 1.0) * sd
    raise ValueError(f"unknown shape of training effects {shape!r}: normal, t3 or skewed")


def null_study(
    rng: np.random.Generator,
    bases: int,
    seeds: int,
    n_images: int,
    seed_sd: float,
    shape: str = "normal",
    image_shape: str = "normal",
    image_sd: float = IMAGE_SD,
) -> Cells:
    """One study with no effect, as the interval's cells (one query per run, language, image);
    the training effects (bases' and seeds') of the given ``shape`` and the images' difficulty
    of ``image_shape`` with standard deviation ``image_sd`` (:func:`training_effects`)."""
    run_base = np.repeat(np.arange(bases), seeds)
    training = training_effects(rng, seed_sd, bases, shape)[run_base] if bases > 1 else 0.0
    training = training + training_effects(rng, seed_sd, bases * seeds, shape)
    values = (
        training[:, None, None]
        + training_effects(rng, image_sd, n_images, image_shape)[None, None, :]
        + rng.normal(0, RESIDUAL_SD, (bases * seeds, LANGS, n_images))
    )
    return Cells(values, np.ones_like(values), run_base)


def satterthwaite_half_width(interval: Interval, level: float) -> float:
    """The half-width of the t interval with Satterthwaite's df from the same variance parts."""
    v_run = interval.training_variance
    v_image = interval.se**2 - v_run
    df = interval.se**4 / (v_run**2 / interval.training_df + v_image**2 / (interval.n_images - 1))
    return float(stats.t.ppf((1 + level) / 2, df) * interval.se)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=2000)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--training", choices=SHAPES, default="normal")
    parser.add_argument("--image-effects", choices=SHAPES, default="normal")
    parser.add_argument("--image-sd", type=float, default=IMAGE_SD)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(
        f"{args.studies} null studies per row, {LANGS} languages x {args.images} images, "
        f"{args.training} training effects, {args.image_effects} image effects of SD "
        f"{args.image_sd} (query residuals {RESIDUAL_SD})"
    )
    print(
        "bases x seeds  seed SD  training share | excluded zero at 95%: Satterthwaite, ours "
        "| at 1 - 0.05/24: Satterthwaite, ours | half-width ours / Satterthwaite there"
    )
    for bases, seeds in DESIGNS:
        for seed_sd in SEED_SDS:
            share, widths = [], []
            counts = np.zeros((len(LEVELS), 2))
            for _ in range(args.studies):
                cells = null_study(
                    rng,
                    bases,
                    seeds,
                    args.images,
                    seed_sd,
                    args.training,
                    args.image_effects,
                    args.image_sd,
                )
                for row, level in enumerate(LEVELS):
                    interval = cells_interval(cells, level)
                    old = satterthwaite_half_width(interval, level)
                    counts[row] += (
                        abs(interval.estimate) > old,
                        interval.low > 0 or interval.high < 0,
                    )
                share.append(interval.training_variance / interval.se**2)
                widths.append(interval.half_width(LEVELS[-1]) / old)
            rates = 100 * counts / args.studies
            print(
                f"{bases} x {seeds}  {seed_sd:7.2f}  {np.median(share):14.2f} | "
                f"{rates[0, 0]:5.2f}% {rates[0, 1]:5.2f}% | "
                f"{rates[1, 0]:5.2f}% {rates[1, 1]:5.2f}% | x{np.median(widths):.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
