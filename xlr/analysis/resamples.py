"""The A/A worlds of the claims' calibration (:mod:`xlr.analysis.calibration`, whose module doc
says why they are built so): resamples of a claim's paired differences with no effect and the
variance parts its interval estimated, and, for a relative claim, of arm b's values with them.

A world of the differences: each training unit (a base, or a seed of the one base) gets an
effect drawn normal with the observed variance between units; each image's residuals from its
runs' means change sign at random, alike in every run, and each run keeps only the shift of its
means that every run shares.

A relative claim (a / b - 1) is judged by the tests of a - (1 +- min) b, whose variance holds
b's noise and its covariance with the difference's. Its worlds therefore resample b with the
difference: b keeps its observed level; its units' effects are drawn jointly normal with the
difference's (the observed 2 x 2 covariance of the units' deviations: b's effect is its
regression on the difference's effect plus an independent part), and its image residuals flip
with the same signs as the difference's, which keeps their covariance over images. The
difference's draws are those of :func:`null_worlds` (b's independent part comes from a child
generator), so a relative claim's worlds of the difference are an absolute claim's.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from xlr.analysis.stats import Cells, linear_parts, run_weights


def training_units(cells: Cells) -> np.ndarray:
    """Each run's training unit, as a code from 0: its base, or with one base the run itself
    (the seeds of that base)."""
    return cells.run_base if cells.run_base.max() > 0 else np.arange(len(cells.run_base))


def unit_deviations(cells: Cells, units: np.ndarray, estimate: float) -> np.ndarray:
    """Each training unit's (``units``: a code per run) mean deviation from ``estimate``: the
    mean over its runs of each run's macro mean, as the interval reads them. A run's deviation
    from its unit's mean is no part of the worlds: the interval reads units' means only."""
    deviation = _run_means(cells).mean(axis=1) - estimate
    return np.bincount(units, deviation) / np.bincount(units)


def image_residuals(cells: Cells) -> np.ndarray:
    """Each run's sums of residuals from its own means, ``[runs, strata, images]``: what a
    world's sign flips act on."""
    return cells.sums - _run_means(cells)[..., None] * cells.counts


def _run_means(cells: Cells) -> np.ndarray:
    return cells.sums.sum(axis=2) / cells.counts.sum(axis=2)


def null_worlds(cells: Cells, estimate: float, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Endless A/A resamples of ``cells`` (module doc): each a world's sums, ``[runs, strata,
    images]``, with no effect and the observed variance parts around ``estimate``."""
    units, residuals = training_units(cells), image_residuals(cells)
    for effects, signs in _draws(unit_deviations(cells, units, estimate), cells, rng):
        yield _world(cells, units, effects, signs * residuals)


def paired_null_worlds(
    cells: Cells, estimate: float, reference: Cells, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless pairs of worlds (module doc): :func:`null_worlds`' world of the differences
    ``cells`` (from the same draws of ``rng``) and a world of b's values ``reference`` (the same
    runs, strata and images) at b's observed level, its units' effects correlated with the
    differences' as observed and its image residuals flipped with theirs."""
    same = reference.sums.shape == cells.sums.shape and all(
        np.array_equal(x, y)
        for x, y in ((reference.counts, cells.counts), (reference.run_base, cells.run_base))
    )
    if not same:
        raise ValueError("b's cells must hold the same runs, strata and images as the differences")
    units = training_units(cells)
    level = linear_parts(reference).estimate
    d = unit_deviations(cells, units, estimate)
    b = unit_deviations(reference, units, level)
    slope, spread = _regression(d, b)
    own = rng.spawn(1)[0]  # b's independent part: the differences' draws stay null_worlds'
    residuals, b_residuals = image_residuals(cells), image_residuals(reference)
    for effects, signs in _draws(d, cells, rng):
        b_effects = slope * effects + spread * own.standard_normal(len(b))
        yield (
            _world(cells, units, effects, signs * residuals),
            level * reference.counts + _world(reference, units, b_effects, signs * b_residuals),
        )


def _draws(
    deviations: np.ndarray, cells: Cells, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless draws of a world: the units' effects, normal with the sample SD of their observed
    ``deviations`` (none with one unit), and a sign for each image."""
    unit_sd = float(deviations.std(ddof=1)) if len(deviations) > 1 else 0.0
    while True:
        yield (
            rng.normal(0.0, unit_sd, len(deviations)),
            rng.choice([-1.0, 1.0], cells.sums.shape[2]),
        )


def _regression(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``y``'s deviations as ``slope`` times ``x``'s plus an independent part of SD ``spread``,
    from their sample covariances: draws ``slope * e + spread * z`` (e of ``x``'s SD, z standard
    normal) have ``y``'s sample variance and its covariance with ``x``, even where two units make
    the 2 x 2 covariance singular."""
    if len(x) < 2:
        return 0.0, 0.0
    covariance = np.cov(x, y, ddof=1)
    slope = covariance[0, 1] / covariance[0, 0] if covariance[0, 0] > 0 else 0.0
    return float(slope), float(np.sqrt(max(covariance[1, 1] - slope * covariance[0, 1], 0.0)))


def _world(cells: Cells, units: np.ndarray, effects: np.ndarray, images: np.ndarray) -> np.ndarray:
    """A world's sums from its units' ``effects`` and flipped image residuals ``images``.
    Flipped, one run's residuals would move its means apart from the others' and add to the
    training part the drawn effects already hold, so each run keeps only the shift of its means
    that the estimate's weighted runs share."""
    shift = images.sum(axis=2) / cells.counts.sum(axis=2)  # [runs, strata]
    apart = shift - run_weights(cells.run_base) @ shift
    return (effects[units][:, None] - apart)[..., None] * cells.counts + images
