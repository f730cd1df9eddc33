"""The figures of notebook 05's checks: the calibration of the claims' verdicts and the
positive control's dose response. Titled, labelled, colour-blind-safe, as
:mod:`xlr.analysis.plots`."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from xlr.analysis.figure_style import (
    CAPSIZE,
    INTERVAL_COLUMNS,
    check_figure_table,
    error_bars,
    interval_note,
    palette_colours,
)


def calibration_figure(table: pd.DataFrame) -> Figure:
    """The claims' calibration (:func:`xlr.analysis.calibration.calibrate_claims`) of one
    benchmark (:func:`xlr.analysis.tables.per_benchmark`): per claim, coloured by measure, the
    A/A rate of directional verdicts against its 5% limit and the power at the minimum effect
    against 80%; claims whose design cannot be resampled say so."""
    check_figure_table(
        table,
        ["key", "measure", "calibrates", "aa_rate", "power", "resamples"],
        "calibration",
        ["key"],
    )
    keys = table["key"].tolist()
    colours = palette_colours(list(pd.unique(table["measure"])))
    fig, axes = plt.subplots(
        1, 2, figsize=(10, 1.2 + 0.32 * len(keys)), sharey=True, layout="constrained"
    )
    panels = (
        ("aa_rate", 5, "A/A: no true effect", "supported or\ncontradicted (%)"),
        ("power", 80, "Minimum effect planted", "zero excluded:\npower (%)"),
    )
    for ax, (column, target, title, label) in zip(axes, panels, strict=True):
        values = 100 * table[column].to_numpy(np.float64)
        drawn = np.nan_to_num(values)
        ax.barh(keys, drawn, color=[colours[m] for m in table["measure"]])
        for y, value in enumerate(values):
            # a 0% bar has no width: the number says it was measured, not missing
            text = "not applicable" if np.isnan(value) else f"{value:.1f}%"
            box = {"facecolor": "white", "edgecolor": "none", "pad": 1, "alpha": 0.8}
            ax.text(0.02, y, text, va="center", transform=ax.get_yaxis_transform(), bbox=box)
        ax.axvline(target, color="0.2", linestyle="--")
        ax.set_xlim(0, 100 if target > 50 else max(4 * target, 1.1 * np.nanmax([*values, 0])))
        # the reference line is named in the title: a legend inside the axes covered bars
        ax.set_title(f"{title}\n(dashed line: {target}%)")
        ax.set_xlabel(label)
    axes[0].set_ylabel("claim")
    axes[0].invert_yaxis()
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    fig.legend(handles, list(colours), title="measure", loc="outside right center")
    resampled = ", ".join(pd.unique(table["calibrates"]))
    on = _on_benchmark(table)
    resamples = int(table["resamples"].max())
    fig.suptitle(
        f"Calibration of the claims' verdicts{on}: share of {resamples} resamples per claim "
        f"(resampled: {resampled})"
        if resamples
        else f"Calibration of the claims' verdicts{on}: not applicable (too few images to resample)"
    )
    return fig


def dose_response_figure(table: pd.DataFrame, judged: float) -> Figure:
    """The positive control of one benchmark
    (:func:`xlr.analysis.positive_control.dose_response_points`): the planted - real difference
    of mAP (left) and of the rank distance (right) against the dose planted, a line per pool
    (colour) and query kind (caption solid, image dashed), with the dose the control is judged
    at (``judged``) marked and zero drawn: what a measure blind to the bias would show at every
    dose.

    The panels have their own units and y axes: mAP is a fraction, the rank distance in ranks.
    """
    columns = ["pool", "queries", "measure", "fraction", *INTERVAL_COLUMNS]
    check_figure_table(table, columns, "dose response", ["pool", "queries", "measure", "fraction"])
    lines = table[["pool", "queries"]].drop_duplicates()
    colours = palette_colours(list(pd.unique(table["pool"])))
    panels = (("mAP", "mAP (fraction, 0-1)"), ("rank distance", "maximum rank distance (ranks)"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for ax, (measure, unit) in zip(axes, panels, strict=True):
        for pool, queries in lines.itertuples(index=False):
            line = table[
                (table["measure"] == measure) & (table["pool"] == pool)
                & (table["queries"] == queries)
            ].sort_values("fraction")  # fmt: skip
            if line.empty:
                continue
            ax.errorbar(
                line["fraction"], line["estimate"], yerr=error_bars(line),
                marker="o" if queries == "caption" else "s",
                linestyle="-" if queries == "caption" else "--",
                capsize=CAPSIZE, color=colours[pool], label=f"{pool}, {queries} queries",
            )  # fmt: skip
        ax.axhline(0, color="0.3", linewidth=1)
        ax.axvline(judged, color="0.3", linestyle=":")
        direction = "falls" if measure == "mAP" else "rises"
        ax.set_title(f"{measure}: planted - real\n(if the bias is seen, it {direction})")
        ax.set_ylabel(f"planted - real {unit}")
        ax.grid(alpha=0.3)
    fig.supxlabel("dose planted (x the median translation distance; dotted line: the judged dose)")
    handles, labels = axes[0].get_legend_handles_labels()
    if not handles:
        handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, title="pool, queries", loc="outside right center")
    on = _on_benchmark(table)
    fig.suptitle(
        f"Positive control{on}: a language bias planted at growing doses\n{interval_note(table)}"
    )
    return fig


def _on_benchmark(table: pd.DataFrame) -> str:
    """`` on <benchmark>`` for a title when the table names its (one) benchmark, else empty."""
    return f" on {table['benchmark'].iloc[0]}" if "benchmark" in table.columns else ""
