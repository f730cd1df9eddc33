"""Uncertainty for per-query metrics scored over a study's design: intervals, p-values, Holm's
adjustment.

A study scores every query under several training runs (pretrained bases, and fine-tuning seeds
within a base), and every query derives from an image: each image yields a caption query in
every language (about 28 on the embedded default), and an image query itself. Queries are
therefore not the evidence: queries of one image share its difficulty, and runs differ by
training noise that no number of queries averages away. The units are bases, seeds within a
base, and images; the image factor is *crossed* with the runs (every run scores the same images).

The statistic is the mean over runs (each base weighs equally, its seeds equally within it) of
each run's macro mean over strata (query languages) of per-stratum means. Its variance is
estimated as in the crossed random-effects model ``value = mean + base + seed(base) + image +
residual``, by the method of moments:

- training: the sample variance of the per-base estimates over the number of bases (the unbiased
  two-stage estimator, which carries the seeds' noise within a base along); with one base, that
  of the per-seed estimates; with one run there is no training noise to measure and the interval
  is conditional on that run;
- images: the cluster-robust variance of each image's influence on the estimate (all queries of
  an image move together, in every language and run), the stratified ratio mean linearised;
  copying every query of an image 28 times leaves it unchanged.

The two parts double-count the run-by-image residual once, which errs wide (as the pigeonhole
bootstrap does, Owen 2007).

**The interval is Banerjee's** (1961, Sankhya A 23): half-width
``sqrt(t_run^2 v_run + t_image^2 v_image)``, each part's variance times the square of its own t
quantile (``t_run`` with the training part's degrees of freedom: bases - 1, or seeds - 1 with one
base; ``t_image`` with images - 1). Under the normal crossed model its coverage holds the
nominal level whatever the ratio of the two parts (conservative, exact at either extreme; the
double-counted residual only adds margin); where images - 1 overstates the image part's degrees
of freedom (few images of skewed difficulty, images spread very unevenly over strata) it can
fall short, as every t interval on a cluster-robust variance can (README:
``benchmarks/bench_intervals.py --image-effects skewed`` measures it). A t interval with
Satterthwaite's degrees of freedom does not hold its level even under that model: those are
computed from the estimated variances, so where training noise dominates and its
2-degree-of-freedom estimate comes out small by chance, they rise and the interval narrows. On
simulated null studies (``benchmarks/bench_intervals.py``: 6 languages x 300 images, one base x
3 seeds or 3 bases x 2 seeds, training noise from none to dominant) Satterthwaite's excluded a
true zero in up to 7.2% of 95% intervals and 1.7% at level 1 - 0.05/24 (nominal 0.21%),
Banerjee's in at most 3.9% and 0.20%. The price is width where the parts are of similar size: at
that level up to 3.2 times Satterthwaite's, since two degrees of freedom put t_run near 22
there. The p-value is the level at which the interval just reaches zero.

Why not a hierarchical percentile bootstrap (resample bases, seeds within, images): a resample
of three bases never leaves their range and underestimates their variance by a third. Where
training noise between bases dominates (SD 0.03 per arm and base; 3 bases x 2 seeds x 6
languages x 150 images, 400 simulated studies with no effect), its 95% interval excluded zero in
22% of studies, the t interval (then with Satterthwaite's df) in 7.5%.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import optimize, special
from statsmodels.stats.multitest import multipletests

RESAMPLE_BLOCK = 2**22  # signs drawn at once (32 MiB of float64); bounds the permutation memory
RELATIVE_TOLERANCE = 1e-9  # permutation statistics this close to the observed one count as equal
P_FLOOR = 1e-200  # smallest p-value computed: scipy's t quantiles stay finite above it (not 1e-300)

TrainingUnit = Literal["base", "seed", "none"]


@dataclass(frozen=True)
class Interval:
    """An estimate with its interval at ``confidence`` (Banerjee's, module doc) and the two-sided
    p-value of estimate = 0.

    ``se`` is the standard error, ``training_variance`` its training part with ``training_df``
    degrees of freedom (the rest, ``se**2 - training_variance``, is the image part with
    ``n_images - 1``); ``training_unit`` says where the training noise was measured: between
    ``base`` estimates, between ``seed`` estimates of the one base, or ``none`` (a single run).
    """

    estimate: float
    low: float
    high: float
    se: float
    training_variance: float
    training_df: float
    p_value: float
    n_bases: int
    n_runs: int
    n_images: int
    training_unit: TrainingUnit
    confidence: float

    def half_width(self, confidence: float) -> float:
        """Half the width of this estimate's two-sided interval at ``confidence``."""
        _check_confidence(confidence)
        return _half_width((1 - confidence) / 2, *self.variance_parts())

    def variance_parts(self) -> tuple[float, float, float, float]:
        """(training variance, its degrees of freedom, image variance, its degrees of freedom):
        what the half-width combines."""
        image_variance = max(self.se**2 - self.training_variance, 0.0)
        return self.training_variance, self.training_df, image_variance, float(self.n_images - 1)


def _as_values(name: str, values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of per-query values")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return values


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")


@dataclass(frozen=True)
class _Design:
    """Each value's ``run``, ``image`` and ``stratum`` as codes from 0, each run's base code, and
    the run and stratum labels for error messages."""

    run: np.ndarray
    image: np.ndarray
    stratum: np.ndarray
    run_base: np.ndarray
    run_names: list[str]
    strata: np.ndarray


def _design(
    n: int, base: np.ndarray, seed: np.ndarray, image: np.ndarray, strata: np.ndarray | None
) -> _Design:
    """Code the labels of ``n`` values; a missing seed (the zero-shot arm) is a label of its own."""
    labels = {"base": base, "seed": seed, "image": image}
    labels["stratum"] = np.zeros(n, dtype=np.int64) if strata is None else strata
    for name, column in labels.items():
        if np.shape(column) != (n,):
            raise ValueError(f"{name} must label each of the {n} values, got {np.shape(column)}")
    frame = pd.DataFrame(labels)
    missing = [name for name in ("base", "image", "stratum") if frame[name].isna().any()]
    if missing:
        raise ValueError(f"{missing} labels are missing for some values; every value needs them")
    runs = frame.groupby(["base", "seed"], dropna=False, sort=True)
    keys = runs.size().index
    return _Design(
        run=runs.ngroup().to_numpy(),
        image=pd.factorize(frame["image"])[0],
        stratum=pd.factorize(frame["stratum"])[0],
        run_base=pd.factorize(keys.get_level_values("base"))[0],
        run_names=[f"base {b}, seed {s}" for b, s in keys],
        strata=pd.unique(frame["stratum"]),
    )


def _training_df(run_base: np.ndarray) -> tuple[float, TrainingUnit]:
    """The training part's degrees of freedom and unit (module doc): between bases, else
    between the seeds of the one base, else none (one run: ``inf`` degrees of freedom, and the
    part is 0)."""
    n_bases = int(run_base.max()) + 1
    if n_bases > 1:
        return float(n_bases - 1), "base"
    if len(run_base) > 1:
        return float(len(run_base) - 1), "seed"
    return np.inf, "none"


@dataclass(frozen=True)
class Cells:
    """Per-query values summed per run, stratum and image (``sums``, ``counts``: arrays of
    ``[runs, strata, images]``) and each run's base code: all the interval reads. Every run
    scores every stratum and there are at least two images (:func:`design_cells` checks)."""

    sums: np.ndarray
    counts: np.ndarray
    run_base: np.ndarray


def design_cells(
    values: np.ndarray,
    base: np.ndarray,
    seed: np.ndarray,
    image: np.ndarray,
    strata: np.ndarray | None = None,
) -> Cells:
    """The :class:`Cells` of per-query ``values`` labelled as :func:`crossed_mean_interval`
    takes them. Resampling schemes (:mod:`xlr.analysis.calibration`) change the sums and keep
    the design, so every resample reads the same statistic."""
    values = _as_values("values", values)
    design = _design(len(values), base, seed, image, strata)
    n_runs, n_images = len(design.run_base), int(design.image.max()) + 1
    n_strata = int(design.stratum.max()) + 1
    if n_images < 2:
        raise ValueError(
            "an interval over images needs at least two images; got one, so nothing varies "
            "between the units queries come from (check the query_image_id column)"
        )
    cell = (design.run * n_strata + design.stratum) * n_images + design.image
    shape = (n_runs, n_strata, n_images)
    sums = np.bincount(cell, values, np.prod(shape)).reshape(shape)
    counts = np.bincount(cell, minlength=np.prod(shape)).reshape(shape).astype(np.float64)
    per_stratum = counts.sum(axis=2)
    if (per_stratum == 0).any():
        run, stratum = np.argwhere(per_stratum == 0)[0]
        raise ValueError(
            f"run ({design.run_names[run]}) has no value in stratum "
            f"{design.strata[stratum]!r}: every run must score every stratum (query "
            "language) for their macro means to be comparable"
        )
    return Cells(sums, counts, design.run_base)


def t_quantile(tail: float, df: float) -> float:
    """The t distribution's upper-tail quantile at probability ``tail`` (0 < tail < 1; callers
    check their levels) with ``df`` degrees of freedom (``inf``: the normal's), as
    ``scipy.stats.t.isf(tail, df)`` computes it (its ``-stdtrit(df, tail)``, exact in tiny
    tails) without the per-call argument handling that was 90 of calibration's 137 s on the
    synthetic study (264,508 calls inside p-values' root finding); ``tests/test_stats.py``
    checks the two agree."""
    return float(-special.stdtrit(df, tail))


def _half_width(tail: float, v_run: float, df_run: float, v_image: float, df_image: float) -> float:
    """Banerjee's half-width at upper-tail probability ``tail`` (alpha / 2): each variance part
    times the square of its own t quantile (:func:`t_quantile` keeps tiny tails exact, ``hypot``
    finite). A part of variance 0 adds nothing, whatever its quantile."""
    parts = [
        t_quantile(tail, df) * np.sqrt(variance)
        for variance, df in ((v_run, df_run), (v_image, df_image))
        if variance
    ]
    return float(np.hypot(*parts)) if len(parts) == 2 else float(sum(parts))


def _p_value(estimate: float, *parts: float) -> float:
    """The two-sided level at which the interval's edge just reaches zero (1 for a zero estimate,
    0 when nothing varies, 0 below :data:`P_FLOOR`): the half-width falls as alpha grows, so one
    root in log alpha."""
    if estimate == 0:
        return 1.0
    if parts[0] + parts[2] == 0:
        return 0.0

    def gap(log_alpha: float) -> float:
        return _half_width(np.exp(log_alpha) / 2, *parts) - abs(estimate)

    floor = np.log(P_FLOOR)
    if gap(floor) <= 0:
        return 0.0
    return float(np.exp(optimize.brentq(gap, floor, 0.0, xtol=1e-12, rtol=1e-12)))


def run_weights(run_base: np.ndarray) -> np.ndarray:
    """Each run's weight in the estimate (module doc): bases weigh equally, and the seeds of a
    base equally within it."""
    return 1.0 / (run_base.max() + 1) / np.bincount(run_base)[run_base]


@dataclass(frozen=True)
class LinearParts:
    """The estimate of :func:`cells_interval` and its variance parts as vectors whose squared
    norms are those parts: ``training`` (one entry per training unit) and ``images`` (one per
    image). The estimate is linear in the cells' sums, so for two statistics on one design the
    dot products of their vectors are the parts' covariances (:mod:`xlr.analysis.ratios`)."""

    estimate: float
    training: np.ndarray
    training_df: float
    training_unit: TrainingUnit
    images: np.ndarray


def linear_parts(cells: Cells) -> LinearParts:
    """The estimate and variance parts of ``cells`` (module doc), as :class:`LinearParts`."""
    sums, counts, run_base = cells.sums, cells.counts, cells.run_base
    n_strata, n_images = sums.shape[1:]
    per_stratum = counts.sum(axis=2)
    means = sums.sum(axis=2) / per_stratum
    per_run = means.mean(axis=1)
    weight = run_weights(run_base)
    df_run, unit = _training_df(run_base)
    per_unit = np.bincount(run_base, per_run) / np.bincount(run_base) if unit == "base" else per_run
    training = (per_unit - per_unit.mean()) / np.sqrt(len(per_unit) * df_run)
    residual = (sums - means[..., None] * counts) / per_stratum[..., None]
    influence = np.einsum("r,rsi->i", weight, residual) / n_strata
    images = influence * np.sqrt(n_images / (n_images - 1))
    return LinearParts(float(weight @ per_run), training, df_run, unit, images)


def cells_interval(cells: Cells, confidence: float = 0.95) -> Interval:
    """The interval of :func:`crossed_mean_interval` from the design's :class:`Cells`."""
    _check_confidence(confidence)
    parts = linear_parts(cells)
    estimate, n_images = parts.estimate, len(parts.images)
    v_run, v_image = parts.training @ parts.training, parts.images @ parts.images
    variances = (float(v_run), parts.training_df, float(v_image), float(n_images - 1))
    half = _half_width((1 - confidence) / 2, *variances)
    return Interval(
        estimate, estimate - half, estimate + half, float(np.sqrt(v_run + v_image)),
        float(v_run), parts.training_df, _p_value(estimate, *variances),
        int(cells.run_base.max() + 1), len(cells.run_base), int(n_images), parts.training_unit,
        confidence,
    )  # fmt: skip


def crossed_mean_interval(
    values: np.ndarray,
    base: np.ndarray,
    seed: np.ndarray,
    image: np.ndarray,
    strata: np.ndarray | None = None,
    confidence: float = 0.95,
) -> Interval:
    """Interval of the mean of per-query ``values`` over bases, seeds and images (module doc).

    One value per run and query; ``base``, ``seed``, ``image`` (the query's image: for a caption
    query its caption's image, for an image query itself) and ``strata`` (e.g. query language;
    the estimate is then the macro mean over strata) label each. For two arms scored on the same
    units, pass the per-unit differences: the statistic is linear, so that is the paired
    comparison. Every run must score every stratum; at least two images are needed.
    """
    _check_confidence(confidence)
    return cells_interval(design_cells(values, base, seed, image, strata), confidence)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's (1979) step-down adjusted p-values of a family of tests.

    The i-th smallest p-value is multiplied by (m - i + 1) and the results made monotone;
    rejecting where the adjusted p < alpha keeps the family-wise error at alpha under any
    dependence between the tests, which the claims have (they share arms and queries).
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or len(p) == 0 or not ((p >= 0) & (p <= 1)).all():
        raise ValueError(f"holm needs a non-empty 1-D array of p-values in [0, 1], got {p}")
    return multipletests(p, method="holm")[1]


@dataclass(frozen=True)
class PermutationTest:
    """An observed ``statistic``, its permutation ``p_value`` and the mean of its null
    distribution over ``n_permutations`` relabellings."""

    statistic: float
    p_value: float
    null_mean: float
    n_permutations: int


@dataclass(frozen=True)
class LabelledRows:
    """Rows of values, one column per label (``labels``: a code per column, shared across the
    blocks of a ``stratum``): e.g. the log-ranks of queries' relevant items, one column per
    relevant language, for the queries with relevant items in exactly those languages."""

    values: np.ndarray  # [n, k]
    labels: np.ndarray  # [k] int codes
    stratum: int


def label_spread(blocks: Sequence[LabelledRows]) -> float:
    """Sum over strata and labels of ``S^2 / N``: ``S`` the sum of a label's row-centred values
    over every row of the stratum that has it, ``N`` their number.

    For one block of n rows and k labels this is n k times the variance of the column means.
    Pooling a stratum's blocks makes a label's effect add up across them: split into many small
    blocks (LAION queries grouped by the languages they have), a per-block variance would add
    each block's chance spread and lose the effect."""
    return float(_spread(_label_sums(blocks, [b.values for b in blocks]), _label_counts(blocks)))


def _label_index(blocks: Sequence[LabelledRows]) -> tuple[dict[tuple[int, int], int], int]:
    keys = sorted({(b.stratum, int(code)) for b in blocks for code in b.labels})
    return {key: i for i, key in enumerate(keys)}, len(keys)


def _label_counts(blocks: Sequence[LabelledRows]) -> np.ndarray:
    index, size = _label_index(blocks)
    counts = np.zeros(size)
    for block in blocks:
        for code in block.labels:
            counts[index[(block.stratum, int(code))]] += len(block.values)
    return counts


def _label_sums(blocks: Sequence[LabelledRows], values: Sequence[np.ndarray]) -> np.ndarray:
    """``S`` per (stratum, label) for each of a batch of value arrays (``[..., n, k]`` per block,
    leading axes shared): ``[..., labels]``."""
    index, size = _label_index(blocks)
    lead = values[0].shape[:-2]
    sums = np.zeros((*lead, size))
    for block, value in zip(blocks, values, strict=True):
        centred = value - value.mean(axis=-1, keepdims=True)
        columns = [index[(block.stratum, int(code))] for code in block.labels]
        sums[..., columns] += centred.sum(axis=-2)
    return sums


def _spread(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return (sums**2 / counts).sum(axis=-1)


def within_row_permutation_test(
    blocks: Sequence[LabelledRows],
    n_permutations: int = 1000,
    rng: np.random.Generator | int = 0,
) -> PermutationTest:
    """One-sided permutation test that the values of each row are exchangeable across its
    labels, on :func:`label_spread`.

    Under the null the labels of every row are a random order, so each row is shuffled on its
    own and the spread recomputed; the p-value counts the observed spread among the shuffled ones
    (``(1 + hits) / (1 + n_permutations)``, never 0). A spread no larger than chance gives p near
    1/2 or above.
    """
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be positive, got {n_permutations}")
    if not blocks:
        raise ValueError("no blocks to test: give at least one [n, k] block of rows")
    for block in blocks:
        values = block.values
        if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] < 2:
            raise ValueError(
                f"each block is an [n, k] matrix with n >= 1 rows and k >= 2 labels to permute, "
                f"got shape {values.shape}"
            )
        if len(block.labels) != values.shape[1] or len(set(block.labels)) != len(block.labels):
            raise ValueError(f"a block needs one distinct label per column, got {block.labels}")
        if not np.isfinite(values).all():
            raise ValueError("a block holds NaN or infinite values: every row needs every label")
    rng = np.random.default_rng(rng)
    counts = _label_counts(blocks)
    observed = label_spread(blocks)
    per_chunk = max(1, RESAMPLE_BLOCK // sum(b.values.size for b in blocks))
    null = np.empty(n_permutations)
    for start in range(0, n_permutations, per_chunk):
        size = min(per_chunk, n_permutations - start)
        shuffled = []
        for block in blocks:
            order = np.argsort(rng.random((size, *block.values.shape)), axis=2)
            full = np.broadcast_to(block.values, order.shape)
            shuffled.append(np.take_along_axis(full, order, axis=2))
        null[start : start + size] = _spread(_label_sums(blocks, shuffled), counts)
    threshold = observed - RELATIVE_TOLERANCE * max(observed, 1.0)
    hits = int(np.count_nonzero(null >= threshold))
    return PermutationTest(
        observed, (1 + hits) / (1 + n_permutations), float(null.mean()), n_permutations
    )
