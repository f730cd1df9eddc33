"""The verdict rules of the claims (:mod:`xlr.analysis.claims`): an interval of the effect against
the claim's minimum effect, and for a relative claim (rank distance, whose minimum is a fraction of
arm b's level) the tests of a - (1 +- min) b themselves.

*supported* when the effect is told beyond +min in the claimed direction, *contradicted* beyond
-min the other way, *equivalent* within +-min, *inconclusive* otherwise; the claims table adds
its own conditions (one run, few images) on top. Calibration (:mod:`xlr.analysis.calibration`)
reads the same rules in its resampled worlds.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from xlr.analysis.stats import Cells, Interval, cells_interval, linear_parts

Verdict = Literal["supported", "contradicted", "equivalent", "inconclusive"]


def verdict(low: float, high: float, direction: int, min_effect: float) -> Verdict:
    """The verdict of an interval ``[low, high]`` of the effect a - b against a minimum effect
    > 0 (module doc)."""
    if not min_effect > 0:
        raise ValueError(f"the minimum effect must be positive, got {min_effect}")
    above, below = low > min_effect, high < -min_effect
    return _verdict_of(above, below, -min_effect < low and high < min_effect, direction)


def relative_verdict(
    a: Cells, b: Cells, direction: int, min_effect: float, confidence: float
) -> Verdict:
    """The verdict of a relative claim, a / b - 1 against +-``min_effect``, from the claims'
    own intervals (at ``confidence``) of a - (1 + min) b and a - (1 - min) b on one design: a
    above (1 + min) b where the first lies above zero, below (1 - min) b where the second lies
    below, within where the first lies below and the second above. Each is the test of its
    threshold itself, b's noise in it, and reads as a bound on a / b because b's level is
    positive (rank distance's is; a level at or below zero gives no verdict). Fieller's interval
    of the ratio (:mod:`xlr.analysis.ratios`, what the table shows) gives the same verdict where
    it is bounded, and none where b's level is not told from zero at the claim's level, which
    with three bases is often (a review: at 1 - 0.05/8, unbounded in 19-88% of simulated
    studies whose bases differ in b's level by 10-40%), where these tests keep their power."""
    if not min_effect > 0:
        raise ValueError(f"the minimum effect must be positive, got {min_effect}")
    if not linear_parts(b).estimate > 0:
        return "inconclusive"

    def beyond(ratio: float) -> Interval:
        return cells_interval(dataclasses.replace(a, sums=a.sums - ratio * b.sums), confidence)

    high, low = beyond(1 + min_effect), beyond(1 - min_effect)
    return _verdict_of(high.low > 0, low.high < 0, high.high < 0 and low.low > 0, direction)


def _verdict_of(above: bool, below: bool, within: bool, direction: int) -> Verdict:
    """The verdict given whether the effect is told above +min, below -min or within +-min."""
    if above if direction > 0 else below:
        return "supported"
    if below if direction > 0 else above:
        return "contradicted"
    return "equivalent" if within else "inconclusive"
