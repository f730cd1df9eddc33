"""Bootstrap intervals, paired comparisons and seed summaries on simulated known cases."""

import time

import numpy as np
import pytest

from xlr.analysis.stats import (
    Interval,
    bootstrap_mean,
    paired_bootstrap_difference,
    seed_summary,
    sign_flip_test,
)

N_EXPERIMENTS = 200
# Three binomial standard errors of an observed 95% coverage over 200 experiments.
COVERAGE_TOLERANCE = 3 * np.sqrt(0.95 * 0.05 / N_EXPERIMENTS)


def test_bootstrap_covers_true_mean_at_nominal_rate():
    """Per-query hits with success rate 0.3: the interval should hold 0.3 about 95% of the time."""
    rng = np.random.default_rng(0)
    covered = []
    for _ in range(N_EXPERIMENTS):
        hits = (rng.random(150) < 0.3).astype(float)
        interval = bootstrap_mean(hits, n_resamples=1000, rng=rng)
        covered.append(interval.low <= 0.3 <= interval.high)
    assert abs(np.mean(covered) - 0.95) <= COVERAGE_TOLERANCE


def test_paired_difference_covers_true_effect_at_nominal_rate():
    """Two arms sharing a per-query difficulty, arm a better by 0.1 on average."""
    rng = np.random.default_rng(1)
    covered = []
    for _ in range(N_EXPERIMENTS):
        difficulty = rng.random(120)
        a = difficulty + 0.1 + rng.normal(0, 0.2, 120)
        b = difficulty + rng.normal(0, 0.2, 120)
        interval = paired_bootstrap_difference(a, b, n_resamples=1000, rng=rng)
        covered.append(interval.low <= 0.1 <= interval.high)
    assert abs(np.mean(covered) - 0.95) <= COVERAGE_TOLERANCE


def test_pairing_removes_shared_query_variance():
    rng = np.random.default_rng(2)
    difficulty = rng.random(500)
    a, b = difficulty + rng.normal(0, 0.05, 500), difficulty + rng.normal(0, 0.05, 500)
    paired = paired_bootstrap_difference(a, b)
    unpaired_width = (bootstrap_mean(a).high - bootstrap_mean(a).low) * np.sqrt(2)
    assert paired.high - paired.low < unpaired_width / 3


def test_interval_fields_and_reproducibility():
    values = np.random.default_rng(3).random(50)
    first, again = bootstrap_mean(values, rng=7), bootstrap_mean(values, rng=7)
    assert first == again
    assert isinstance(first, Interval) and first.n == 50 and first.confidence == 0.95
    assert first.estimate == pytest.approx(values.mean())
    assert first.low < first.estimate < first.high
    narrow = bootstrap_mean(values, confidence=0.5, rng=7)
    assert first.low < narrow.low < narrow.high < first.high
    constant = bootstrap_mean(np.full(10, 0.25))
    assert (constant.low, constant.estimate, constant.high) == (0.25, 0.25, 0.25)


def test_strata_give_macro_mean_and_resample_within_strata():
    values = np.array([1.0, 1.0, 1.0, 0.0])  # stratum "en" all ones, stratum "sw" one zero
    strata = np.array(["en", "en", "en", "sw"])
    interval = bootstrap_mean(values, strata=strata)
    assert interval.estimate == pytest.approx(0.5)  # macro, not the micro mean 0.75
    assert interval.low == interval.high == pytest.approx(0.5)  # resamples keep strata intact
    with pytest.raises(ValueError, match="strata must label"):
        bootstrap_mean(values, strata=strata[:3])


def test_bootstrap_is_vectorised():
    values = np.random.default_rng(4).random(10_000)
    start = time.perf_counter()
    bootstrap_mean(values, n_resamples=1000)
    assert time.perf_counter() - start < 3.0


def test_sign_flip_p_value_matches_exact_enumeration():
    """Differences 1, 2, 3: of the 8 sign patterns only +++ and --- reach |sum| = 6."""
    p = sign_flip_test(np.array([1.0, 2.0, 3.0]), np.zeros(3), n_permutations=20_000, rng=5)
    assert p == pytest.approx(0.25, abs=0.015)


def test_sign_flip_extremes():
    same = np.random.default_rng(6).random(30)
    assert sign_flip_test(same, same) == 1.0
    rng = np.random.default_rng(7)
    b = rng.random(200)
    assert sign_flip_test(b + 0.5, b, n_permutations=999) == pytest.approx(1 / 1000)


def test_sign_flip_rejects_at_nominal_rate_under_the_null():
    rng = np.random.default_rng(8)
    rejections = []
    for _ in range(N_EXPERIMENTS):
        a, b = rng.normal(size=40), rng.normal(size=40)
        rejections.append(sign_flip_test(a, b, n_permutations=500, rng=rng) <= 0.05)
    assert abs(np.mean(rejections) - 0.05) <= 3 * np.sqrt(0.05 * 0.95 / N_EXPERIMENTS)


def test_seed_summary():
    summary = seed_summary(np.array([1.0, 2.0, 3.0]))
    assert (summary.mean, summary.std, summary.n) == (2.0, 1.0, 3)
    assert np.isnan(seed_summary(np.array([0.4])).std)


def test_bad_inputs_are_errors():
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_mean(np.array([]))
    with pytest.raises(ValueError, match="non-empty"):
        seed_summary(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_mean(np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="same queries"):
        paired_bootstrap_difference(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="same queries"):
        sign_flip_test(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_mean(np.zeros(3), confidence=1.0)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_mean(np.zeros(3), n_resamples=0)
    with pytest.raises(ValueError, match="n_permutations"):
        sign_flip_test(np.zeros(3), np.ones(3), n_permutations=0)
