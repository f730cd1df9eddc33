"""Uncertainty for per-query metrics: bootstrap intervals, paired comparisons, seed spread.

Inputs are per-query values (hits, reciprocal ranks, average precisions, rank distances from
:mod:`xlr.eval.metrics`); the statistic is their mean, or with ``strata`` (e.g. query language) the
macro mean of per-stratum means. Queries are the resampling unit: two arms scored on the same
queries are compared by resampling queries jointly, which removes the between-query variance the
arms share. All randomness comes from one seed or ``numpy.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLE_BLOCK = 2**22  # indices drawn at once (32 MiB of int64); bounds bootstrap memory
RELATIVE_TOLERANCE = 1e-9  # permutation statistics this close to the observed one count as equal


@dataclass(frozen=True)
class Interval:
    """An estimate with its percentile-bootstrap interval at ``confidence`` over ``n`` queries."""

    estimate: float
    low: float
    high: float
    n: int
    confidence: float


@dataclass(frozen=True)
class SeedSummary:
    """Mean and sample standard deviation (ddof=1; NaN for one seed) over ``n`` seeds."""

    mean: float
    std: float
    n: int


def _as_values(name: str, values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of per-query values")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return values


def _as_paired(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-query differences ``a - b`` of two arms scored on the same queries."""
    a, b = _as_values("a", a), _as_values("b", b)
    if a.shape != b.shape:
        raise ValueError(f"paired arms need the same queries, got {len(a)} and {len(b)} values")
    return a - b


def _resampled_means(values: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_resamples`` bootstrap resamples (with replacement, same size) of ``values``."""
    per_block = max(1, RESAMPLE_BLOCK // len(values))
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, per_block):
        stop = min(start + per_block, n_resamples)
        picks = rng.integers(0, len(values), size=(stop - start, len(values)))
        means[start:stop] = values[picks].mean(axis=1)
    return means


def _strata_groups(strata: np.ndarray | None, n: int) -> list[np.ndarray]:
    """Positions of each stratum (one group of all positions when ``strata`` is None)."""
    if strata is None:
        return [np.arange(n)]
    strata = np.asarray(strata)
    if strata.shape != (n,):
        raise ValueError(f"strata must label each of the {n} values, got shape {strata.shape}")
    _, labels = np.unique(strata, return_inverse=True)
    return [np.flatnonzero(labels == label) for label in range(labels.max() + 1)]


def bootstrap_mean(
    values: np.ndarray,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    rng: np.random.Generator | int = 0,
    strata: np.ndarray | None = None,
) -> Interval:
    """Percentile-bootstrap interval for the mean of per-query ``values``.

    With ``strata``, the estimate is the macro mean over strata of each stratum's mean, and
    queries are resampled within their stratum (so every resample keeps each stratum's size).
    """
    values = _as_values("values", values)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    rng = np.random.default_rng(rng)
    groups = _strata_groups(strata, len(values))
    estimate = np.mean([values[group].mean() for group in groups])
    means = np.mean([_resampled_means(values[group], n_resamples, rng) for group in groups], 0)
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(float(estimate), float(low), float(high), len(values), confidence)


def paired_bootstrap_difference(
    a: np.ndarray,
    b: np.ndarray,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    rng: np.random.Generator | int = 0,
    strata: np.ndarray | None = None,
) -> Interval:
    """Interval for mean(a) - mean(b) of two arms on the same queries, resampled jointly.

    The mean is linear, so resampling query pairs is resampling the per-query differences.
    """
    return bootstrap_mean(_as_paired(a, b), n_resamples, confidence, rng, strata)


def sign_flip_test(
    a: np.ndarray,
    b: np.ndarray,
    n_permutations: int = 10_000,
    rng: np.random.Generator | int = 0,
) -> float:
    """Two-sided p-value of a paired sign-flip (permutation) test of mean(a) = mean(b).

    Under the null the two arms are exchangeable within each query, so each per-query
    difference is equally likely to have either sign. The p-value counts the observed
    statistic among the permutations (``(1 + hits) / (1 + n_permutations)``), so it is never 0.
    """
    diffs = _as_paired(a, b)
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be positive, got {n_permutations}")
    rng = np.random.default_rng(rng)
    observed = abs(np.ones(len(diffs)) @ diffs)
    threshold = observed - RELATIVE_TOLERANCE * max(observed, np.abs(diffs).sum())
    per_block = max(1, RESAMPLE_BLOCK // len(diffs))
    hits = 0
    for start in range(0, n_permutations, per_block):
        size = min(per_block, n_permutations - start)
        signs = rng.integers(0, 2, size=(size, len(diffs))) * 2.0 - 1.0
        hits += int(np.count_nonzero(np.abs(signs @ diffs) >= threshold))
    return (1 + hits) / (1 + n_permutations)


@dataclass(frozen=True)
class PermutationTest:
    """An observed ``statistic``, its permutation ``p_value`` and the mean of its null
    distribution over ``n_permutations`` relabellings."""

    statistic: float
    p_value: float
    null_mean: float
    n_permutations: int


def column_spread(groups: list[np.ndarray]) -> float:
    """Sum over groups of the variance (ddof=0) of a ``[n, k]`` matrix's ``k`` column means."""
    return float(sum(group.mean(axis=0).var() for group in groups))


def within_row_permutation_test(
    groups: list[np.ndarray],
    n_permutations: int = 1000,
    rng: np.random.Generator | int = 0,
) -> PermutationTest:
    """One-sided permutation test that the columns of each ``[n, k]`` matrix are exchangeable
    within each row, on :func:`column_spread`.

    Under the null the ``k`` column labels of every row are a random order, so each row is
    shuffled on its own and the spread of the column means recomputed; the p-value counts the
    observed spread among the shuffled ones (``(1 + hits) / (1 + n_permutations)``, never 0).
    A spread no larger than chance gives p near 1/2 or above.
    """
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be positive, got {n_permutations}")
    if not groups:
        raise ValueError("no groups to test: give at least one [n, k] matrix")
    for group in groups:
        if group.ndim != 2 or group.shape[0] == 0 or group.shape[1] < 2:
            raise ValueError(
                f"each group is an [n, k] matrix with n >= 1 rows and k >= 2 labels to permute, "
                f"got shape {group.shape}"
            )
        if not np.isfinite(group).all():
            raise ValueError("a group holds NaN or infinite values: every row needs every label")
    rng = np.random.default_rng(rng)
    observed = column_spread(groups)
    null = np.zeros(n_permutations)
    for group in groups:
        per_block = max(1, RESAMPLE_BLOCK // group.size)
        for start in range(0, n_permutations, per_block):
            size = min(per_block, n_permutations - start)
            order = np.argsort(rng.random((size, *group.shape)), axis=2)
            shuffled = np.take_along_axis(np.broadcast_to(group, order.shape), order, axis=2)
            null[start : start + size] += shuffled.mean(axis=1).var(axis=1)
    threshold = observed - RELATIVE_TOLERANCE * max(observed, 1.0)
    hits = int(np.count_nonzero(null >= threshold))
    return PermutationTest(
        observed, (1 + hits) / (1 + n_permutations), float(null.mean()), n_permutations
    )


def seed_summary(values: np.ndarray) -> SeedSummary:
    """Mean and spread of one metric over training seeds (or pretrained bases)."""
    values = _as_values("values", values)
    std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return SeedSummary(float(values.mean()), std, len(values))
