"""The positive control of the bias analysis (notebook 05): checks that the measures can see an
effect when one is planted in a model (on the validation split). The negative control (no
effect between seeds of one arm) is :mod:`xlr.analysis.negative_control`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from xlr.analysis.bias import rank_distance_per_query
from xlr.analysis.intervals import COMPARISON_KEYS, compare_arms
from xlr.analysis.tables import interval_text, markdown_table, save_table
from xlr.arms import ZEROSHOT
from xlr.eval.metrics import per_query_values
from xlr.eval.planted import PLANTED_FRACTION, planted_name
from xlr.eval.results import IMAGE, MULTILINGUAL, MULTILINGUAL_SEEN

# What a comparison of the positive control is for (its ``role``): at PLANTED_FRACTION the
# measures the claims read must see the bias; at a dose of 0 (nothing planted) they must show
# no difference either way; every other comparison is shown.
REQUIRED, ZERO_DOSE, SHOWN = "required", "zero dose", "shown"


def positive_control(
    ranks: pd.DataFrame,
    lang: str,
    fractions: Sequence[float],
    confidence: float = 0.95,
) -> pd.DataFrame:
    """A language bias planted in the zero-shot model must be seen by the measures, no
    difference may be seen where none was planted, and the doses between show how the
    measures respond to its size.

    ``ranks`` holds, for each base, the multilingual-pool ranks of the zero-shot model and of
    its copies with ``lang``'s caption embeddings moved along a fixed direction by each of
    ``fractions`` (:func:`xlr.eval.planted.control_doses`, filed by
    :func:`xlr.eval.runner.evaluate_controls` on the validation split;
    :mod:`xlr.eval.planted` says how). The bias is in the model, not in the ranks, so nothing
    forces the rank distance up: a measure blind to language would see no change. A comparison
    is ``seen`` when in every base the planted - real interval over its caption queries lies
    above zero for the rank distance and below it for mAP (the planted language's translations
    are found later), and ``differs`` when in any base it excludes zero
    (:func:`_judged_per_base` says why per base); ``estimate``, ``low`` and ``high`` are the
    comparison pooled over bases, with training noise, as the claims read it.

    ``role`` says what each comparison is for. At :data:`~xlr.eval.planted.PLANTED_FRACTION`,
    mAP in both pools and the rank distance in the seen pool (``multilingual_seen``: what the
    claims read) are ``required`` to be seen; at a dose of 0 (the real model's embeddings,
    whose ranks are the real model's bit for bit) the same comparisons are ``zero dose`` and no
    base's interval may exclude zero (``differs`` False): a difference there is
    an error of the comparison (copies ranked or paired wrongly), not a bias, and would make
    every dose's result suspect. Every other comparison is ``shown``: the
    other doses, which say how the measures respond to the size, and at any dose the
    all-language pool's rank distance (that pool holds languages absent from pretraining,
    ranked near chance, whose ranks set max - min, so a shift in one seen language can leave
    it unmoved: synthetic validation at dose 2, -7.0 [-27.3, +13.2], seen in 1 of 3 bases and
    the other way in 2) and image queries (when the planted language is the one an image's
    caption is usually found first in, moving it down can shrink an image query's distance).
    Returns the comparisons with ``fraction``, ``measure``, ``seen``, ``differs``,
    ``bases_seeing``, ``bases_opposite``, ``bases_judged`` (the control's bases), ``measured``
    and ``role``; :func:`check_positive_control` decides what a failure
    does.
    """
    doses = sorted(set(map(float, fractions)))
    if not doses:
        raise ValueError("the positive control needs at least one planted dose")
    tables = [
        _planted_comparisons(ranks, planted_name(lang, dose), confidence).assign(fraction=dose)
        for dose in doses
    ]
    table = pd.concat(tables, ignore_index=True)
    read_by_claims = (table["query_kind"] == "caption") & (
        (table["measure"] == "mAP") | (table["task"] == MULTILINGUAL_SEEN)
    )
    role = np.select(
        [read_by_claims & (table["fraction"] == PLANTED_FRACTION),
         read_by_claims & (table["fraction"] == 0)],
        [REQUIRED, ZERO_DOSE],
        SHOWN,
    )  # fmt: skip
    return table.assign(role=role)


def _planted_comparisons(ranks: pd.DataFrame, planted: str, confidence: float) -> pd.DataFrame:
    """Planted - real (``planted`` against the zero-shot model) rank distance and mAP of every
    benchmark, pool and query kind, pooled over bases, with ``seen`` (in every base the interval
    excludes zero in the direction a bias moves it), ``differs`` (in some base it excludes zero
    on either side; :func:`_judged_per_base`) and ``measured``; a required comparison no query
    could measure is a row too (:func:`_unmeasured`). Every base needs both models' ranks."""
    pools = ranks[
        ranks["task"].isin([MULTILINGUAL, MULTILINGUAL_SEEN])
        & ranks["arm"].isin([ZEROSHOT.name, planted])
    ]
    for base in sorted(ranks["base_seed"].unique()):
        missing = {ZEROSHOT.name, planted} - set(pools.loc[pools["base_seed"] == base, "arm"])
        if missing:
            raise ValueError(
                f"the positive control compares each base's zero-shot model with its planted "
                f"copy; base {base} has no multilingual ranks of "
                f"{', '.join(map(repr, sorted(missing)))}: run xlr.eval.runner.evaluate_controls"
            )
    bases = ranks["base_seed"].nunique()
    on = ["benchmark", "task", "query_idx", "base_seed"]
    is_image = np.where(pools["query_lang"] == IMAGE, IMAGE, "caption")
    average_precision = per_query_values(
        pools.assign(query_kind=is_image), "mAP", extra=["query_kind"]
    )
    measures = {
        "rank distance": (rank_distance_per_query(pools, partial=True), 1.0),
        "mAP": (average_precision, -1.0),
    }
    tables = []
    for measure, (per_query, direction) in measures.items():
        if per_query.empty:
            continue
        table = compare_arms(per_query, planted, ZEROSHOT.name, on, confidence=confidence)
        judged = _judged_per_base(per_query, planted, on, direction, confidence)
        table = table.merge(judged, on=list(COMPARISON_KEYS), how="left", validate="one_to_one")
        seen = table["bases_seeing"] == bases
        differs = table["bases_seeing"] + table["bases_opposite"] > 0
        table = table.assign(bases_judged=bases, seen=seen, differs=differs, measured=True)
        tables.append(table.assign(measure=measure))
    table = pd.concat([*tables, _unmeasured(pools, tables)], ignore_index=True)
    return table.astype({"seen": bool, "differs": bool, "measured": bool})


def _judged_per_base(
    per_query: pd.DataFrame, planted: str, on: Sequence[str], direction: float, confidence: float
) -> pd.DataFrame:
    """Each comparison judged in every base on its own: how many bases' planted - real interval
    over images excludes zero in ``direction`` (``bases_seeing``) and the other way
    (``bases_opposite``). A comparison is ``seen`` when every base of the control sees the bias
    (a base without the comparison does not), and ``differs`` when any base's interval excludes
    zero on either side.

    Why per base: the bias is planted in each base's model, and the question is whether the
    measure sees it there. The planted effect's spread between bases is not doubt about that
    (with three bases its 2 degrees of freedom would make the pooled interval's width, not the
    measure, decide), and one base (the real study) is judged the same way. A measure blind to
    language sees nothing in any base; one whose response changes sign between bases fails."""
    rows = []
    for _, part in per_query.groupby("base_seed", sort=True):
        table = compare_arms(part, planted, ZEROSHOT.name, on, confidence=confidence)
        above, below = table["low"] > 0, table["high"] < 0
        seen, opposite = (above, below) if direction > 0 else (below, above)
        rows.append(table[list(COMPARISON_KEYS)].assign(seen=seen, opposite=opposite))
    return (
        pd.concat(rows)
        .groupby(list(COMPARISON_KEYS), sort=False)
        .agg(bases_seeing=("seen", "sum"), bases_opposite=("opposite", "sum"))
        .reset_index()
    )


def _unmeasured(pools: pd.DataFrame, tables: list[pd.DataFrame]) -> pd.DataFrame:
    """A row (``measured``, ``seen`` and ``differs`` False) for each benchmark, pool and
    measure of caption queries that no query could measure: a validation split whose caption
    queries have one other language (LAION without translation: an image's own caption and ENG
    TEXT) has no caption rank distance, and a control that was not run must not read as
    passed."""
    wanted = (
        pools[["benchmark", "task"]]
        .drop_duplicates()
        .merge(pd.DataFrame({"measure": ["rank distance", "mAP"]}), how="cross")
    )
    done = pd.concat(tables)  # mAP is measured wherever there are queries
    done = done.loc[done["query_kind"] == "caption", ["benchmark", "task", "measure"]]
    missing = wanted.merge(done, how="left", indicator=True)
    missing = missing[missing["_merge"] == "left_only"].drop(columns="_merge")
    return missing.assign(query_kind="caption", seen=False, differs=False, measured=False)


def _passed(table: pd.DataFrame) -> pd.Series:
    """Whether each comparison did what its ``role`` asks: a required one was seen, a zero-dose
    one shows no difference (an unmeasured zero-dose row passes: its required row fails
    already), a shown one always passes."""
    return np.select(
        [table["role"] == REQUIRED, table["role"] == ZERO_DOSE],
        [table["seen"], ~table["differs"]],
        True,
    ).astype(bool)


def check_positive_control(table: pd.DataFrame, required: bool) -> pd.DataFrame:
    """``table`` (:func:`positive_control`), after stopping the study if ``required``
    (``report.require_controls``) and a required comparison did not see the bias, or a
    zero-dose one found a difference where nothing was planted: a bias measure that cannot see a
    planted bias cannot be trusted with a real one, nor a comparison that differs between a
    model and itself. Not required (the
    smoke study: one base, a small validation set, too few images to see a planted shift of the
    rank distance), a failure is printed and stays in the summary's ``result`` column."""
    failed = table[~_passed(table)]
    missing = [
        f"  no comparison at {what}, {dose:g}x (re-run notebook 04: "
        "xlr.eval.runner.evaluate_controls plants it)"
        for what, dose in (("the judged dose", PLANTED_FRACTION), ("the zero dose", 0.0))
        if not (table["fraction"] == dose).any()
    ]
    if failed.empty and not missing:
        return table
    lines = [
        f"  {row.benchmark}, {row.pool}, {row.measure}, dose {row.dose}: {row.difference}"
        f"{f', {row.bases}' if row.bases else ''}"
        f"{' (a difference where nothing was planted)' if row.role == ZERO_DOSE else ''}"
        for row in positive_control_summary(failed).itertuples()
    ]
    message = "\n".join(
        [
            "positive control failed: the planted bias went unseen or could not be measured "
            "(mAP must fall in both pools, the seen pool's rank distance rise), or a difference "
            "was found at a dose of 0; planted - real, or why it was not measured:",
            *lines,
            *missing,
        ]
    )
    if required:
        raise AssertionError(message + "\nreport.require_controls is set: the study stops")
    print(message + "\n(report.require_controls is not set: reported, not enforced)")
    return table


UNMEASURED = (
    "no caption query has relevant items in two languages (translate the validation captions: "
    "data.laion.translate)"
)
POOLS: dict[str, str] = {MULTILINGUAL_SEEN: "seen languages", MULTILINGUAL: "all languages"}


def positive_control_summary(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`positive_control`'s judged comparisons as a reader's table: those at
    :data:`~xlr.eval.planted.PLANTED_FRACTION` and the zero-dose ones, with benchmark, pool,
    queries, measure, dose, what the planted bias should do to the measure, the planted - real
    difference with its interval, the ``role`` and a ``result``: ``pass``/``FAIL`` where the
    role asks for something (seen at the judged dose, no difference at dose 0),
    ``seen``/``not seen`` where the comparison is only shown, ``n/a`` where no query could
    measure it (a required ``n/a`` fails: :func:`check_positive_control`). Required rows first,
    then the zero-dose ones; the seen pool before the all-language one.
    :func:`dose_response_table` shows every dose."""
    judged = table[(table["fraction"] == PLANTED_FRACTION) | (table["role"] == ZERO_DOSE)]
    rows = _readable(judged).assign(
        order=judged["role"].map({REQUIRED: 0, ZERO_DOSE: 1, SHOWN: 2}),
        passed=_passed(judged),
    )
    rows = rows.sort_values(
        ["order", "benchmark", "query_kind", "task", "measure"],
        ascending=[True, True, True, False, True],
        kind="stable",
    )
    shown = np.where(rows["seen"], "seen", "not seen")
    return pd.DataFrame(
        {
            "benchmark": rows["benchmark"],
            "pool": rows["pool"],
            "queries": rows["query_kind"],
            "measure": rows["measure"],
            "dose": rows["dose"],
            "if seen, it": rows["expected"],
            "difference": rows["difference"],
            "p_value": rows["p_value"].map(lambda p: "" if pd.isna(p) else f"{p:.2g}"),
            "bases": rows["bases"],
            "role": rows["role"],
            "result": np.where(
                ~rows["measured"],
                "n/a",
                np.where(rows["role"] == SHOWN, shown, np.where(rows["passed"], "pass", "FAIL")),
            ),
        }
    ).reset_index(drop=True)


def _pool_names(tasks: pd.Series) -> pd.Series:
    """A reader's name for each multilingual pool (:data:`POOLS`), else the task."""
    return tasks.map(POOLS).fillna(tasks)


def _readable(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its pool named, the dose as text, what a seen bias does to the measure, the
    difference as text (``UNMEASURED`` where no query measured it) and how many bases saw the
    bias (at the zero dose: found a difference) as text."""
    digits = np.where(table["measure"] == "mAP", 3, 1)
    bases = [
        "" if not row.measured
        else f"differs in {row.bases_seeing + row.bases_opposite:.0f} of {row.bases_judged:.0f}"
        if row.role == ZERO_DOSE
        else f"seen in {row.bases_seeing:.0f} of {row.bases_judged:.0f}"
        + (f", the other way in {row.bases_opposite:.0f}" if row.bases_opposite else "")
        for row in table.itertuples()
    ]  # fmt: skip
    return table.assign(
        bases=pd.Series(bases, index=table.index, dtype=object),
        pool=_pool_names(table["task"]),
        dose=table["fraction"].map(lambda f: f"{f:g}x"),
        expected=np.where(table["measure"] == "mAP", "falls", "rises"),
        difference=interval_text(table, pd.Series(digits, table.index), signed=True).where(
            table["measured"], UNMEASURED
        ),
    )


def dose_response_table(table: pd.DataFrame) -> pd.DataFrame:
    """Every comparison of :func:`positive_control` as one row per benchmark, pool, query kind
    and measure, with the planted - real difference at each dose in a column (``0x``, ``0.5x``,
    ...): how the measures respond to the size of the bias. mAP should fall further as the dose
    grows; the rank distance may first fall, since moving the language a query finds first to
    the middle narrows max - min, and rise once the language passes the query's extremes."""
    rows = _readable(table).sort_values(
        ["benchmark", "query_kind", "task", "measure", "fraction"],
        ascending=[True, True, False, True, True],
        kind="stable",
    )
    wide = rows.pivot_table(
        index=["benchmark", "pool", "query_kind", "measure"],
        columns="dose",
        values="difference",
        aggfunc="first",
        sort=False,
    )
    doses = [f"{f:g}x" for f in sorted(table["fraction"].unique())]
    return (
        wide[doses]
        .rename_axis(columns=None)
        .reset_index()
        .rename(columns={"query_kind": "queries"})
    )


def dose_response_points(table: pd.DataFrame) -> pd.DataFrame:
    """The measured comparisons of :func:`positive_control` with the pool named and the query
    kind as ``queries``, as :func:`xlr.analysis.check_figures.dose_response_figure` draws them."""
    measured = table[table["measured"]]
    return measured.assign(pool=_pool_names(measured["task"]), queries=measured["query_kind"]).drop(
        columns=["task", "query_kind"]
    )


# The stem of the positive control's table under a report's tables/: notebook 05 writes it
# (save_positive_control), the landing page reads it (xlr.report_banner.banner).
POSITIVE_CONTROL_TABLE = "positive_control"


def save_positive_control(table: pd.DataFrame, directory: str | os.PathLike[str]) -> list[Path]:
    """:func:`positive_control_summary` of ``table`` saved as ``directory/``
    :data:`POSITIVE_CONTROL_TABLE` ``.csv`` and ``.md`` (the report's ``tables/``): the landing
    page lists it with the other tables and warns when a judged row failed or a required one
    read ``n/a`` (:func:`positive_control_shortfalls`), since a run without
    ``report.require_controls`` goes on past such a row and only notebook 05 would say so.
    Returns the paths."""
    summary = positive_control_summary(table)
    return save_table(summary, directory, POSITIVE_CONTROL_TABLE, markdown_table(summary))


def positive_control_shortfalls(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows of a :func:`positive_control_summary` (as saved: every cell text) that did not
    do what their role asks: a required row that reads ``FAIL`` (the planted bias went unseen)
    or ``n/a`` (not measured), a zero-dose row that reads ``FAIL`` (a difference where nothing
    was planted)."""
    required = (summary["role"] == REQUIRED) & (summary["result"] != "pass")
    zero_dose = (summary["role"] == ZERO_DOSE) & (summary["result"] == "FAIL")
    return summary[required | zero_dose]
