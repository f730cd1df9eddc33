"""Calibration of the claims' verdicts on the run's own data (notebook 05): how often the rule
calls a difference that is not there (A/A), how often it detects one of the minimum size
(power), and the smallest effect the design detects at 80% power (MDE).

**Resamples.** Each claim's evidence is its paired differences a - b per run and query
(:func:`xlr.analysis.claims.claim_units`). A resample removes the observed effect and builds a
world with no effect whose variance parts are the ones the interval estimated on the data
(:func:`xlr.analysis.resamples.null_worlds`), at both levels of the design:

- *training*: each training unit (a base, with several bases, all its seeds moving together;
  else a seed of the one base) gets an effect drawn from a normal distribution with the observed
  variance between units (the sample variance of their deviations from the effect); the
  interval's training part reads units' means only, so a draw's mean and sample variance over
  the units are exactly the resample's estimate (with the images' shift) and training part;
- *images*: each image's residuals from its runs' means (all its ~28 queries, in every run)
  change sign with probability 1/2, independently of other images and alike in every run (the
  two arms swapped for that image); each run keeps only the shift of its means that every run
  shares (the runs weighed as in the estimate), so that the images add nothing to the training
  part. The image part of the interval reads each image's residuals weighed over runs, so this
  flips exactly that.

So the world is the normal crossed model at the training level, which the interval's t quantile
assumes, and the data's own images at the image level, where there are many units to flip. The
same verdict machinery as the claims reads each resample: the interval of
:func:`xlr.analysis.stats.cells_interval` at the claim's level (1 - alpha/m in its family), the
claim's minimum effect and :func:`xlr.analysis.verdicts.verdict`.

Why draw the units' effects, not flip their signs (this module in session 15): three units'
deviations under random signs take four patterns, and the t ratio of three centred deviations so
flipped never exceeds 4, below t with 2 degrees of freedom at 95% (4.30). An interval that took
a normal quantile for its training part (overstating its degrees of freedom, as Satterthwaite's
can) therefore hardly ever showed in those worlds, and an honest one's training variance
estimates varied less than a new study's would, so the power at a claim's MDE came out above the
0.8 the MDE is computed for (0.80-0.99 on the synthetic study, median 0.88). Drawn effects give
the t ratio the tails of t with u - 1 degrees of freedom and the variance estimate its
chi-square spread: the power at the MDE averages 0.79-0.81 on simulated studies (the gate,
below; flips gave 0.91-0.97 in a one-off comparison on another world, below), and two units,
whose flipped deviations are +-d and half of whose sign patterns erased the training variance,
can be calibrated. Before session 15 each run was flipped on its own, seeds apart within a base,
which gave the world 0.5-46 times the data's variance between bases.

Why not plain label permutations: swapping whole runs keeps a real effect in every run that is
not swapped (with three runs, a quarter of the permutations swap none or all of them, and the
A/A would count the real effect as an error); swapping images within runs alone erases the
training noise. Why centre: so a real effect, however large, is not part of the null.

**What a design can calibrate.** With two or more training units (bases, or seeds of the one
base) both levels are resampled. With one run (the smoke study) there is no training noise to
draw or measure, and every verdict is inconclusive by rule (an A/A rate of verdicts would be
0 by construction); what one run can calibrate is the interval's image part, so the rates are
those of the rule applied to the interval alone, marked *images only*. Below 20 images the
image level cannot be resampled: n images have 2^n sign patterns, and with the 0/1 values
of R@1 whole patterns make every image's deviation equal, a zero-width interval that the
interval rule alone calls supported (a rehearsal benchmark of 2 images gave A/A rates near 50%
that way); the check is then *not applicable*, and the claims' verdicts there are
inconclusive by rule (:data:`xlr.analysis.claims.MIN_IMAGES`).

**Planted effect and MDE.** The same resamples plus the claim's minimum effect in the claimed
direction on arm a: *power* is how often the interval excludes zero on that side (the family's
test rejects), *supported at min* how often the verdict is supported, which needs the whole
interval beyond the minimum, so it stays near (1 - level) / 2 at an effect of exactly the
minimum: a claim is supported with 80% power only at about min + MDE. The MDE is the effect
that the claim's own interval, at its level, tells from zero with probability 0.8 were the
observed variance parts the true ones, under the normal crossed model: the estimate normal
around the effect, each part's estimate that part times chi^2_df / df, so that the half-width
varies as in a real study (:func:`minimum_detectable_effect`; with one part, the noncentral t
test's). The half-width plus the 0.8 quantile of the error, which leaves that variation out,
is detected in 67-71% of studies where a 2-degree-of-freedom training part dominates.
The observed parts are still estimates (with 2 degrees of freedom, rough ones), so the MDE is
the design's, read off this study. The resamples draw the training part from the MDE's own
model, so ``power`` with the MDE planted comes out near 0.8 (``benchmarks/bench_calibration.py``):
that checks the image part and the MDE's arithmetic, not the model.

**Relative claims** (rank distance, whose effect is a / b - 1): each world resamples b's values
with the differences (:func:`xlr.analysis.resamples.paired_null_worlds`: b at its observed
level, its units' effects drawn jointly normal with the differences' as observed, its image
residuals flipped with theirs), a world's a is its b plus its differences, and its verdict is
the claims' relative rule (:func:`xlr.analysis.verdicts.relative_verdict`: the tests of a - (1
+- min) b, whose variance holds b's noise). So the worlds vary as that rule's intervals say they
do (``tests/test_resamples.py``: the spread of a - 1.1 b over 2,000 worlds within 10% of the
interval's variance). Until session 20 the worlds kept b's values as observed and varied 0.30-
0.63 times as much, so ``supported_at_min`` read low: on a simulated study whose bases are 30%
apart in b's level, 0.0% of 2,000 resamples at 95% against 2.2% now (a one-sided 2.5% is the
most an honest interval gives); over 16 such studies (a review's check, 400 resamples each)
1.70% now against 0.77% before, where 600 fresh studies at the minimum gave 1.17%. The
difference's draws are the absolute claim's, so the rates of intervals excluding zero, the power
and the MDE are the difference's. The planted effect is the minimum times b's level, added to
every query of a, as for an absolute claim of that size, and ``estimate``, ``se`` and ``mde``
are given divided by b's level, in the claim's units (b's level is positive: where it is not,
the claim cannot be judged, and is *not applicable* here).

**The gate** (:func:`check_calibration`) fails a claim on either A/A rate. The rate of verdicts
alone cannot see an interval that is too narrow: a verdict needs the interval beyond the minimum
effect, so an interval a third of the right width gets almost none and one of zero width few (on
the tests' simulated study at 95%: 0.5% and 6.5%, near the 5% gate). The rate of intervals
excluding zero can: an honest interval excludes a true zero in about 1 - level of the resamples
or fewer, a narrow one in more, a zero-width one in all. So the gate also fails a claim whose
``aa_nonzero_rate`` reaches :func:`nonzero_rate_limit`: the smallest rate that 1 - level reaches
with probability below :data:`NONZERO_TAIL` among the resamples as binomial replicates (the
exact tail, since 1 - level is small and its binomial skewed). The resamples all reuse the one
data set's images, so ``benchmarks/bench_calibration.py`` measures the gate on simulated null
studies (30 in each of three designs, 1 base x 3 seeds, 3 bases x 2 and 1 x 2, at four sizes of
training noise, its share of the variance 0.15-0.84 on average; 6 languages x 150 images; 200
resamples). An honest interval's rate averaged 1.9-4.1% at 95% (limit 11%; at most 9.5%) and
0-0.15% at the batches family's level 1 - 0.05/24 (limit 2.0%; at most 1.5%): no false alarm in
360 studies. At 1 - 0.05/24, with three units, the gate failed 43-100% of third-width intervals
(fewer where training dominates: a third of t_2's quantile there is still far out in its tails),
0-47% of half-width ones, 40-87% of those taking a normal quantile for the training part (its
degrees of freedom overstated) where training is about 60% of the variance or more, and 10-37%
of Satterthwaite's there; at 95%, 93-100% of half-width and all third-width ones. Two units give
it less to see: 10-23% of third-width intervals at 1 - 0.05/24. The resampled power at the MDE
averaged 0.79-0.81 in every row. On studies of ``tests/test_stats.py``'s world at level 1 -
0.05/8, the session-15 sign flips gave a power at the MDE of 0.91-0.97 on average and failed
fewer narrow intervals than these draws (third-width 37-67% of studies against 93-100%, a normal
training quantile 27-67% against 33-83%; a one-off comparison, session 16).

**What the gate cannot see**: a training part whose effects are not normal. Three units cannot
show a distribution's shape, and the world draws normal effects, as the interval's t quantile
assumes; with skewed effects (a centred exponential) where training dominates, the interval
excluded a true zero in up to 9.7% of studies at 95% and 0.50% at 1 - 0.05/24
(``benchmarks/bench_intervals.py --training skewed``; heavy tails alone kept it at or below its
level; at 1 - 0.05/24, 5 or 10 seeds of one base gave 1.0% and 1.3%, worse than 3 seeds' 0.38%,
whose t quantile hides the skew). Nor does it see image-level degrees of freedom overstated by
few images of skewed difficulty, which the interval's doc (:mod:`xlr.analysis.stats`) addresses.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import optimize
from scipy import stats as distributions

from xlr.analysis.claims import (
    DEFAULT_MIN_EFFECT,
    MIN_IMAGES,
    RELATIVE_MEASURES,
    Claim,
    claim_evidence,
    claim_units,
    claims_table,
)
from xlr.analysis.intervals import SIDES, unit_cells
from xlr.analysis.resamples import null_worlds, paired_null_worlds
from xlr.analysis.stats import Cells, Interval, cells_interval, linear_parts, t_quantile
from xlr.analysis.verdicts import Verdict, relative_verdict, verdict
from xlr.config import MinEffectSection
from xlr.eval.results import check_table

RESAMPLES = 200
MAX_AA_RATE = 0.05  # at most this share of A/A resamples may get a directional verdict
NONZERO_TAIL = 0.001  # chance that an honest interval's A/A nonzero rate reaches its limit
TARGET_POWER = 0.8
POWER_GRID = 400  # chi-square quantiles of each variance part (minimum_detectable_effect)
# a calibration table's first columns, as the claims table has them; a Calibration's follow
CLAIM_COLUMNS: tuple[str, ...] = (
    "key", "benchmark", "family", "measure", "langs", "arm_a", "arm_b", "min_effect",
    "interval_confidence",
)  # fmt: skip
Calibrates = Literal["bases and images", "seeds and images", "images only", "not applicable"]


def minimum_detectable_effect(interval: Interval, power: float = TARGET_POWER) -> float:
    """The true effect that this design's interval, at its level, tells from zero with
    probability ``power`` (above 1/2), were the observed variance parts the true ones, under the
    normal crossed model (:mod:`xlr.analysis.stats`): the estimate is normal around the effect
    with the observed standard error, and each variance part's estimate, independent of it, is
    its true value times chi^2_df / df, so the half-width is as random as in a real study
    (:func:`_random_half_widths`). With one variance part this is the noncentral t test's
    minimum detectable effect. The interval's half-width plus the ``power`` quantile of its
    error would leave that noise out: with a 2-degree-of-freedom training part its power is 0.67
    where that part is all the variance (level 1 - 0.05/24, the noncentral t), 0.71 where it is
    70% (1 - 0.05/8, the simulated studies of ``tests/test_calibration.py``)."""
    if not 0.5 < power < 1:
        raise ValueError(f"power must lie strictly between 0.5 and 1, got {power}")
    if interval.se == 0:
        return 0.0
    half = _random_half_widths(interval)

    def shortfall(effect: float) -> float:
        return float(distributions.norm.sf((half - effect) / interval.se).mean()) - power

    # zero is told apart at most half the time; 10 se beyond the widest half-width, always
    top = float(half.max()) + 10 * interval.se
    return float(optimize.brentq(shortfall, 0.0, top, xtol=1e-12 * top, rtol=1e-10))


def _random_half_widths(interval: Interval) -> np.ndarray:
    """The interval's half-width at its level with each variance part's estimate drawn as the
    part times chi^2_df / df, on :data:`POWER_GRID` midpoint quantiles of each chi-square (all
    pairs of them, equally likely)."""
    training, training_df, image, image_df = interval.variance_parts()
    tail = (1 - interval.confidence) / 2
    quantiles = (np.arange(POWER_GRID) + 0.5) / POWER_GRID
    squared = np.zeros(1)
    for variance, df in ((training, training_df), (image, image_df)):
        if variance:  # a part of variance 0 adds nothing, as in the interval
            part = t_quantile(tail, df) ** 2 * variance
            squared = (squared[:, None] + part * distributions.chi2.ppf(quantiles, df) / df).ravel()
    return np.sqrt(squared)


@dataclass(frozen=True)
class Calibration:
    """One comparison's calibration (module doc): the observed interval's ``estimate``, ``se``,
    the training part's share of its variance (``training_share``) and degrees of freedom
    (``training_df``) and the design; what the resamples vary (``calibrates``); the A/A rates of
    directional verdicts (``aa_rate``) and of intervals excluding zero (``aa_nonzero_rate``), and
    the most the latter may reach (``aa_nonzero_limit``, :func:`nonzero_rate_limit`); with the
    planted effect (the minimum by default), ``power`` (zero excluded on the planted side) and
    ``supported_at_min``; and the design's minimum detectable effect ``mde`` at 80% power. Rates
    are NaN where the design cannot be calibrated."""

    estimate: float
    se: float
    training_share: float
    training_df: float
    n_bases: int
    n_runs: int
    n_images: int
    calibrates: Calibrates
    resamples: int
    aa_rate: float
    aa_nonzero_rate: float
    aa_nonzero_limit: float
    power: float
    supported_at_min: float
    mde: float


def nonzero_rate_limit(confidence: float, resamples: int) -> float:
    """The smallest A/A rate of intervals excluding zero that an interval at ``confidence``
    reaches with probability below :data:`NONZERO_TAIL`, counted as ``k / resamples`` binomial
    replicates at rate 1 - ``confidence`` (module doc: what simulated studies show of honest
    and narrow intervals against it). A rate at or above it says the interval is too narrow."""
    if resamples < 1:
        raise ValueError(f"need resamples, got {resamples}")
    hits = int(distributions.binom.isf(NONZERO_TAIL, resamples, 1 - confidence)) + 1
    return hits / resamples


def _calibrates(n_bases: int, n_runs: int, n_images: int) -> Calibrates:
    if n_images < MIN_IMAGES:
        return "not applicable"
    if n_runs == 1:
        return "images only"
    return "bases and images" if n_bases > 1 else "seeds and images"


def calibrate_comparison(
    units: pd.DataFrame,
    direction: int,
    min_effect: float,
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
    rng: np.random.Generator | int = 0,
    plant: float | None = None,
    relative: bool = False,
) -> Calibration:
    """Calibrate the verdict of one paired comparison (module doc).

    ``units``: the per-run, per-query differences a - b in ``value`` with ``benchmark``,
    ``base_seed``, ``seed``, ``query_image_id`` and ``query_lang`` (the strata of the macro
    mean); ``direction`` +1 when a above b supports the claim, -1 when below; ``min_effect`` the
    claim's minimum effect (> 0, in the claim's units); ``confidence`` the level of each
    interval (the claim's, 1 - alpha/m); ``plant`` the size of the planted effect behind
    ``power`` and ``supported_at_min`` (default: the minimum effect itself).

    ``relative``: the claim's effect is a / b - 1 (module doc, relative claims); ``units`` then
    also hold b's values (``value_b``), ``min_effect`` and ``plant`` are fractions of b's level,
    each world's verdict is the relative rule, and ``estimate``, ``se`` and ``mde`` are divided
    by b's level.
    """
    if direction not in (-1, 1):
        raise ValueError(f"direction must be +1 or -1, got {direction}")
    if not min_effect > 0:
        raise ValueError(f"the minimum effect must be positive, got {min_effect}")
    plant = min_effect if plant is None else plant
    if not plant > 0:
        raise ValueError(f"the planted effect must be positive, got {plant}")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")
    cells = unit_cells(units, "query_lang")
    observed = cells_interval(cells, confidence)
    judge = _Judge(cells.counts, direction, min_effect, confidence, units if relative else None)
    calibrates = _calibrates(observed.n_bases, observed.n_runs, observed.n_images)
    scale = judge.scale if judge.scale > 0 else np.nan  # b's level: a relative claim's unit
    if np.isnan(scale):
        calibrates = "not applicable"
    design = {
        "estimate": observed.estimate / scale,
        "se": observed.se / scale,
        "training_share": observed.training_variance / observed.se**2 if observed.se else np.nan,
        "training_df": observed.training_df,
        "n_bases": observed.n_bases,
        "n_runs": observed.n_runs,
        "n_images": observed.n_images,
        "calibrates": calibrates,
        "mde": minimum_detectable_effect(observed) / scale,
    }
    if calibrates == "not applicable":
        rates = dict.fromkeys(
            ("aa_rate", "aa_nonzero_rate", "aa_nonzero_limit", "power", "supported_at_min"), np.nan
        )
        return Calibration(**design, resamples=0, **rates)
    planted = direction * plant * judge.unit_effect
    outcomes = np.zeros((resamples, 4), dtype=bool)
    worlds = judge.worlds(cells, observed.estimate, np.random.default_rng(rng))
    for i, (null, b) in enumerate(itertools.islice(worlds, resamples)):
        aa = cells_interval(dataclasses.replace(cells, sums=null), confidence)
        hit = cells_interval(dataclasses.replace(cells, sums=null + planted), confidence)
        outcomes[i] = (
            judge(null, aa, b) in ("supported", "contradicted"),
            aa.low > 0 or aa.high < 0,
            hit.low > 0 if direction > 0 else hit.high < 0,
            judge(null + planted, hit, b) == "supported",
        )
    aa_rate, aa_nonzero_rate, power, supported_at_min = outcomes.mean(axis=0)
    return Calibration(
        **design,
        resamples=resamples,
        aa_rate=float(aa_rate),
        aa_nonzero_rate=float(aa_nonzero_rate),
        aa_nonzero_limit=nonzero_rate_limit(confidence, resamples),
        power=float(power),
        supported_at_min=float(supported_at_min),
    )


class _Judge:
    """A claim's verdict on a world's sums of differences a - b, as the claims table reads it:
    the difference's interval against the minimum, or with b's values (``reference_units``,
    module doc: relative claims) the relative rule. ``unit_effect`` is the sums of an effect of
    1 in the claim's units; ``scale``, b's level (1 for absolute claims), turns the difference's
    units into the claim's."""

    def __init__(
        self,
        counts: np.ndarray,
        direction: int,
        min_effect: float,
        confidence: float,
        reference_units: pd.DataFrame | None,
    ) -> None:
        self.direction, self.min_effect, self.confidence = direction, min_effect, confidence
        self.reference: Cells | None = None
        self.unit_effect, self.scale = counts, 1.0
        if reference_units is not None:
            check_table(reference_units, [SIDES[1]], "paired units of a relative claim")
            b = reference_units[SIDES[1]]
            self.reference = unit_cells(reference_units.assign(value=b), "query_lang")
            self.scale = linear_parts(self.reference).estimate
            self.unit_effect = self.scale * counts

    def worlds(
        self, cells: Cells, estimate: float, rng: np.random.Generator
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Endless A/A worlds of the differences ``cells``, each with b's sums in that world
        (:func:`xlr.analysis.resamples.paired_null_worlds`) or None for an absolute claim."""
        if self.reference is None:
            return ((null, None) for null in null_worlds(cells, estimate, rng))
        return paired_null_worlds(cells, estimate, self.reference, rng)

    def __call__(self, sums: np.ndarray, difference: Interval, b: np.ndarray | None) -> Verdict:
        """The verdict of a world whose differences' sums are ``sums``, with their interval
        ``difference`` (what an absolute claim reads) and b's sums ``b`` (a relative claim's)."""
        if b is None:
            return verdict(difference.low, difference.high, self.direction, self.min_effect)
        world_b = dataclasses.replace(self.reference, sums=b)
        a = dataclasses.replace(self.reference, sums=b + sums)
        return relative_verdict(a, world_b, self.direction, self.min_effect, self.confidence)


def calibrate_claims(
    measures: pd.DataFrame,
    claims: Sequence[Claim],
    seen: Sequence[str],
    heldout: Sequence[str],
    min_effect: MinEffectSection = DEFAULT_MIN_EFFECT,
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per claim that ran (:func:`xlr.analysis.claims.evaluate_claims`, same arguments,
    ``measures`` a :func:`xlr.analysis.measures.query_measures` table):
    the claim, its minimum effect and interval level as the claims table has them, and its
    :class:`Calibration`. Every claim draws its resamples from one generator seeded by ``seed``.
    """
    evidence = claim_evidence(measures, claims, seen, heldout)
    table = claims_table(evidence, min_effect, confidence)
    rng = np.random.default_rng(seed)
    rows = []
    for (claim, benchmark, found), row in zip(evidence, table.to_dict("records"), strict=True):
        if isinstance(found, str):
            continue  # an arm or the claim's languages are missing: nothing to calibrate
        units = claim_units(found, claim)
        units = units.assign(value=units["value_a"] - units["value_b"])
        level, minimum = row["interval_confidence"], row["min_effect"]
        relative = claim.measure in RELATIVE_MEASURES
        result = calibrate_comparison(
            units, claim.direction, minimum, level, resamples, rng, relative=relative
        )
        rows.append(
            {"key": claim.key, "benchmark": benchmark, "family": claim.family,
             "measure": claim.measure, "langs": claim.langs, "arm_a": claim.arm_a,
             "arm_b": claim.arm_b, "min_effect": minimum, "interval_confidence": level,
             **asdict(result)}
        )  # fmt: skip
    columns = [*CLAIM_COLUMNS, *(field.name for field in dataclasses.fields(Calibration))]
    return pd.DataFrame(rows, columns=columns)


def check_calibration(table: pd.DataFrame, max_rate: float = MAX_AA_RATE) -> str:
    """Raise ``AssertionError`` naming the claims (:func:`calibrate_claims`) whose A/A rate of
    verdicts exceeds ``max_rate``, or whose A/A rate of intervals excluding zero reaches its
    ``aa_nonzero_limit`` (module doc: the gate); else return one line saying what was checked,
    or why nothing was."""
    needed = {"key", "aa_rate", "aa_nonzero_rate", "aa_nonzero_limit", "calibrates", "resamples"}
    missing = needed - set(table.columns)
    if missing:
        raise ValueError(f"calibration table lacks columns {sorted(missing)}: calibrate_claims")
    checked = table[table["aa_rate"].notna()]
    if checked.empty:
        return (
            f"A/A check not applicable: no claim ran, or none on {MIN_IMAGES} or more images; "
            "fewer images cannot be resampled"
        )
    verdicts = checked[checked["aa_rate"] > max_rate]
    narrow = checked[checked["aa_nonzero_rate"] >= checked["aa_nonzero_limit"]]
    failures = []
    if not verdicts.empty:
        pairs = zip(verdicts["key"], verdicts["aa_rate"], strict=True)
        rates = ", ".join(f"{key}: {rate:.1%}" for key, rate in pairs)
        failures.append(
            f"these claims got a supported or contradicted verdict in more than {max_rate:.0%} "
            f"of the resamples ({rates})"
        )
    if not narrow.empty:
        rows = narrow[["key", "aa_nonzero_rate", "aa_nonzero_limit"]].itertuples(index=False)
        rates = ", ".join(f"{key}: {rate:.1%}, limit {limit:.1%}" for key, rate, limit in rows)
        failures.append(
            "these claims' intervals excluded zero in more resamples than their level allows "
            f"beyond chance ({rates}; an interval at level 1 - a excludes a true zero in about a "
            "of them)"
        )
    if failures:
        raise AssertionError(
            "A/A calibration failed: with the arm labels randomised (no true effect), "
            + "; and ".join(failures)
            + ". The claims' intervals are too narrow for this design, so their verdicts cannot "
            "be trusted: fix the interval (xlr.analysis.stats), never the check"
        )
    what = ", ".join(sorted(checked["calibrates"].unique()))
    return (
        f"A/A rate at most {checked['aa_rate'].max():.1%} (limit {max_rate:.0%}) and intervals "
        "excluding zero below their limits (at most "
        f"{checked['aa_nonzero_rate'].max():.1%}) in {len(checked)} claims, "
        f"{int(checked['resamples'].iat[0])} resamples each; resampled: {what}"
    )
