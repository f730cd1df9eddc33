"""The interval of a ratio of two arms' means on one design, shown for claims whose minimum
effect is relative (rank distance: 10% of arm b's level).

A relative minimum read as ``m`` times arm b's *estimated* level treats that level as known, but
it is measured on the same bases, seeds and images as the difference, with noise of its own that
no interval then holds. A ratio needs no such plug-in: where b's level is positive (rank
distance's is), ``a / b < 1 - m`` says the same as ``a - (1 - m) b < 0``, a linear statistic of
the same per-query values, whose interval (:func:`xlr.analysis.stats.cells_interval`) carries
b's noise and its covariance with a's; the claims judge by those tests at ``1 +- m``
(:func:`xlr.analysis.verdicts.relative_verdict`), and show this interval.

Fieller's interval (1954, JRSS B 16) is every ratio ``r`` that the test of ``a - r b = 0`` does
not reject: ``(A - r B)^2 <= t_run^2 v_run(r) + t_image^2 v_image(r)`` in Banerjee's
half-width (module doc of :mod:`xlr.analysis.stats`), where ``A``, ``B`` are the two estimates
and each variance part of ``a - r b`` is a quadratic in ``r`` (the estimate is linear in the
sums, :class:`xlr.analysis.stats.LinearParts`), while its degrees of freedom do not depend on
``r``. So the set is where a quadratic is at most zero: a bounded interval around ``A / B`` when
its leading coefficient, ``B^2`` minus b's own squared half-width, is positive (b's level is told
from zero at this level), else two rays or the whole line, returned as ``(-inf, inf)``.

Where it is bounded it lies beyond ``1 - m`` exactly when the test of ``a - (1 - m) b`` rejects
on that side, so a verdict read off it against ``1 +- m`` is the claims' (tested). Where it is
not, the tests at ``1 +- m`` still judge (b's positive level makes each a bound on the ratio),
and keep much of the power the interval loses: with three bases whose levels of b have an SD of
20% of it, at 1 - 0.05/8, a true ratio of 0.7 was supported in 70.9% of 1,000 simulated studies
by the tests and 32.8% by this interval (``benchmarks/bench_relative.py --ratio 0.7``, README).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xlr.analysis.stats import Cells, LinearParts, linear_parts, t_quantile


@dataclass(frozen=True)
class RatioInterval:
    """``estimate`` = A / B with its Fieller interval ``[low, high]`` at ``confidence``
    (``-inf, inf`` where b's level is not told from zero at that level)."""

    estimate: float
    low: float
    high: float
    confidence: float


def _quantiles(parts: LinearParts, confidence: float) -> tuple[float, float]:
    """Banerjee's t quantiles of the training and image parts at ``confidence`` (0 for a
    training part that one run leaves unmeasured)."""
    tail = (1 - confidence) / 2
    training = 0.0 if parts.training_unit == "none" else t_quantile(tail, parts.training_df)
    return training, t_quantile(tail, len(parts.images) - 1)


def ratio_interval(a: Cells, b: Cells, confidence: float = 0.95) -> RatioInterval:
    """Fieller's interval (module doc) of the ratio of ``a``'s estimate to ``b``'s, two
    statistics of one design (the same runs, strata, images and counts: e.g. the two sides of
    paired units)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    if a.counts.shape != b.counts.shape or not (
        np.array_equal(a.counts, b.counts) and np.array_equal(a.run_base, b.run_base)
    ):
        raise ValueError(
            "a ratio's two sides must share one design (runs, strata, images and counts): "
            "build both from the same paired units"
        )
    pa, pb = linear_parts(a), linear_parts(b)
    t_run, t_image = _quantiles(pa, confidence)

    def spread(x: LinearParts, y: LinearParts) -> float:
        """The t-weighted covariance of two statistics' estimates (their squared half-width
        when they are one)."""
        return t_run**2 * float(x.training @ y.training) + t_image**2 * float(x.images @ y.images)

    big_a, big_b = pa.estimate, pb.estimate
    square = big_b**2 - spread(pb, pb)
    cross = big_a * big_b - spread(pa, pb)
    constant = big_a**2 - spread(pa, pa)
    estimate = big_a / big_b if big_b else float("nan")
    if square <= 0:
        return RatioInterval(estimate, -np.inf, np.inf, confidence)
    # the quadratic is <= 0 at r = A / B, so its discriminant is >= 0 up to rounding
    root = np.sqrt(max(cross**2 - square * constant, 0.0))
    low, high = (cross - root) / square, (cross + root) / square
    return RatioInterval(estimate, float(low), float(high), confidence)
