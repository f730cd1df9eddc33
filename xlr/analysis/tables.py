"""The study's tables (notebook 06) as CSV for analysis and Markdown for the report and the
paper: the headline table (each arm's main measures with their intervals, beside what it cost
to train) and the claims table's Markdown form.

The measures and their conventions are the claims table's (:mod:`xlr.analysis.claims`):
per-query values from the saved ranks, a macro mean over query languages averaged over runs, and
an interval whose units are bases, seeds within a base and images
(:func:`xlr.analysis.intervals.interval_by_arm`). So every effect in the claims table is a
difference of two rows here, up to the pairing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from xlr.analysis.claims import MIN_IMAGES, RELATIVE_MEASURES
from xlr.analysis.figure_style import arm_order, sort_arms
from xlr.analysis.intervals import interval_by_arm
from xlr.analysis.measures import STUDY_MEASURES, LangGroup, Measure, measure_rows
from xlr.arms import SWEEP_FAMILIES, ZEROSHOT, Arm, arm_catalogue
from xlr.config import Params
from xlr.io import atomic_write_text

COST_COLUMNS: tuple[str, ...] = ("trainable_params", "examples", "wall_s")


def per_benchmark(frame: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame, str]]:
    """Each benchmark's rows of ``frame`` with the suffix its figure and table names take:
    ``_<benchmark>`` when ``frame`` holds several benchmarks, empty when it holds one, so a
    one-benchmark study keeps its file names. Benchmarks are never pooled: their images, captions
    and languages differ, so a mean across them mixes incomparable numbers."""
    if "benchmark" not in frame.columns:
        raise ValueError(f"table lacks a benchmark column (its columns: {list(frame.columns)})")
    several = frame["benchmark"].nunique() > 1
    for benchmark, part in frame.groupby("benchmark", sort=True):
        yield str(benchmark), part, f"_{benchmark}" if several else ""


def single_benchmark(frame: pd.DataFrame, what: str) -> None:
    """Raise ``ValueError`` when ``frame`` mixes benchmarks: ``what`` would pool them."""
    if "benchmark" in frame.columns and frame["benchmark"].nunique() > 1:
        raise ValueError(
            f"{what} got several benchmarks {sorted(frame['benchmark'].unique())}; pass one at a "
            "time (xlr.analysis.tables.per_benchmark)"
        )


def cost_table(summaries: pd.DataFrame) -> pd.DataFrame:
    """Each evaluated arm's mean training cost over its bases and seeds (:data:`COST_COLUMNS`),
    indexed by arm, from :func:`xlr.train.study.arm_summaries`."""
    missing = {"name", *COST_COLUMNS} - set(summaries.columns)
    if missing:
        raise ValueError(f"arm summaries lack columns {sorted(missing)}; train the arms first")
    return summaries.groupby("name")[list(COST_COLUMNS)].mean().rename_axis("arm")


def trains_nothing(arms: pd.Series | pd.Index) -> np.ndarray:
    """Which ``arms`` train no parameter (the zero-shot model): the only arms whose missing cost
    summary means 0. A trained arm without one is a summary missing, not a free arm."""

    def untrained(name: str) -> bool:
        try:
            return not Arm.parse(name).is_trained
        except ValueError:  # a label that is no arm name: its cost is unknown
            return False

    return np.array([untrained(name) for name in arms], dtype=bool)


def with_cost(per_arm: pd.DataFrame, cost: pd.DataFrame) -> pd.DataFrame:
    """``per_arm`` (one row per arm) with its training cost beside it: the zero-shot model
    trains nothing (0 parameters, no wall time); a trained arm without a summary keeps NaN,
    which :func:`xlr.analysis.plots.accuracy_vs_params_figure` refuses."""
    merged = per_arm.merge(cost, left_on="arm", right_index=True, how="left")
    free = trains_nothing(merged["arm"]) & merged["trainable_params"].isna().to_numpy()
    merged.loc[free, "trainable_params"] = 0
    return merged


def alpha_sweep_table(per_arm: pd.DataFrame, params: Params) -> tuple[pd.DataFrame, float | None]:
    """The arms of the hybrid sweep (mono, cross, hybrid at each alpha) with their place on the
    alpha axis and what trains, and the zero-shot level (None when it was not evaluated).

    ``per_arm``: one row per arm with ``estimate, low, high`` (e.g. multilingual mAP,
    :func:`xlr.analysis.intervals.interval_by_arm` of its per-query values), of one benchmark.
    """
    single_benchmark(per_arm, "alpha_sweep_table")
    catalogue = arm_catalogue(params)
    sweep = per_arm.merge(catalogue, on="arm")
    sweep = sweep[sweep["family"].isin(SWEEP_FAMILIES)].reset_index(drop=True)
    zero = per_arm.loc[per_arm["arm"] == ZEROSHOT.name, "estimate"]
    return sweep, float(zero.iloc[0]) if len(zero) else None


def measure_label(measure: str, langs: str) -> str:
    """A measure's column name: ``t2i R@1 (seen)``."""
    return f"{measure} ({langs})"


def headline_table(
    measures: pd.DataFrame,
    confidence: float = 0.95,
    shown: Sequence[tuple[Measure, LangGroup]] = STUDY_MEASURES,
) -> pd.DataFrame:
    """One row per arm and measure of caption queries: ``estimate, low, high`` and the design
    behind the interval (``n_bases, n_runs, n_images``), from a
    :func:`xlr.analysis.measures.query_measures` table of one benchmark.

    Retrieval measures are fractions in [0, 1]; rank distance is in ranks (lower = less
    language bias). The multilingual measures' ``langs`` name the pool they were ranked in
    (``all``: every study language, ``seen``: the seen languages only). Arms are in the study's
    order (:func:`xlr.analysis.figure_style.arm_order`: zero-shot first). One benchmark: its rows
    carry no benchmark, so several would repeat an arm's measure. A measure of ``shown`` the
    benchmark cannot give has no rows.
    """
    single_benchmark(measures, "headline_table")
    parts = [
        interval_by_arm(per_query, confidence).assign(measure=measure, langs=group)
        for measure, group in shown
        if not (per_query := measure_rows(measures, measure, group)).empty
    ]
    if not parts:
        raise ValueError(
            f"{sorted(set(measures['benchmark']))}: none of the headline measures "
            f"{[measure_label(m, g) for m, g in shown]} has a caption query in these measures"
        )
    table = sort_arms(pd.concat(parts, ignore_index=True))
    columns = ["arm", "measure", "langs", "estimate", "low", "high"]
    columns += ["n_bases", "n_runs", "n_images", "confidence"]
    return table[columns].reset_index(drop=True)


def headline_wide(table: pd.DataFrame, cost: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per arm, one column per measure holding ``estimate [low, high]`` as text, then
    ``cost`` (indexed by arm, :data:`COST_COLUMNS`) when given: the Markdown form.

    Retrieval measures get three decimals, rank distance one; the zero-shot model (absent from
    ``cost``: it trains nothing) shows 0 parameters and no wall time, a trained arm absent from
    it "no summary".
    """
    missing = {"arm", "measure", "langs", "estimate", "low", "high"} - set(table.columns)
    if missing:
        raise ValueError(f"headline table lacks columns {sorted(missing)}")
    decimals = table["measure"].map(lambda m: 1 if m == "rank distance" else 3)
    cells = table.assign(
        column=[measure_label(m, g) for m, g in zip(table["measure"], table["langs"], strict=True)],
        text=interval_text(table, decimals),
    )
    wide = cells.pivot(index="arm", columns="column", values="text")
    wide = wide.reindex(index=pd.unique(table["arm"]), columns=pd.unique(cells["column"]))
    if cost is not None:
        absent = set(COST_COLUMNS) - set(cost.columns)
        if absent:
            raise ValueError(f"cost table lacks columns {sorted(absent)}")
        spent = cost.reindex(wide.index)
        free = pd.Series(trains_nothing(wide.index), index=wide.index)
        for column, label in (
            ("trainable_params", "trainable params"),
            ("examples", "examples seen"),
        ):
            counts = spent[column].mask(free & spent[column].isna(), 0)
            wide[label] = counts.map(lambda n: "no summary" if pd.isna(n) else f"{n:,.0f}")
        wide["train wall (s)"] = spent["wall_s"].map(lambda s: "" if pd.isna(s) else f"{s:.1f}")
    return wide.rename_axis(index="arm", columns=None).reset_index()


NOT_LANGUAGES: tuple[str, ...] = ("image", "macro")  # image queries, the macro mean: after them


def language_order(
    langs: Sequence[str], seen: Sequence[str], heldout: Sequence[str] = ()
) -> list[str]:
    """The distinct ``langs`` as tables show them: seen, then held out, then any other language
    (each alphabetical), then :data:`NOT_LANGUAGES` rows (``image``, ``macro``) last."""
    distinct = list(dict.fromkeys(langs))

    def group(lang: str) -> int:
        if lang in NOT_LANGUAGES:
            return 3 + NOT_LANGUAGES.index(lang)
        return 0 if lang in seen else 1 if lang in heldout else 2

    return sorted(distinct, key=lambda lang: (group(lang), lang))


def by_language(
    frame: pd.DataFrame,
    seen: Sequence[str],
    heldout: Sequence[str] = (),
    levels: Sequence[str] = ("query_lang",),
) -> pd.DataFrame:
    """``frame`` with the rows of its index ``levels`` in :func:`language_order` (other index
    levels keep their order and come first) and, when its columns are arms, the arms in the
    study's order (zero-shot first)."""
    langs = [v for level in levels for v in frame.index.get_level_values(level)]
    rank = {lang: i for i, lang in enumerate(language_order(langs, seen, heldout))}

    def position(index: pd.Index) -> pd.Index:
        if index.name in levels:
            return index.map(rank.get)
        first = {value: i for i, value in enumerate(pd.unique(index))}  # as they came
        return index.map(first.get)

    frame = frame.sort_index(level=list(frame.index.names), key=position, sort_remaining=False)
    if frame.columns.name == "arm":
        frame = frame[arm_order(frame.columns)]
    return frame


def interval_text(
    table: pd.DataFrame, digits: int | pd.Series = 3, signed: bool = False
) -> pd.Series:
    """Each row's ``estimate [low, high]`` as text, ``digits`` decimals (one per row if a
    Series): how tables show an estimate with its interval; ``signed`` writes every sign, as a
    difference reads best (``+0.012 [-0.003, +0.027]``)."""
    places = digits if isinstance(digits, pd.Series) else pd.Series(digits, table.index)
    sign = "+" if signed else ""
    return pd.Series(
        [
            f"{e:{sign}.{d}f} [{lo:{sign}.{d}f}, {hi:{sign}.{d}f}]"
            for e, lo, hi, d in zip(
                table["estimate"], table["low"], table["high"], places, strict=True
            )
        ],
        index=table.index,
    )


def interval_wide(table: pd.DataFrame, index: str, columns: str, digits: int = 3) -> pd.DataFrame:
    """One ``estimate [low, high]`` cell per ``index`` x ``columns`` pair of an interval table;
    arms (as rows or columns) in the study's order, zero-shot first."""
    cells = table.assign(interval=interval_text(table, digits))
    wide = cells.pivot(index=index, columns=columns, values="interval")
    if index == "arm":
        wide = wide.reindex(arm_order(wide.index))
    if columns == "arm":
        wide = wide[arm_order(wide.columns)]
    return wide.rename_axis(columns=None)


def seen_heldout_table(
    results: pd.DataFrame, metric: str = "R@1", tasks: Sequence[str] = ("t2i", "i2t")
) -> pd.DataFrame:
    """Each arm's ``metric`` averaged over the runs and the languages of each group, seen and
    held out (notebook 04), per benchmark and task: the retrieval table's ``lang_group`` rows,
    each language's value weighing alike (every run has one row per language and metric)."""
    rows = results[(results["metric"] == metric) & results["task"].isin(tasks)]
    keys = ["benchmark", "task", "arm"]
    split = rows.groupby([*keys, "lang_group"])["value"].mean().unstack("lang_group")
    split = sort_arms(split.reset_index()).sort_values(["benchmark", "task"], kind="stable")
    names = {"seen": "seen languages", "heldout": "held-out languages"}
    split = split.set_index(keys).reindex(columns=list(names)).rename(columns=names)
    return split.rename_axis(columns=None)


def pool_tables(
    results: pd.DataFrame,
    tasks: Sequence[str],
    seen: Sequence[str],
    heldout: Sequence[str],
    metric: str = "mAP",
) -> Iterator[tuple[str, pd.DataFrame]]:
    """Per benchmark, ``metric`` of the multilingual pools ``tasks`` (notebook 04): a row per
    pool (``target_lang``), language group (seen, held out, and the pool's macro over all its
    languages, ``mixed``) and query language, in :func:`language_order`; a column per arm."""
    part = results[results["task"].isin(tasks) & (results["metric"] == metric)]
    for benchmark, rows, _ in per_benchmark(part):
        index = ["target_lang", "lang_group", "query_lang"]
        table = rows.pivot_table(index=index, columns="arm", values="value")
        table = table.reindex(["seen", "heldout", "mixed"], level="lang_group")
        yield benchmark, by_language(table, seen, heldout)


def rank_distance_tables(
    per_query: dict[str, pd.DataFrame], confidence: float
) -> tuple[dict[str, pd.DataFrame], list[tuple[int, int]]]:
    """Per benchmark, one table of each arm's rank distance interval (notebook 05) with a column
    per pool (the keys of ``per_query``, each a :func:`xlr.analysis.bias.rank_distance_per_query`
    table) and query kind; and the designs the intervals read, as (runs, images) pairs."""
    parts: dict[str, list[pd.DataFrame]] = {}
    designs: set[tuple[int, int]] = set()
    for name, table in per_query.items():
        intervals = interval_by_arm(table, confidence)
        designs |= set(zip(intervals["n_runs"], intervals["n_images"], strict=True))
        for benchmark, part, _ in per_benchmark(intervals):
            wide = interval_wide(part, "arm", "query_kind", digits=1)
            parts.setdefault(benchmark, []).append(
                wide.rename(columns=lambda kind, name=name: f"{name}: {kind} queries")
            )
    tables = {benchmark: pd.concat(wides, axis=1) for benchmark, wides in parts.items()}
    return tables, sorted((int(r), int(i)) for r, i in designs)


def mean_by_arm(
    frame: pd.DataFrame,
    values: str | Sequence[str] = "value",
    columns: str | None = None,
    name: str | None = None,
) -> pd.DataFrame:
    """The mean of ``values`` over each arm's runs (bases and seeds; per benchmark when there
    are several), one row per arm in the study's order, spread over the levels of ``columns``
    when given (e.g. ``query_kind``); a single value column is called ``name``.

    Averaging the runs keeps the run keys out of the table (the zero-shot model's missing seed
    would print as ``<NA>``) and leaves one readable row per arm.
    """
    keys = (
        ["benchmark"] if "benchmark" in frame.columns and frame["benchmark"].nunique() > 1 else []
    )
    keys += ["arm"] + ([columns] if columns else [])
    table = frame.groupby(keys, dropna=False)[values].mean()
    if columns:
        table = table.unstack(columns)
    if isinstance(table, pd.Series):
        table = table.to_frame(name or table.name)
    table.columns.name = None
    order = {arm: i for i, arm in enumerate(arm_order(frame["arm"]))}
    return table.sort_index(key=lambda index: index.map(order) if index.name == "arm" else index)


def blank_missing(frame: pd.DataFrame, mark: str = "–") -> pd.DataFrame:
    """``frame`` with its missing cells (``NaN``, ``<NA>``, ``None``) shown as ``mark``: a cell
    that was not measured, which pandas would print as a bare ``<NA>``."""
    return frame.astype(object).where(frame.notna(), mark)


def markdown_table(frame: pd.DataFrame) -> str:
    """``frame`` as a GitHub Markdown table (pandas + tabulate), ending in a newline.

    Cells are printed as given (tabulate's number parsing would drop the ``+`` of a signed
    effect), and ``|`` in cells is escaped so an arm name or caption cannot split a row.
    """
    escaped = frame.map(lambda v: v.replace("|", r"\|") if isinstance(v, str) else v)
    return escaped.to_markdown(index=False, tablefmt="github", disable_numparse=True) + "\n"


ONE_RUN = "none: one run"  # the interval cell of a claim whose arms ran once (one base, seed)


CLAIMS_COLUMNS: dict[str, str] = {
    "claim": "the statement tested, about arm a against arm b",
    "family": "the question the claim belongs to, with how many of its rows ran (m, each claim on "
    "each benchmark): Holm and the interval level count those",
    "measure": "t2i R@1 or multilingual mAP (fractions) or rank distance (ranks, lower = less "
    "language bias), in the languages or ranked pool in brackets",
    "min effect": "the smallest effect worth a verdict (report.min_effect; for rank distance a "
    "fraction of arm b's level, as its effect is)",
    "effect": "arm a minus arm b, paired by base, seed and query (by base and query against the "
    "zero-shot model): macro mean over query languages, averaged over bases and seeds; for rank "
    "distance the relative change a / b - 1 of those means",
    "interval": "the effect's interval over bases, seeds within a base and images (an image's "
    "queries move together), never queries: each part's variance times its own t quantile; for "
    "rank distance Fieller's interval of a / b less 1, which holds b's noise too (unbounded "
    "where b's level is not told from zero at that level; the verdict still stands, below); "
    f"'{ONE_RUN}' where the arms ran once, whose training noise no interval can hold (nor "
    "level or p)",
    "level": "each interval's level, 1 - alpha/m for the m rows of its family that ran "
    "(Bonferroni: the family-wise level is 1 - alpha, eval.confidence)",
    "p": "two-sided p-value of a zero effect: the level at which the interval just reaches zero "
    "(for rank distance, of a - b = 0, which its verdict's relative rule does not test)",
    "p (Holm)": "the p-value Holm-adjusted within the claim's family (a supported rank-distance "
    "claim may show one above alpha: read its verdict)",
    "bases agreeing": "of the bases, how many show the claimed sign on their own (shown, not "
    "part of the verdict)",
    "runs agreeing": "of the runs (base and seed), how many show the claimed sign (shown, not "
    "part of the verdict)",
    "verdict": "supported: interval beyond +min in the claimed direction; contradicted: beyond "
    "min the other way; equivalent: inside +-min; inconclusive otherwise, with one run or with "
    f"fewer than {MIN_IMAGES} images. For rank distance the tests of a - (1 +- min) b "
    "themselves: the same verdict where the interval is bounded, and one where it is not "
    "(rank distance is positive, so a below 0.9 b is a / b below 0.9)",
}  # one line per column of the claims table, for notebook 06 and index.html


def claims_columns_markdown() -> str:
    """The claims table's columns explained (:data:`CLAIMS_COLUMNS`), one Markdown bullet each."""
    return "".join(f"- **{name}**: {text}\n" for name, text in CLAIMS_COLUMNS.items())


def _claim_cells(row: dict) -> dict[str, str]:
    """The numbers of a claim that ran, as text: three decimals, or percentages with one for a
    relative effect (rank distance). With one run the interval and p-values are left out: over
    that run's images alone they would leave out training noise and look like a finding beside
    the verdict (inconclusive); the CSV keeps them, with ``n_runs``."""
    number = "{:+.1%}" if row["measure"] in RELATIVE_MEASURES else "{:+.3f}"
    bounded = np.isfinite([row["low"], row["high"]]).all()
    interval = f"[{number.format(row['low'])}, {number.format(row['high'])}]"
    one_run = int(row["n_runs"]) == 1
    return {
        "min effect": number.format(row["min_effect"]).lstrip("+"),
        "effect": number.format(row["effect"]),
        "interval": ONE_RUN if one_run else interval if bounded else "unbounded",
        "level": "" if one_run else f"{row['interval_confidence']:.1%}",
        "p": "" if one_run else f"{row['p_value']:.3g}",
        "p (Holm)": "" if one_run else f"{row['p_holm']:.3g}",
        "bases agreeing": row["bases_agreeing"],
        "runs agreeing": row["runs_agreeing"],
    }


def claims_markdown(table: pd.DataFrame) -> str:
    """The claims table (:func:`xlr.analysis.claims.evaluate_claims`) as Markdown, for the report
    and the closing note, in the columns of :data:`CLAIMS_COLUMNS`: claims whose arms did not run
    keep their verdict and blank numbers, and their family counts only the claims that ran. With
    several benchmarks a claim has a row on each, its measure naming the benchmark."""
    ran = table["p_value"].notna() if "p_value" in table.columns else pd.Series(False, table.index)
    sizes = table[ran].groupby("family").size()
    rows = []
    for row, measured in zip(table.to_dict("records"), ran, strict=True):
        cells = _claim_cells(row) if measured else {}
        family = f"{row['family']} (m = {sizes.get(row['family'], 0)})"
        label = measure_label(row["measure"], row["langs"])
        if table["benchmark"].nunique() > 1:
            label = f"{label}, {row['benchmark']}"
        rows.append(
            {"claim": row["statement"], "family": family, "measure": label, **cells,
             "verdict": row["verdict"]}
        )  # fmt: skip
    return markdown_table(pd.DataFrame(rows, columns=list(CLAIMS_COLUMNS)).fillna(""))


def save_table(
    numbers: pd.DataFrame, directory: str | os.PathLike[str], name: str, markdown: str
) -> list[Path]:
    """Write ``numbers`` as ``directory/name.csv`` (for analysis) and ``markdown`` as
    ``name.md`` (for the report, which renders it), each atomically. Returns the paths."""
    if not name or Path(name).name != name:
        raise ValueError(f"table name must be a plain file stem, got {name!r}")
    directory = Path(directory)
    return [
        atomic_write_text(directory / f"{name}.csv", numbers.to_csv(index=False)),
        atomic_write_text(directory / f"{name}.md", markdown),
    ]
