"""Calibration of the claims' verdicts on the run's own data (notebook 05): how often the rule
calls a difference that is not there (A/A), how often it detects one of the minimum size
(power), and the smallest effect the design detects at 80% power (MDE).

**Resamples.** Each claim's evidence is its paired differences a - b per run and query
(:func:`xlr.analysis.claims.claim_units`). A resample removes the observed effect and swaps the
two arms at random at both levels of the design, so that the arms are exchangeable whatever the
real effect, and builds a world whose variance parts are the ones the interval estimated on the
data (:func:`_null_parts`):

- *training*: each training unit (a base, with several bases: all its seeds swap together; else
  a seed of the one base) has its deviation from the effect change sign with probability 1/2,
  widened by sqrt(u / (u - 1)) over u units, so that the world's variance between units is the
  observed one (centred deviations with random signs carry (u - 1) / u of it: 2/3 with three
  bases, the wild cluster bootstrap's known shrinkage);
- *images*: each image's deviation from its run, as every run shares it (the runs weighed as in
  the estimate: all its ~28 queries, in every run), changes sign with probability 1/2,
  independently; each run's own departure from that shared part stays as observed (it moves
  neither a run's mean nor an image's influence on the estimate, where every run scores the same
  queries, as a claim's runs do; else each run's whole image residual flips).

The same verdict machinery as the claims reads each resample: the interval of
:func:`xlr.analysis.stats.cells_interval` at the claim's level (1 - alpha/m in its family), the
claim's minimum effect and :func:`xlr.analysis.claims.verdict`.

Why not flip each run's deviation, and each image's whole deviation in every run (this module
until session 15): seeds were then flipped apart within a base, which makes the world's
variance between bases that of single runs, not the data's (on the synthetic study its training
part was 0.5-46 times the observed one between claims), and the runs' own image residuals,
flipped, added between-run noise the data's training part already holds, so intervals in the
resamples were wider than their world needed. On the synthetic study the power at each claim's
MDE then ranged 0.05-0.99; with the parts above, 0.80-0.99 (median 0.88), at least the 0.8 the
MDE is computed for: the resamples keep each unit's deviation's size, so their training
variance estimates vary less than a new study's would, which the MDE counts.

Why not plain label permutations: swapping whole runs keeps a real effect in every run that is
not swapped (with three runs, a quarter of the permutations swap none or all of them, and the
A/A would count the real effect as an error); swapping images within runs alone erases the
training noise. Why centre: so a real effect, however large, is not part of the null.

**What a design can calibrate.** With at least three training units (bases, or seeds of the one
base) both levels are resampled. With two, the centred run deviations are +-d, and half the sign
patterns make them equal, erasing the training variance: the A/A would measure that artefact,
so the check is *not applicable*. With one run (the smoke study) there is no training noise to
resample or measure, and every verdict is inconclusive by rule (an A/A rate of verdicts would be
0 by construction); what one run can calibrate is the interval's image part, so the rates are
those of the rule applied to the interval alone, marked *images only*. Below 20 images the
image level cannot be resampled either: n images have 2^n sign patterns, and with the 0/1 values
of R@1 whole patterns make every image's deviation equal, a zero-width interval that the
interval rule alone calls supported (a rehearsal benchmark of 2 images gave A/A rates near 50%
that way); the check is then *not applicable* too, and the claims' verdicts there are
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
the design's, read off this study; ``power`` above is the check on the data themselves.

**The gate** (:func:`check_calibration`) fails a claim on either A/A rate. The rate of verdicts
alone cannot see an interval that is too narrow: a verdict needs the interval beyond the minimum
effect, so an interval a third of the right width gets none and one of zero width few (on the
tests' simulated study at the claims' level 1 - 0.05/8: 0% and 6%, near the 5% gate). The rate
of intervals excluding zero can: an honest interval excludes a true zero in about 1 - level of
the resamples or fewer, a third-width one in far more, a zero-width one in all. So the gate also
fails a claim whose ``aa_nonzero_rate`` reaches :func:`nonzero_rate_limit`: the smallest rate
that 1 - level reaches with probability below :data:`NONZERO_TAIL` among the resamples as
binomial replicates (the exact tail, since 1 - level is small and its binomial skewed). The
resamples all reuse the one data set, and with three training units their training part takes
one of only four sign patterns, so they are not independent; measured on 30 simulated studies in
each of three designs (3 bases x 2 seeds, 1 base x 3 seeds, and 3 x 2 with training 75% of the
variance; 6 languages x 150 images; 200 resamples at 95%), an honest interval's rate had a mean
of 1.8-2.8%, a standard deviation 1.2-1.4 times the binomial one, and at most 8.0% against the
limit of 11%; a half-width interval's was 12-33% and a third-width one's 24-52%, all caught. At
the claims' level 1 - 0.05/8 (limit 3.5%) honest rates stayed at or below 0.5%, and 53-77% of
third-width intervals were caught. **What the gate cannot see**: with three training units, the
t ratio of three centred deviations under random signs never exceeds 4 (review, session 15),
below t with 2 degrees of freedom at 95% (4.30), so where training dominates an honest interval
hardly ever excludes zero in these worlds by construction, and an interval that overstated its
training degrees of freedom (a normal quantile in place of t, as Satterthwaite's can) excluded
zero in only 1.5-2.5% of resamples at the claims' level (the tests' simulated studies, seeds 0
and 2), below its limit: the gate catches intervals too narrow in scale, not in degrees of
freedom, which the interval's doc argues for instead (:mod:`xlr.analysis.stats`; its simulated
coverage, ``benchmarks/bench_intervals.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import optimize
from scipy import stats as distributions

from xlr.analysis.claims import (
    DEFAULT_MIN_EFFECT,
    MIN_IMAGES,
    Claim,
    claim_evidence,
    claim_units,
    evaluate_claims,
    verdict,
)
from xlr.analysis.intervals import unit_cells
from xlr.analysis.stats import Cells, Interval, cells_interval
from xlr.config import MinEffectSection

RESAMPLES = 200
MAX_AA_RATE = 0.05  # at most this share of A/A resamples may get a directional verdict
NONZERO_TAIL = 0.001  # chance that an honest interval's A/A nonzero rate reaches its limit
TARGET_POWER = 0.8
POWER_GRID = 400  # chi-square quantiles of each variance part (minimum_detectable_effect)
MIN_TRAINING_UNITS = 3  # fewer (but more than one) cannot be resampled: module doc
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
            part = distributions.t.isf(tail, df) ** 2 * variance
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
    units = n_bases if n_bases > 1 else n_runs
    if units >= MIN_TRAINING_UNITS:
        return "bases and images" if n_bases > 1 else "seeds and images"
    return "images only" if units == 1 else "not applicable"


def calibrate_comparison(
    units: pd.DataFrame,
    direction: int,
    min_effect: float,
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
    rng: np.random.Generator | int = 0,
    plant: float | None = None,
) -> Calibration:
    """Calibrate the verdict of one paired comparison (module doc).

    ``units``: the per-run, per-query differences a - b in ``value`` with ``benchmark``,
    ``base_seed``, ``seed``, ``query_image_id`` and ``query_lang`` (the strata of the macro
    mean); ``direction`` +1 when a above b supports the claim, -1 when below; ``min_effect`` the
    claim's minimum effect (> 0, in the measure's units); ``confidence`` the level of each
    interval (the claim's, 1 - alpha/m); ``plant`` the size of the planted effect behind
    ``power`` and ``supported_at_min`` (default: the minimum effect itself).
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
    calibrates = _calibrates(observed.n_bases, observed.n_runs, observed.n_images)
    design = {
        "estimate": observed.estimate,
        "se": observed.se,
        "training_share": observed.training_variance / observed.se**2 if observed.se else np.nan,
        "training_df": observed.training_df,
        "n_bases": observed.n_bases,
        "n_runs": observed.n_runs,
        "n_images": observed.n_images,
        "calibrates": calibrates,
        "mde": minimum_detectable_effect(observed),
    }
    if calibrates == "not applicable":
        rates = dict.fromkeys(
            ("aa_rate", "aa_nonzero_rate", "aa_nonzero_limit", "power", "supported_at_min"), np.nan
        )
        return Calibration(**design, resamples=0, **rates)
    rng = np.random.default_rng(rng)
    units = training_units(cells)
    training, shared, rest = _null_parts(cells, units, observed.estimate)
    planted = direction * plant * cells.counts
    n_units, n_images = int(units.max()) + 1, cells.sums.shape[2]
    outcomes = np.zeros((resamples, 4), dtype=bool)
    for i in range(resamples):
        unit_signs = rng.choice([-1.0, 1.0], n_units)[units][:, None, None]
        image_signs = rng.choice([-1.0, 1.0], n_images)[None, None, :]
        null = unit_signs * training + image_signs * shared + rest
        aa = cells_interval(dataclasses.replace(cells, sums=null), confidence)
        hit = cells_interval(dataclasses.replace(cells, sums=null + planted), confidence)
        aa_verdict = verdict(aa.low, aa.high, direction, min_effect)
        outcomes[i] = (
            aa_verdict in ("supported", "contradicted"),
            aa.low > 0 or aa.high < 0,
            hit.low > 0 if direction > 0 else hit.high < 0,
            verdict(hit.low, hit.high, direction, min_effect) == "supported",
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


def training_units(cells: Cells) -> np.ndarray:
    """Each run's training unit, as a code from 0: its base, or with one base the run itself
    (the seeds of that base)."""
    return cells.run_base if cells.run_base.max() > 0 else np.arange(len(cells.run_base))


def _null_parts(
    cells: Cells, units: np.ndarray, estimate: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cells' sums as training part + image part + rest, each ``[runs, strata, images]``
    (module doc, resamples): each training unit's (``units``: a code per run) deviation from
    ``estimate``, widened by sqrt(u / (u - 1)) over ``u`` units, with its runs' deviations from
    it; each image's deviation from its run shared by every run (the runs weighed as in the
    estimate); and each run's own departure from that shared part, which moves neither a run's
    mean nor an image's influence. That needs every run to score the same queries (the same
    counts in every cell); where they differ, the image part is each run's whole image residual,
    flipped in every run alike, as this module did until session 15."""
    means = cells.sums.sum(axis=2) / cells.counts.sum(axis=2)
    deviation = means - estimate
    per_unit = np.bincount(units)
    unit_mean = np.stack([np.bincount(units, column) / per_unit for column in deviation.T], 1)
    n_units = len(per_unit)  # one (one run): its macro deviation is zero, nothing to widen
    widen = np.sqrt(n_units / (n_units - 1)) if n_units > 1 else 1.0
    run_deviation = deviation + (widen - 1) * unit_mean[units]
    image_part = cells.sums - means[..., None] * cells.counts
    training = run_deviation[..., None] * cells.counts
    if np.ptp(cells.counts, axis=0).any():  # runs score different queries: no shared part
        return training, image_part, np.zeros_like(image_part)
    weight = 1.0 / (cells.run_base.max() + 1) / np.bincount(cells.run_base)[cells.run_base]
    shared = np.einsum("r,rsi->si", weight, image_part)[None]
    return training, shared, image_part - shared


def calibrate_claims(
    ranks: pd.DataFrame,
    claims: Sequence[Claim],
    seen: Sequence[str],
    heldout: Sequence[str],
    min_effect: MinEffectSection = DEFAULT_MIN_EFFECT,
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per claim that ran (:func:`xlr.analysis.claims.evaluate_claims`, same arguments):
    the claim, its minimum effect and interval level as the claims table has them, and its
    :class:`Calibration`. Every claim draws its resamples from one generator seeded by ``seed``.
    """
    table = evaluate_claims(ranks, claims, seen, heldout, min_effect, confidence)
    evidence = claim_evidence(ranks, claims, seen, heldout)
    rng = np.random.default_rng(seed)
    rows = []
    for (claim, benchmark, found), row in zip(evidence, table.to_dict("records"), strict=True):
        if isinstance(found, str):
            continue  # an arm or the claim's languages are missing: nothing to calibrate
        units = claim_units(found, claim)
        units = units.assign(value=units["value_a"] - units["value_b"])
        level, minimum = row["interval_confidence"], row["min_effect"]
        result = calibrate_comparison(units, claim.direction, minimum, level, resamples, rng)
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
            "A/A check not applicable: no claim ran, or none with one run or with three or more "
            f"training units (bases, or seeds of the one base) and {MIN_IMAGES} or more images; "
            "two units, or fewer images, cannot be resampled"
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
