"""Intervals and paired comparisons over per-query tables: each arm's mean with its interval,
paired differences between arms.

Per-query tables come from :mod:`xlr.analysis.bias` (rank distance, preferences) or
:func:`xlr.eval.metrics.per_query_values` (recall, mAP): one row per run (``base_seed``,
``seed``) and query, with the query's image (``query_image_id``). Every interval in the study's
figures, tables and claims is drawn from :func:`xlr.analysis.stats.crossed_mean_interval`
through here, so bases, seeds within a base and images are the units everywhere, and no run is
pooled as if its queries were new evidence. (Summaries that are not means of per-query values,
such as the KL divergence of the language shares or the fairness spreads, are shown as means
over runs without an interval.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, fields

import pandas as pd

from xlr.analysis.bias import QUERY_COLUMNS, TopLanguages, preference_per_query
from xlr.analysis.stats import Cells, Interval, cells_interval, design_cells
from xlr.arms import Arm
from xlr.eval.metrics import DEFAULT_KS, per_query_values
from xlr.eval.results import check_table

PAIR_KEYS: tuple[str, ...] = ("benchmark", "task", "query_idx", "base_seed", "seed")
ARM_SUMMARY_KEYS: tuple[str, ...] = ("arm", "benchmark", "task", "query_kind")
COMPARISON_KEYS: tuple[str, ...] = ("benchmark", "task", "query_kind")
SIDES: tuple[str, str] = ("value_a", "value_b")  # the two arms' values in paired units
DESIGN_COLUMNS: tuple[str, ...] = ("benchmark", "base_seed", "seed", "query_image_id", "value")
# what compare_arms returns: the comparison's keys, its two arms, the interval's fields
COMPARISON_COLUMNS: tuple[str, ...] = (
    *COMPARISON_KEYS,
    "arm_a",
    "arm_b",
    *(field.name for field in fields(Interval)),
)
_UNIT_KEYS = ["benchmark", "task", "query_kind", "query_lang", "query_idx", "query_image_id"]


def unit_cells(part: pd.DataFrame, strata: str | None) -> Cells:
    """The design cells (:func:`xlr.analysis.stats.design_cells`) of ``part``'s ``value`` (one
    row per run and query, :data:`DESIGN_COLUMNS`); ``strata`` names the column whose levels are
    macro-averaged. An image is a benchmark's image: two benchmarks' image ids name different
    images."""
    check_table(part, [*DESIGN_COLUMNS, *([strata] if strata else [])], "per-query")
    images = part.groupby(["benchmark", "query_image_id"], sort=False).ngroup()
    return design_cells(
        part["value"].to_numpy(),
        part["base_seed"].to_numpy(),
        part["seed"].to_numpy(),
        images.to_numpy(),  # NaN where the image is missing: refused
        part[strata].to_numpy() if strata else None,
    )


def _interval_of(part: pd.DataFrame, strata: str | None, confidence: float) -> dict[str, object]:
    """The interval of ``part``'s ``value`` over its :func:`unit_cells`, as a row's fields."""
    return asdict(cells_interval(unit_cells(part, strata), confidence))


def summarize_with_ci(
    ranks: pd.DataFrame,
    metric: str,
    by: Sequence[str] = ("arm", "benchmark", "task", "query_lang", "target_lang"),
    confidence: float = 0.95,
    strata: str | None = None,
    ks: Sequence[int] = DEFAULT_KS,
) -> pd.DataFrame:
    """Mean of a per-query metric of a ranks table with its interval over bases, seeds and
    images, per group.

    ``by`` are ranks columns or ``target_lang`` (the pool, ``all`` or ``seen``, for the
    multilingual tasks, else the relevant items' language); every run in a group enters its
    interval as a run, never as more queries (keep ``arm`` in ``by``: within a group a run is
    known by its base and seed). With ``strata`` (e.g. ``query_lang``) the estimate
    is the macro mean over strata. Groups keep missing seeds (the zero-shot arm).
    """
    extra = [c for c in [*by, *([strata] if strata else [])] if c in ranks.columns]
    values = per_query_values(ranks, metric, ks, extra=extra)
    rows = [
        dict(zip(by, group, strict=True))
        | {"metric": metric}
        | _interval_of(part, strata, confidence)
        for group, part in values.groupby(list(by), dropna=False, sort=False)
    ]
    return pd.DataFrame(rows)


def interval_by_arm(
    per_query: pd.DataFrame, confidence: float = 0.95, by: Sequence[str] = ()
) -> pd.DataFrame:
    """Each arm's macro mean over query languages with its interval, per benchmark, task and
    query kind and the columns ``by`` (e.g. the ``lang`` of
    :func:`xlr.analysis.bias.preference_per_query`'s tables): ``estimate, low, high``, the
    design counts and ``confidence``."""
    keys = [*ARM_SUMMARY_KEYS, *by]
    check_table(per_query, [*QUERY_COLUMNS, *by, "value"], "per-query")
    rows = [
        dict(zip(keys, values, strict=True)) | _interval_of(group, "query_lang", confidence)
        for values, group in per_query.groupby(keys, sort=True, dropna=False)
    ]
    return pd.DataFrame(rows)


def preference_intervals(tops: TopLanguages, confidence: float = 0.95) -> pd.DataFrame:
    """Each pool language's share of the queries' best-ranked relevant items
    (:func:`xlr.analysis.bias.language_preference`'s ``share``) with its interval over bases,
    seeds and images, per arm, benchmark, task, query kind and language (``lang``, with its
    ``uniform`` share): :func:`interval_by_arm` of each language's
    :func:`xlr.analysis.bias.preference_per_query` table in turn."""
    by = ("lang", "uniform")
    parts = [interval_by_arm(part, confidence, by) for part in preference_per_query(tops)]
    table = pd.concat(parts, ignore_index=True)
    return table.sort_values([*ARM_SUMMARY_KEYS, *by], ignore_index=True)


def paired_units(a: pd.DataFrame, b: pd.DataFrame, on: Sequence[str]) -> pd.DataFrame:
    """Rows of ``a`` joined to their partner in ``b`` on ``on`` and the query: ``value_a``,
    ``value_b``, one row per run of ``a`` (``base_seed``, ``seed``) and query.

    Pairing is by base, seed and query: leave ``seed`` out of ``on`` to pair every seed of an arm
    with a reference scored once per base (the zero-shot model). Runs are kept apart, so the
    pairs are the units every paired comparison of the study resamples. Every unit of each side
    must have its partner: a run or queries missing on one side (a training or evaluation that
    failed part way) would otherwise shrink the design unseen, and with it a base's weight.
    """
    if "base_seed" not in on:
        raise ValueError(f"pairs are matched within a base: put base_seed in on (got {list(on)})")
    keys = list(dict.fromkeys([*on, *_UNIT_KEYS]))
    carried = [c for c in ("base_seed", "seed") if c not in keys]
    try:
        joined = a[[*keys, *carried, "value"]].merge(
            b[[*keys, "value"]], on=keys, suffixes=("_a", "_b"), validate="many_to_one"
        )
    except pd.errors.MergeError as error:
        raise ValueError(
            f"the reference side has several rows per {keys}; join on more keys (e.g. seed)"
        ) from error
    if joined.empty:
        raise ValueError(f"the two sides share no query on {keys}; nothing to compare")
    _check_partners(a[keys], b[keys], joined[keys])
    return joined


def _check_partners(a: pd.DataFrame, b: pd.DataFrame, joined: pd.DataFrame) -> None:
    """Refuse a pairing that left units of either side without a partner, naming one."""
    for side, units in (("first", a), ("second", b)):
        units = units.drop_duplicates()
        found = units.merge(joined.drop_duplicates(), how="left", indicator=True)["_merge"]
        alone = units[found.to_numpy() == "left_only"]
        if len(alone):
            first = alone.iloc[0]
            where = ", ".join(f"{key} {first[key]}" for key in alone.columns)
            raise ValueError(
                f"{len(alone)} units of the {side} side have no partner on the other (e.g. "
                f"{where}): the two sides do not hold the same runs and queries, as after a "
                "training or evaluation that failed part way. Rerun notebook 04 (and the arms "
                "it names) so both are complete"
            )


def paired_cells(units: pd.DataFrame) -> tuple[Cells, Cells]:
    """The :func:`unit_cells` of the two sides of :func:`paired_units` (``value_a``,
    ``value_b``), macro-averaged over query languages: one design, two statistics."""
    a, b = (unit_cells(units.assign(value=units[side]), "query_lang") for side in SIDES)
    return a, b


def paired_comparison(
    a: pd.DataFrame, b: pd.DataFrame, on: Sequence[str], confidence: float = 0.95
) -> pd.DataFrame:
    """Interval and p-value of the macro mean difference ``a - b`` over their paired units
    (:func:`paired_units`), per benchmark, task and query kind.

    Both sides move together: the differences are taken per run and query, and their mean's
    interval covers the runs and images both share (``estimate, low, high, se``,
    ``training_variance, training_df, p_value``, the design counts); the p-value is the level at
    which that interval just reaches zero.
    """
    for side in (a, b):
        check_table(side, [*QUERY_COLUMNS, "value"], "per-query")
    units = paired_units(a, b, on)
    units["value"] = units["value_a"] - units["value_b"]
    rows = [
        dict(zip(COMPARISON_KEYS, keys, strict=True))
        | _interval_of(group, "query_lang", confidence)
        for keys, group in units.groupby(list(COMPARISON_KEYS), sort=True, dropna=False)
    ]
    return pd.DataFrame(rows)


def compare_arms(
    per_query: pd.DataFrame,
    arm_a: str,
    arm_b: str,
    on: Sequence[str] = PAIR_KEYS,
    *,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Paired comparison ``arm_a - arm_b`` on the same queries (:func:`paired_comparison`), per
    benchmark, task and query kind, with ``arm_a`` and ``arm_b`` columns.

    Rows are joined on ``on`` (default: same query, base and fine-tuning seed); to compare every
    seed of an arm against a reference scored once per base (the zero-shot model), leave
    ``seed`` out of ``on``.
    """
    check_table(per_query, [*QUERY_COLUMNS, "value"], "per-query")
    sides = [per_query[per_query["arm"] == arm] for arm in (arm_a, arm_b)]
    for arm, side in zip((arm_a, arm_b), sides, strict=True):
        if side.empty:
            raise ValueError(
                f"arm {arm!r} is not in the table (arms: {sorted(per_query['arm'].unique())})"
            )
    table = paired_comparison(*sides, on, confidence)
    table.insert(len(COMPARISON_KEYS), "arm_a", arm_a)
    table.insert(len(COMPARISON_KEYS) + 1, "arm_b", arm_b)
    return table


def against_reference(
    per_query: pd.DataFrame, reference: str, *, confidence: float = 0.95
) -> pd.DataFrame:
    """Every other arm minus ``reference``, a model scored once per base (the zero-shot one),
    paired by base and query (:func:`compare_arms` without ``seed``: each seed of an arm meets
    its base's reference), per benchmark, task and query kind; arms in name order. Empty, with
    its columns, where the table lacks the reference or any other arm (a study run without a
    zero-shot arm): nothing is compared, and a notebook shows the empty table rather than
    branching. ``reference`` must be an arm name (:meth:`~xlr.arms.Arm.parse`), so a misspelt
    one is an error, not an empty table."""
    Arm.parse(reference)
    present = set(per_query["arm"])
    arms = sorted(present - {reference}) if reference in present else []
    if not arms:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    if per_query.loc[per_query["arm"] == reference, "seed"].notna().any():
        raise ValueError(f"{reference!r} has fine-tuning seeds: pair it by seed (compare_arms)")
    on = [key for key in PAIR_KEYS if key != "seed"]
    frames = [compare_arms(per_query, arm, reference, on, confidence=confidence) for arm in arms]
    return pd.concat(frames, ignore_index=True)
