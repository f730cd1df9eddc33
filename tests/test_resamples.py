"""The A/A worlds of a relative claim (:func:`xlr.analysis.resamples.paired_null_worlds`): the
difference's world is the absolute claim's, b's world is exactly what its draws say, and over
many worlds a - (1 + m) b varies as the relative rule's interval estimates it does, which it did
not while b's values were kept fixed."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest
from test_calibration import units_of
from test_stats import BASES, DESIGN

from xlr.analysis import resamples
from xlr.analysis.intervals import unit_cells
from xlr.analysis.stats import Cells, cells_interval, linear_parts

MIN = 0.1  # the rank-distance minimum: the tests of a - (1 +- MIN) b


def relative_study(rng: np.random.Generator, base_sd: float) -> tuple[Cells, Cells]:
    """The differences' cells and b's of a rank-distance-like study: b about 10, its bases apart
    by ``base_sd`` (shared by a, whose ratio to b is 0.9), with image and query noise."""
    base, _, _, image = DESIGN
    shape = base.shape
    b = 10 + rng.normal(0, base_sd, BASES)[base] + rng.normal(0, 3, shape[-1])[image]
    b = b + rng.normal(0, 3, shape)
    a = 0.9 * b + rng.normal(0, 0.1, (BASES, shape[1], 1, 1)) + rng.normal(0, 2, shape)
    return cells_of(units_of(a - b)), cells_of(units_of(b))


def cells_of(units: pd.DataFrame) -> Cells:
    return unit_cells(units, "query_lang")


def test_a_paired_world_is_exactly_what_its_draws_say() -> None:
    cells, reference = relative_study(np.random.default_rng(7), 2.0)
    estimate = linear_parts(cells).estimate
    level = linear_parts(reference).estimate
    units = resamples.training_units(cells)
    d = resamples.unit_deviations(cells, units, estimate)
    b = resamples.unit_deviations(reference, units, level)
    covariance = np.cov(d, b, ddof=1)
    slope = covariance[0, 1] / covariance[0, 0]
    spread = np.sqrt(covariance[1, 1] - slope * covariance[0, 1])
    paired = resamples.paired_null_worlds(cells, estimate, reference, np.random.default_rng(4))
    alone = resamples.null_worlds(cells, estimate, np.random.default_rng(4))
    twin = np.random.default_rng(4)  # the draws, in paired_null_worlds' order
    own = twin.spawn(1)[0]
    for (world, world_b), same in itertools.islice(zip(paired, alone, strict=False), 3):
        np.testing.assert_array_equal(world, same)  # the absolute claim's world, draw for draw
        effects = twin.normal(0.0, d.std(ddof=1), len(d))
        signs = twin.choice([-1.0, 1.0], cells.sums.shape[2])
        b_effects = slope * effects + spread * own.standard_normal(len(b))
        flipped = dataclasses.replace(reference, sums=signs * resamples.image_residuals(reference))
        images = cells_interval(flipped)
        got = cells_interval(dataclasses.replace(reference, sums=world_b))
        assert got.training_variance == pytest.approx(b_effects.var(ddof=1) / len(b), rel=1e-9)
        assert got.estimate == pytest.approx(level + b_effects.mean() + images.estimate, rel=1e-9)
        assert got.se**2 - got.training_variance == pytest.approx(
            images.se**2 - images.training_variance, rel=1e-9
        )


def spread_of(worlds: list[tuple[np.ndarray, np.ndarray]], cells: Cells) -> float:
    """The variance over ``worlds`` of the estimate of a - (1 + MIN) b = d - MIN b."""
    values = [
        linear_parts(dataclasses.replace(cells, sums=d)).estimate
        - MIN * linear_parts(dataclasses.replace(cells, sums=b)).estimate
        for d, b in worlds
    ]
    return float(np.var(values, ddof=1))


@pytest.mark.parametrize("base_sd", [0.0, 3.0])
def test_the_worlds_vary_as_the_relative_rule_estimates(base_sd: float) -> None:
    """The relative rule's interval of d - MIN b holds b's noise and its covariance with d's;
    the worlds' spread of that estimate matches it (2,000 worlds: within 10%). Kept fixed, as
    before, b's values took b's own noise out of the worlds: they varied 0.63 times as much as
    the interval says with bases alike, 0.30 times with bases 30% apart in b's level."""
    cells, reference = relative_study(np.random.default_rng(11), base_sd)
    estimate = linear_parts(cells).estimate
    d, b = linear_parts(cells), linear_parts(reference)
    expected = np.sum((d.training - MIN * b.training) ** 2) + np.sum(
        (d.images - MIN * b.images) ** 2
    )
    rng = np.random.default_rng(5)
    worlds = resamples.paired_null_worlds(cells, estimate, reference, rng)
    assert spread_of(list(itertools.islice(worlds, 2000)), cells) == pytest.approx(
        expected, rel=0.1
    )
    fixed = resamples.null_worlds(cells, estimate, np.random.default_rng(5))
    fixed_spread = spread_of([(w, reference.sums) for w in itertools.islice(fixed, 2000)], cells)
    assert fixed_spread < 0.7 * expected


def test_two_units_draw_b_in_proportion() -> None:
    """Two units' deviations are +-x and +-y: their covariance is singular, and b's effects are
    the difference's times y / x, with no independent part."""
    slope, spread = resamples._regression(np.array([0.2, -0.2]), np.array([-1.0, 1.0]))
    assert (slope, spread) == (pytest.approx(-5.0), pytest.approx(0.0, abs=1e-6))
    assert resamples._regression(np.array([0.3]), np.array([2.0])) == (0.0, 0.0)
    assert resamples._regression(np.zeros(3), np.array([1.0, 0.0, -1.0])) == (0.0, 1.0)


def test_b_must_hold_the_differences_design() -> None:
    cells, reference = relative_study(np.random.default_rng(1), 1.0)
    fewer = dataclasses.replace(reference, sums=reference.sums[:, :, :-1])
    other_bases = dataclasses.replace(reference, run_base=reference.run_base[::-1].copy())
    for wrong in (fewer, other_bases):
        with pytest.raises(ValueError, match="same runs, strata and images"):
            next(resamples.paired_null_worlds(cells, 0.0, wrong, np.random.default_rng(0)))
