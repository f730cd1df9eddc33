"""Calibration of the verdicts: on simulated studies with known answers the A/A rate stays at or
below 5% (a real effect included), a planted effect of three minimums is found, the MDE is the
noncentral t test's with one variance part and is detected with its power in simulated studies,
designs that cannot be resampled say so, and bad inputs are errors."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import dataclasses
import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats
from test_claims import HELDOUT, SEEN, fake_ranks, measures_of
from test_stats import BASES, DESIGN, MIN_EFFECT, interval, simulated_difference

from xlr.analysis import calibration, resamples
from xlr.analysis.calibration import (
    MAX_AA_RATE,
    RESAMPLES,
    calibrate_claims,
    calibrate_comparison,
    check_calibration,
    minimum_detectable_effect,
    nonzero_rate_limit,
)
from xlr.analysis.check_figures import calibration_figure
from xlr.analysis.claims import default_claims, evaluate_claims
from xlr.analysis.intervals import unit_cells
from xlr.analysis.stats import Cells, Interval, cells_interval, crossed_mean_interval
from xlr.arms import Arm, HeadlineArms

# the A/A rate may exceed 5% by binomial noise over 200 resamples: two standard errors
NOISE = 2 * np.sqrt(MAX_AA_RATE * (1 - MAX_AA_RATE) / 200)


def units_of(diffs: np.ndarray) -> pd.DataFrame:
    """Per-query differences ``[base, seed, lang, image]`` as a paired-units table."""
    base, seed, lang, image = (axis.ravel() for axis in DESIGN)
    return pd.DataFrame(
        {"benchmark": "synthetic", "base_seed": base, "seed": seed, "query_image_id": image,
         "query_lang": lang, "value": diffs.ravel()}
    )  # fmt: skip


@pytest.mark.parametrize("effect", [0.0, 10 * MIN_EFFECT])
def test_the_aa_rate_stays_at_or_below_five_percent(effect: float) -> None:
    """No effect, and a real effect of ten minimums, which the resamples must remove: a plain
    permutation of whole runs would keep it in the runs it does not swap."""
    units = units_of(simulated_difference(np.random.default_rng(0), effect))
    result = calibrate_comparison(units, +1, MIN_EFFECT, resamples=200, rng=1)
    assert result.calibrates == "bases and images" and result.resamples == 200
    assert result.aa_rate <= MAX_AA_RATE + NOISE
    assert result.aa_nonzero_rate <= MAX_AA_RATE + NOISE  # zero excluded at the nominal rate
    assert result.estimate == pytest.approx(effect, abs=0.02)


def test_a_planted_effect_of_three_minimums_is_found() -> None:
    units = units_of(simulated_difference(np.random.default_rng(2), 0.0))
    result = calibrate_comparison(units, +1, MIN_EFFECT, resamples=200, rng=3, plant=3 * MIN_EFFECT)
    assert result.power >= 0.95 and result.supported_at_min >= 0.6
    at_min = calibrate_comparison(units, +1, MIN_EFFECT, resamples=200, rng=3)
    assert at_min.power < result.power
    # a verdict needs the interval beyond the minimum: at exactly the minimum it is rare
    assert at_min.supported_at_min <= 0.1


def test_lower_is_better_plants_below() -> None:
    """For rank distance (direction -1) the plant lowers arm a, and power counts intervals
    below zero."""
    units = units_of(simulated_difference(np.random.default_rng(4), 0.0))
    up = calibrate_comparison(units, +1, MIN_EFFECT, resamples=100, rng=5, plant=0.05)
    flipped = units.assign(value=-units["value"])
    down = calibrate_comparison(flipped, -1, MIN_EFFECT, resamples=100, rng=5, plant=0.05)
    assert up.power == down.power >= 0.95 and up.aa_rate == down.aa_rate


def relative_units(rng: np.random.Generator, ratio: float) -> pd.DataFrame:
    """Paired units of a rank-distance-like claim: b's values about 10 (bases differ by 0.5), a's
    ``ratio`` times them with noise of its own; ``value`` a - b and ``value_b``."""
    base, _, _, image = DESIGN
    shape = base.shape
    b = 10 + rng.normal(0, 0.5, BASES)[base] + rng.normal(0, 3, shape[-1])[image]
    b = b + rng.normal(0, 3, shape)
    a = ratio * b + rng.normal(0, 0.1, (BASES, shape[1], 1, 1)) + rng.normal(0, 2, shape)
    return units_of(a - b).assign(value_b=b.ravel())


def test_a_relative_claim_is_calibrated_on_its_own_rule() -> None:
    """Rank distance: the A/A worlds' verdicts are the relative rule's (the tests of a - (1 +-
    min) b); the plant is the minimum times b's level, so power and MDE are those of an absolute
    claim of that size, given in the claim's units; a plant of three minimums is supported, one
    of exactly the minimum rarely; a b at or below zero cannot be judged."""
    minimum = 0.1
    units = relative_units(np.random.default_rng(21), 0.85)
    aa = calibrate_comparison(units, -1, minimum, resamples=200, rng=1, relative=True)
    assert aa.aa_rate <= MAX_AA_RATE + NOISE and aa.aa_nonzero_rate <= MAX_AA_RATE + NOISE
    level = cells_interval(unit_cells(units.assign(value=units["value_b"]), "query_lang"))
    absolute = calibrate_comparison(units, -1, minimum * level.estimate, resamples=200, rng=1)
    assert aa.estimate == pytest.approx(absolute.estimate / level.estimate)
    assert aa.mde == pytest.approx(absolute.mde / level.estimate)
    assert (aa.aa_nonzero_rate, aa.power) == (absolute.aa_nonzero_rate, absolute.power)
    found = calibrate_comparison(units, -1, minimum, resamples=200, rng=3, relative=True,
                                 plant=3 * minimum)  # fmt: skip
    assert found.power >= 0.95 and found.supported_at_min >= 0.6
    at_min = calibrate_comparison(units, -1, minimum, resamples=200, rng=3, relative=True)
    assert at_min.supported_at_min <= 0.1 < found.supported_at_min
    with pytest.raises(ValueError, match="value_b"):
        calibrate_comparison(units.drop(columns="value_b"), -1, minimum, relative=True)
    negative = units.assign(value_b=-units["value_b"])
    unjudged = calibrate_comparison(negative, -1, minimum, relative=True)
    assert unjudged.calibrates == "not applicable" and np.isnan(unjudged.aa_rate)


def noncentral_t_mde(se: float, df: float, confidence: float, power: float = 0.8) -> float:
    """The effect at which the one-sided t test at ``confidence``'s two-sided quantile rejects
    with probability ``power``: scipy's noncentral t, an independent computation."""
    critical = stats.t.isf((1 - confidence) / 2, df)
    return se * optimize.brentq(lambda d: stats.nct.sf(critical, df, d) - power, 0, 1e3)


def test_mde_with_one_variance_part_is_the_noncentral_t_tests() -> None:
    # one run of 5 images: the image part alone, 4 df
    values = np.array([0.1, 0.4, -0.2, 0.3, 0.5])
    for confidence in (0.95, 0.99):
        one_run = crossed_mean_interval(
            values, np.zeros(5), np.zeros(5), np.arange(5), confidence=confidence
        )
        expected = noncentral_t_mde(one_run.se, 4, confidence)
        assert minimum_detectable_effect(one_run) == pytest.approx(expected, rel=1e-4)
    # the training part alone, 2 df (3 bases), at a family's level: the plug-in effect (the
    # half-width plus the 0.8 quantile of the error) is 22.9 se, the noncentral t's 27.8 se
    training = dataclasses.replace(
        one_run, training_variance=one_run.se**2, training_df=2.0, confidence=1 - 0.05 / 24
    )
    expected = noncentral_t_mde(training.se, 2, training.confidence)
    assert minimum_detectable_effect(training) == pytest.approx(expected, rel=1e-4)
    assert expected / training.se == pytest.approx(27.79, abs=0.01)
    assert minimum_detectable_effect(training, power=0.9) > expected  # more power, larger effect


def test_the_mde_is_detected_with_its_power_in_simulated_studies() -> None:
    """Studies simulated with a true effect of the design's MDE, computed from the true variance
    parts (their estimators' means over null studies: both are unbiased), have their interval
    exclude zero in about 80% of them; at the plug-in effect, which leaves the variance
    estimates' own noise out, in about 71% (training 70% of the variance, 2 df)."""
    confidence = 1 - 0.05 / 8
    rng = np.random.default_rng(11)
    null = [interval(simulated_difference(rng, 0.0), confidence) for _ in range(200)]
    training = float(np.mean([one.training_variance for one in null]))
    total = float(np.mean([one.se**2 for one in null]))
    true = dataclasses.replace(null[0], se=np.sqrt(total), training_variance=training)
    assert 0.6 < training / total < 0.8  # the training part dominates, as the docstring says

    def detected(effect: float) -> float:
        studies = (interval(simulated_difference(rng, effect), confidence) for _ in range(400))
        return float(np.mean([study.low > 0 for study in studies]))

    assert detected(minimum_detectable_effect(true)) == pytest.approx(0.8, abs=0.05)
    assert detected(true.half_width(confidence) + true.half_width(0.6)) < 0.75


def test_the_mde_with_two_variance_parts_against_a_monte_carlo() -> None:
    """The model the MDE integrates on a grid, drawn instead: 400,000 studies whose estimate is
    normal around the MDE and whose two variance parts are chi-square draws exclude zero with
    probability 0.8 (binomial SE 0.0006)."""
    base = crossed_mean_interval(
        np.array([0.1, 0.4, -0.2, 0.3, 0.5]), np.zeros(5), np.zeros(5), np.arange(5)
    )
    parts = dataclasses.replace(
        base, se=1.0, training_variance=0.6, training_df=2.0, n_images=30, confidence=1 - 0.05 / 8
    )
    mde = minimum_detectable_effect(parts)
    rng = np.random.default_rng(12)
    n = 400_000
    training = 0.6 * rng.chisquare(2, n) / 2
    images = 0.4 * rng.chisquare(29, n) / 29
    tail = 0.05 / 8 / 2
    t_training, t_images = stats.t.isf(tail, 2), stats.t.isf(tail, 29)
    half = np.hypot(t_training * np.sqrt(training), t_images * np.sqrt(images))
    assert np.mean(rng.normal(mde, 1.0, n) > half) == pytest.approx(0.8, abs=0.003)


def test_an_interval_with_nothing_varying_detects_any_effect() -> None:
    values = np.full(5, 0.3)
    flat = crossed_mean_interval(values, np.zeros(5), np.zeros(5), np.arange(5))
    assert flat.se == 0 and minimum_detectable_effect(flat) == 0.0


def test_designs_say_what_they_can_calibrate() -> None:
    diffs = simulated_difference(np.random.default_rng(6), 0.0)
    units = units_of(diffs)
    one_base = calibrate_comparison(units[units["base_seed"] == 0], +1, MIN_EFFECT, resamples=200)
    assert one_base.calibrates == "seeds and images" and one_base.training_df == 1
    assert one_base.aa_nonzero_rate <= MAX_AA_RATE + NOISE  # two units' effects drawn: t_1
    one_run = units[(units["base_seed"] == 0) & (units["seed"] == 0)]
    alone = calibrate_comparison(one_run, +1, MIN_EFFECT, resamples=50)
    assert alone.calibrates == "images only" and alone.n_runs == 1
    assert alone.aa_rate <= MAX_AA_RATE + NOISE
    few = one_run[one_run["query_image_id"].isin(one_run["query_image_id"].unique()[:19])]
    tiny = calibrate_comparison(few, +1, MIN_EFFECT, resamples=5)
    assert tiny.calibrates == "not applicable" and tiny.n_images == 19  # module doc
    enough = one_run[one_run["query_image_id"].isin(one_run["query_image_id"].unique()[:20])]
    at_twenty = calibrate_comparison(enough, +1, MIN_EFFECT, resamples=5)
    assert at_twenty.calibrates == "images only" and np.isfinite(at_twenty.aa_rate)
    binary = pd.DataFrame({"benchmark": "b", "base_seed": 0, "seed": 0, "query_lang": "en",
                           "query_image_id": [0, 1], "value": [1.0, -1.0]})  # fmt: skip
    assert np.isnan(calibrate_comparison(binary, +1, MIN_EFFECT, resamples=50).aa_rate)
    third = one_run.assign(base_seed=0, seed=2)  # a third seed of base 0
    three = pd.concat([units[units["base_seed"] == 0], third])
    seeds = calibrate_comparison(three, +1, MIN_EFFECT, resamples=5)
    assert seeds.calibrates == "seeds and images" and seeds.n_runs == 3


def test_calibration_reads_the_claims_interval() -> None:
    """calibrate_claims sees the claims table's effect, level and minimum: the verdict machinery
    calibrated is the one the claims use."""
    quality = {"zeroshot": 0.3, "mono-full": 0.45, "cross-full": 0.5, "hybrid-a0.5-full": 0.55}
    ranks = fake_ranks(quality, bases=(0, 1, 2), n_images=30)
    claims = default_claims(HeadlineArms(Arm("hybrid", 0.5, "full"), None))
    table = calibrate_claims(measures_of(ranks), claims, SEEN, HELDOUT, resamples=50, seed=0)
    expected = evaluate_claims(measures_of(ranks), claims, SEEN, HELDOUT).set_index("key")
    ran = expected[expected["p_value"].notna()]
    assert list(table["key"]) == list(ran.index)  # hybrid>multi:ml did not run
    by_key = table.set_index("key")
    np.testing.assert_allclose(by_key["estimate"], ran["effect"])
    np.testing.assert_allclose(by_key["min_effect"], ran["min_effect"])
    np.testing.assert_allclose(by_key["interval_confidence"], 1 - 0.05 / len(ran))
    assert set(by_key["calibrates"]) == {"bases and images"}
    assert (by_key["aa_rate"] <= MAX_AA_RATE).all()
    assert "at most" in check_calibration(table)
    again = calibrate_claims(measures_of(ranks), claims, SEEN, HELDOUT, resamples=50, seed=0)
    pd.testing.assert_frame_equal(table, again)  # one seed, the same resamples
    nothing = calibrate_claims(measures_of(ranks), [], SEEN, HELDOUT, resamples=5)
    assert nothing.empty and "not applicable" in check_calibration(nothing)
    fig = calibration_figure(table)
    ax = fig.axes[0]
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    assert f"on {table['benchmark'].iloc[0]}:" in fig.get_suptitle()
    with pytest.raises(ValueError, match="mixes several values of .'benchmark'"):
        calibration_figure(pd.concat([table, table.assign(benchmark="other")]))  # one at a time


@pytest.mark.parametrize("width", [1 / 3, 0.0])
def test_the_check_fails_an_interval_too_narrow_to_get_verdicts(
    width: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interval a third of the right width, or of zero width, gets almost no verdict under
    A/A (a verdict needs the whole interval beyond the minimum effect), so the rate of verdicts
    cannot see it; the rate of intervals excluding zero can, and the check names it. The honest
    interval passes on the same data and resamples."""
    units = units_of(simulated_difference(np.random.default_rng(0), 0.0))
    honest = calibrate_comparison(units, +1, MIN_EFFECT, resamples=200, rng=1)
    row = {"key": "k", **dataclasses.asdict(honest)}
    assert honest.aa_nonzero_rate < honest.aa_nonzero_limit
    assert "below their limits" in check_calibration(pd.DataFrame([row]))
    wide = calibration.cells_interval

    def narrowed(cells: Cells, confidence: float = 0.95) -> Interval:
        result = wide(cells, confidence)
        half = width * (result.high - result.low) / 2
        return dataclasses.replace(
            result,
            low=result.estimate - half,
            high=result.estimate + half,
            se=width * result.se,
            training_variance=width**2 * result.training_variance,
        )

    monkeypatch.setattr(calibration, "cells_interval", narrowed)
    narrow = calibrate_comparison(units, +1, MIN_EFFECT, resamples=200, rng=1)
    if width:  # the verdicts' rate alone passes a third-width interval; a zero-width one's 6.5%
        assert narrow.aa_rate <= MAX_AA_RATE
    assert narrow.aa_nonzero_limit == honest.aa_nonzero_limit
    with pytest.raises(
        AssertionError, match=r"excluded zero in more resamples.*k: \d+\.\d%, limit"
    ):
        check_calibration(pd.DataFrame([{"key": "k", **dataclasses.asdict(narrow)}]))


def test_the_nonzero_limit_known_answers() -> None:
    """Binomial tails by hand: at 5% over 32 replicates P(X >= 7) = 0.00087 < 0.001 <= P(X >= 6)
    = 0.0046, so the limit is 7/32; at 0.625% over 200, P(X >= 7) = 0.0003 and P(X >= 6) =
    0.0018: 7/200; at 5% over 200, P(X >= 22) = 0.0005 and P(X >= 21) = 0.0012: 22/200; at
    0.05/24 over 200, P(X >= 4) = 0.00088 and P(X >= 3) = 0.0088: 4/200. The README quotes the
    limits at notebook 05's 200 resamples: 11% at 95%, 2.0% at 1 - 0.05/24."""
    assert nonzero_rate_limit(0.95, 32) == pytest.approx(7 / 32)
    assert nonzero_rate_limit(1 - 0.05 / 8, 200) == pytest.approx(7 / 200)
    assert RESAMPLES == 200  # calibrate_claims' default, which notebook 05 uses
    assert nonzero_rate_limit(0.95, RESAMPLES) == pytest.approx(22 / 200)
    assert nonzero_rate_limit(1 - 0.05 / 24, RESAMPLES) == pytest.approx(4 / 200)
    with pytest.raises(ValueError, match="resamples"):
        nonzero_rate_limit(0.95, 0)


def test_the_check_fails_loudly_and_says_when_it_cannot_run() -> None:
    table = pd.DataFrame(
        {"key": ["a", "b"], "aa_rate": [0.02, 0.2], "aa_nonzero_rate": [0.03, 0.05],
         "aa_nonzero_limit": 0.2, "calibrates": "bases and images", "resamples": 200}
    )  # fmt: skip
    with pytest.raises(AssertionError, match=r"b: 20\.0%.*too narrow") as error:
        check_calibration(table)
    assert "excluded zero" not in str(error.value)  # only the verdicts failed
    both = table.assign(aa_nonzero_rate=[0.3, 0.05])
    with pytest.raises(AssertionError, match=r"verdict.*b: 20\.0%.*and these.*a: 30\.0%, limit"):
        check_calibration(both)
    none = table.assign(aa_rate=np.nan, calibrates="not applicable")
    assert "not applicable" in check_calibration(none)
    with pytest.raises(ValueError, match="lacks columns"):
        check_calibration(table.drop(columns="aa_rate"))


def test_bad_inputs_are_errors() -> None:
    units = units_of(simulated_difference(np.random.default_rng(7), 0.0))
    with pytest.raises(ValueError, match="direction"):
        calibrate_comparison(units, 0, MIN_EFFECT)
    with pytest.raises(ValueError, match="minimum effect must be positive"):
        calibrate_comparison(units, +1, 0.0)
    with pytest.raises(ValueError, match="planted effect must be positive"):
        calibrate_comparison(units, +1, MIN_EFFECT, plant=-1.0)
    with pytest.raises(ValueError, match="resamples"):
        calibrate_comparison(units, +1, MIN_EFFECT, resamples=0)
    with pytest.raises(ValueError, match="query_lang"):
        calibrate_comparison(units.drop(columns="query_lang"), +1, MIN_EFFECT)
    three_images = crossed_mean_interval(
        np.array([0.1, 0.3, 0.2]), np.zeros(3), np.zeros(3), np.arange(3)
    )
    for power in (1.0, 0.5):  # at or below 1/2 the power quantile is no longer an error's
        with pytest.raises(ValueError, match="power must lie strictly between 0.5 and 1"):
            minimum_detectable_effect(three_images, power=power)


@pytest.mark.parametrize(
    "design",
    ["3 bases x 2 seeds", "a seed fewer in one base", "1 x 3", "1 x 2", "a run lacking queries"],
)
def test_a_resampled_world_is_exactly_what_its_draws_say(design: str) -> None:
    """Known answer of :func:`null_worlds`: the units' effects are drawn with the observed
    between-unit variance (so a resample's training variance averages the observed one), and each
    world is exactly what its draws say: the interval's training part is their sample variance
    over the units, its estimate their mean plus the flipped images' shift, and its image part
    the flipped images' own, which add nothing between runs, where runs lack queries too."""
    units = units_of(simulated_difference(np.random.default_rng(3), 0.0))
    if design == "a seed fewer in one base":  # unequal run weights in the estimate
        units = units[(units["base_seed"] != 1) | (units["seed"] == 0)]
    elif design.startswith("1 x"):
        units = units[(units["seed"] == 0) & (units["base_seed"] < int(design[-1]))]
        units = units.assign(seed=units["base_seed"], base_seed=0)
    elif design == "a run lacking queries":  # each run's whole image residual flips
        units = units.drop(units[(units["base_seed"] == 0) & (units["seed"] == 0)].index[::3])
    cells = unit_cells(units, "query_lang")
    observed = cells_interval(cells)
    codes = resamples.training_units(cells)
    n_units = int(codes.max()) + 1
    unit_sd = resamples.unit_deviations(cells, codes, observed.estimate).std(ddof=1)
    residuals = resamples.image_residuals(cells)
    assert unit_sd**2 / n_units == pytest.approx(observed.training_variance, rel=1e-9)
    worlds = resamples.null_worlds(cells, observed.estimate, np.random.default_rng(4))
    twin = np.random.default_rng(4)  # the same draws, in null_worlds' order
    for world in itertools.islice(worlds, 3):
        effects = twin.normal(0.0, unit_sd, n_units)
        flipped = twin.choice([-1.0, 1.0], cells.sums.shape[2]) * residuals
        images = cells_interval(dataclasses.replace(cells, sums=flipped))
        resampled = cells_interval(dataclasses.replace(cells, sums=world))
        assert resampled.training_df == n_units - 1
        expected = effects.var(ddof=1) / n_units
        assert resampled.training_variance == pytest.approx(expected, rel=1e-9)
        estimate = effects.mean() + images.estimate
        assert resampled.estimate == pytest.approx(estimate, rel=1e-9, abs=1e-15)
        image_variance = images.se**2 - images.training_variance
        assert resampled.se**2 - expected == pytest.approx(image_variance, rel=1e-9)


def test_the_resamples_draw_that_world(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop itself: its A/A intervals' training variance averages the observed one (within
    0.15 of it: a mean of 400 chi^2_2 / 2 draws has a standard error of 0.05)."""
    units = units_of(simulated_difference(np.random.default_rng(3), 0.0))
    observed = cells_interval(unit_cells(units, "query_lang"))
    seen: list[float] = []

    def recorded(cells: Cells, confidence: float = 0.95) -> Interval:
        result = cells_interval(cells, confidence)
        seen.append(result.training_variance)
        return result

    monkeypatch.setattr(calibration, "cells_interval", recorded)
    calibrate_comparison(units, +1, MIN_EFFECT, resamples=400, rng=5)
    aa = seen[1::2]  # the observed interval first, then each resample's A/A and planted one
    assert len(aa) == 400
    assert np.mean(aa) == pytest.approx(observed.training_variance, rel=0.15)


@pytest.mark.parametrize("confidence", [0.95, 1 - 0.05 / 8])
def test_the_check_fails_an_interval_that_overstates_its_training_degrees_of_freedom(
    confidence: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where training noise dominates (base SD 0.03 added: 93% of the variance here), an
    interval that takes a normal quantile for its training part, as if its three bases were
    many, excludes a true zero far more often than its level: the units' effects are drawn
    normal, so their t ratio has t_2's tails (P(|t_2| > 1.96) = 0.19; at 2.73, the claims'
    level, 0.11). Random signs on three units could not show it: their t ratio never exceeds 4.
    The honest interval passes on the same data and resamples."""
    rng = np.random.default_rng(1)
    diffs = simulated_difference(rng, 0.0) + rng.normal(0, 0.03, (BASES, 1, 1, 1))
    units = units_of(diffs)
    honest = calibrate_comparison(units, +1, MIN_EFFECT, confidence, resamples=200, rng=1)
    assert honest.training_share > 0.9
    assert honest.aa_nonzero_rate < honest.aa_nonzero_limit
    wide = calibration.cells_interval

    def normal_training(cells: Cells, confidence: float = 0.95) -> Interval:
        result = wide(cells, confidence)
        tail = (1 - confidence) / 2
        training, _, images, images_df = result.variance_parts()
        half = np.hypot(
            stats.norm.isf(tail) * np.sqrt(training), stats.t.isf(tail, images_df) * np.sqrt(images)
        )
        return dataclasses.replace(result, low=result.estimate - half, high=result.estimate + half)

    monkeypatch.setattr(calibration, "cells_interval", normal_training)
    overstated = calibrate_comparison(units, +1, MIN_EFFECT, confidence, resamples=200, rng=1)
    assert overstated.aa_nonzero_rate >= overstated.aa_nonzero_limit
    with pytest.raises(AssertionError, match="excluded zero in more resamples"):
        check_calibration(pd.DataFrame([{"key": "k", **dataclasses.asdict(overstated)}]))


def test_the_gate_benchmark_runs() -> None:
    """``benchmarks/bench_calibration.py``, whose figures the module doc quotes, runs end to end
    on a tiny grid and prints every rule and the power at the MDE."""
    command = [sys.executable, "benchmarks/bench_calibration.py", "--studies", "1"]
    done = subprocess.run(
        [*command, "--resamples", "5", "--images", "30"],
        cwd=Path(__file__).parent.parent, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("A/A nonzero rate limit") == 2  # 95% and the family's level
    for printed in ("honest", "third", "normal_training", "satterthwaite", "power at the MDE"):
        assert printed in done.stdout


@pytest.mark.parametrize(
    ("script", "args", "rows", "rates", "printed"),
    [
        ("bench_intervals.py", ["--images", "20", "--image-effects", "skewed", "--image-sd", "0.4"],
         10, 4, "skewed image effects of SD 0.4"),
        ("bench_relative.py", ["--images", "30", "--ratio", "0.7"], 8, 6,
         "claims', Fieller, plug-in"),
    ],
)  # fmt: skip
def test_the_interval_benchmarks_run(
    script: str, args: list[str], rows: int, rates: int, printed: str
) -> None:
    """The benchmarks whose figures the README quotes for few skewed images and for relative
    claims run end to end on two studies a row, and print every row, each of its rates."""
    done = subprocess.run(
        [sys.executable, f"benchmarks/{script}", "--studies", "2", *args],
        cwd=Path(__file__).parent.parent, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sum(line.count("%") == rates for line in done.stdout.splitlines()) == rows
    assert printed in done.stdout


@pytest.mark.parametrize(
    ("shape", "law"),
    [
        ("normal", stats.norm(0, 0.03)),
        ("t3", stats.t(3, scale=0.03 / np.sqrt(3))),
        ("skewed", stats.expon(loc=-0.03, scale=0.03)),
    ],
)
def test_the_intervals_benchmark_draws_training_effects_of_one_sd(
    shape: str, law: stats.rv_continuous, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``benchmarks/bench_intervals.py --training``: each shape draws its law (Kolmogorov-Smirnov),
    every law has mean 0 and the given SD, so the README's rows differ in shape only, and only
    the skewed one is skewed (by quantiles: sample moments of t3 converge too slowly to test).
    The normal one keeps the generator's stream, so earlier figures stay reproducible."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent.parent / "benchmarks"))
    from bench_intervals import training_effects

    drawn = training_effects(np.random.default_rng(0), 0.03, 100_000, shape)
    assert stats.kstest(drawn, law.cdf).pvalue > 1e-4
    assert law.mean() == pytest.approx(0.0, abs=1e-12) and law.std() == pytest.approx(0.03)
    q10, q50, q90 = np.quantile(drawn, [0.1, 0.5, 0.9])
    assert ((q90 + q10 - 2 * q50) / (q90 - q10) > 0.3) == (shape == "skewed")  # exponential 0.47
    plain = np.random.default_rng(0).normal(0, 0.03, 5)
    assert np.array_equal(training_effects(np.random.default_rng(0), 0.03, 5), plain)
    with pytest.raises(ValueError, match="unknown shape"):
        training_effects(np.random.default_rng(0), 0.03, 3, "uniform")
