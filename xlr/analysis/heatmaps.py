"""Language x language heatmaps of the cross-lingual task (notebooks 04 and 06): one arm's
query x target matrix, or one panel per arm on a single colour scale.

Languages are grouped seen first, then held out, with a line between the groups, so the
transfer to languages the arms never trained on reads at a glance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from xlr.analysis.figure_style import arm_order, check_figure_table
from xlr.analysis.intervals import compare_arms
from xlr.analysis.tables import language_order, single_benchmark
from xlr.eval.metrics import per_query_values
from xlr.eval.results import check_table


def pair_matrix(
    results: pd.DataFrame, arm: str, metric: str = "R@1", benchmark: str | None = None
) -> pd.DataFrame:
    """An arm's ``xt2t`` ``metric`` as a query-language x target-language matrix.

    Each cell is the mean over the arm's runs (fine-tuning seeds and base seeds). Rows and
    columns are the same sorted languages, so the diagonal (no same-language pairs) shows blank.
    """
    check_table(
        results,
        ["arm", "task", "benchmark", "query_lang", "target_lang", "metric", "value"],
        "results",
    )
    rows = results[
        (results["task"] == "xt2t") & (results["arm"] == arm) & (results["metric"] == metric)
    ]
    if benchmark is not None:
        rows = rows[rows["benchmark"] == benchmark]
    if rows.empty:
        raise ValueError(
            f"no xt2t rows of arm {arm!r}, metric {metric!r}"
            + (f", benchmark {benchmark!r}" if benchmark else "")
            + f" in the results table (its arms: {sorted(results['arm'].unique())})"
        )
    check_figure_table(rows, ["query_lang", "target_lang", "value"], f"xt2t {metric} of {arm}")
    matrix = rows.pivot_table(
        index="query_lang", columns="target_lang", values="value", aggfunc="mean"
    )
    langs = sorted(set(matrix.index) | set(matrix.columns))
    matrix = matrix.reindex(index=langs, columns=langs)
    matrix.index.name, matrix.columns.name = "query language", "target language"
    return matrix


def pair_difference_unclear(
    ranks: pd.DataFrame, arm_a: str, arm_b: str, metric: str = "R@1", confidence: float = 0.95
) -> pd.DataFrame:
    """Per query x target language of one benchmark's ``xt2t`` ranks, whether the paired
    interval of ``arm_a - arm_b`` (:func:`xlr.analysis.intervals.compare_arms`: bases, seeds and
    images resampled; seed left out of the pairing, so a reference scored once per base, the
    zero-shot model, pairs with every seed) contains 0: the cells a difference heatmap must
    not present as a gain or a loss. Laid out as :func:`pair_matrix`."""
    single_benchmark(ranks, "pair_difference_unclear")
    rows = ranks[(ranks["task"] == "xt2t") & ranks["arm"].isin([arm_a, arm_b])]
    per_query = per_query_values(rows, metric).assign(query_kind="caption")
    on = ["benchmark", "task", "query_idx", "base_seed", "target_lang"]
    cells = []
    for (query, target), part in per_query.groupby(["query_lang", "target_lang"], sort=True):
        table = compare_arms(part, arm_a, arm_b, on, confidence=confidence)
        low, high = float(table["low"].iloc[0]), float(table["high"].iloc[0])
        cells.append({"query_lang": query, "target_lang": target, "unclear": low <= 0 <= high})
    if not cells:
        raise ValueError(f"no xt2t ranks of {arm_a!r} and {arm_b!r} to compare")
    matrix = pd.DataFrame(cells).pivot(index="query_lang", columns="target_lang", values="unclear")
    langs = sorted(set(matrix.index) | set(matrix.columns))
    matrix = matrix.reindex(index=langs, columns=langs).eq(True)  # a missing pair is not unclear
    matrix.index.name, matrix.columns.name = "query language", "target language"
    return matrix


def _heatmap_scale(matrices: Sequence[pd.DataFrame], diverging: bool) -> dict[str, object]:
    """One colour scale for every matrix: ``viridis`` over their joint range for a metric,
    ``vlag`` centred at 0 with symmetric limits for a difference (so gains and losses of equal
    size get equal colour weight)."""
    values = np.concatenate([m.to_numpy(np.float64).ravel() for m in matrices])
    if np.isnan(values).all():
        raise ValueError("the pair matrix is empty or all missing: there is nothing to plot")
    if diverging:
        limit = float(np.nanmax(np.abs(values))) or 1.0
        return {"cmap": "vlag", "center": 0.0, "vmin": -limit, "vmax": limit}
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    return {"cmap": "viridis", "vmin": low, "vmax": high if high > low else low + 1e-9}


def _draw_pair_heatmap(
    ax: Axes,
    matrix: pd.DataFrame,
    seen: Sequence[str] | None,
    scale: Mapping[str, object],
    fmt: str,
    colorbar: bool | dict[str, object],
    annot_size: float | None,
    unclear: pd.DataFrame | None = None,
) -> None:
    """One query x target heatmap on ``ax``: languages seen first, a line between seen and held
    out, missing cells (the diagonal) hatched as "not measured"; values written in the cells at
    ``annot_size`` points (None: not written); the ``unclear`` cells (a boolean matrix,
    :func:`pair_difference_unclear`) hatched over."""
    seen = seen or []
    langs = language_order([*matrix.index, *matrix.columns], seen)
    n_seen = sum(lang in seen for lang in langs)
    matrix = matrix.reindex(index=langs, columns=langs)
    n = len(langs)
    sns.heatmap(
        matrix,
        annot=annot_size is not None,
        fmt=fmt,
        annot_kws={"fontsize": annot_size or 6.0},
        square=True,
        xticklabels=True,
        yticklabels=True,
        cbar=bool(colorbar),
        cbar_kws=colorbar if isinstance(colorbar, dict) else None,
        linewidths=0.5,
        ax=ax,
        **scale,
    )
    ax.patch.set_hatch("xx")  # missing pairs (the diagonal) read as "not measured", not as 0
    ax.patch.set_edgecolor("0.8")
    if 0 < n_seen < n:
        ax.axhline(n_seen, color="black", linewidth=2)
        ax.axvline(n_seen, color="black", linewidth=2)
    if unclear is not None:  # hatched over: the interval contains 0
        marked = unclear.reindex(index=langs, columns=langs, fill_value=False).to_numpy(bool)
        for row, column in zip(*np.nonzero(marked), strict=True):
            ax.add_patch(
                Rectangle(
                    (column, row), 1, 1, fill=False, hatch="///", edgecolor="0.35", linewidth=0
                )  # fmt: skip
            )
    short = n <= 12 and max(map(len, langs)) <= 3
    ax.tick_params(axis="x", labelrotation=0 if short else 90)
    ax.tick_params(axis="y", labelrotation=0)


def pair_heatmap_figure(
    matrix: pd.DataFrame,
    title: str,
    diverging: bool = False,
    value_label: str = "R@1 (fraction of queries)",
    fmt: str = ".2f",
    seen: Sequence[str] | None = None,
    unclear: pd.DataFrame | None = None,
) -> Figure:
    """Annotated language x language heatmap (rows: query language, columns: target language).

    Sequential ``viridis`` for a metric; for a difference (``diverging``) the ``vlag`` map centred
    at 0 with symmetric limits, whose colours stretch to the largest difference however noisy:
    ``unclear`` (:func:`pair_difference_unclear`) hatches the cells whose interval contains 0,
    and the title says so. With ``seen``, the seen languages come first and a black line
    separates them from the held-out ones. Missing cells are cross-hatched.
    """
    if matrix.empty or matrix.isna().all().all():
        raise ValueError("the pair matrix is empty or all missing: there is nothing to plot")
    side = max(4.5, 0.42 * max(matrix.shape) + 2)
    fig, ax = plt.subplots(figsize=(side + 1, side), layout="constrained")
    colorbar = {"label": value_label, "shrink": 0.8}
    scale = _heatmap_scale([matrix], diverging)
    n = max(matrix.shape)
    annot = max(6.0, min(10.0, 90 / n))
    _draw_pair_heatmap(ax, matrix, seen, scale, fmt, colorbar, annot, unclear)
    ax.set_title(title if unclear is None else f"{title}\n(hatched: the interval contains 0)")
    ax.set_xlabel("target language" + (" (seen | held out)" if seen else ""))
    ax.set_ylabel("query language" + (" (seen | held out)" if seen else ""))
    return fig


def pair_heatmaps_figure(
    matrices: Mapping[str, pd.DataFrame],
    title: str,
    seen: Sequence[str] | None = None,
    diverging: bool = False,
    value_label: str = "R@1 (fraction of queries)",
    fmt: str = ".2f",
    columns: int = 4,
) -> Figure:
    """One small heatmap per arm (``matrices``: arm -> :func:`pair_matrix`) on ONE colour scale
    with one colour bar, arms in the study's order, languages seen first and split by a line.

    One scale because the panels are compared with each other: a scale per panel would give the
    same colour to different values.
    """
    if not matrices:
        raise ValueError("no pair matrices to plot")
    arms = arm_order(list(matrices))
    scale = _heatmap_scale([matrices[arm] for arm in arms], diverging)
    columns = min(columns, len(arms))
    rows = -(-len(arms) // columns)
    n = max(max(m.shape) for m in matrices.values())
    side = max(2.8, 0.3 * n + 1.0)
    fig, axes = plt.subplots(
        rows, columns, figsize=(side * columns + 1.2, side * rows + 0.6), layout="constrained",
        squeeze=False,
    )  # fmt: skip
    for ax, arm in zip(axes.flat, arms, strict=False):
        _draw_pair_heatmap(ax, matrices[arm], seen, scale, fmt, False, 6.0 if n <= 9 else None)
        ax.set_title(arm, fontsize=10)
        ax.set_xlabel("target")
        ax.set_ylabel("query")
    for ax in axes.flat[len(arms) :]:
        ax.remove()
    used = list(axes.flat[: len(arms)])
    fig.colorbar(used[0].collections[0], ax=used, label=value_label, shrink=0.6)
    groups = " (languages seen | held out)" if seen else ""
    fig.suptitle(f"{title}: query x target language{groups}, one colour scale")
    return fig
