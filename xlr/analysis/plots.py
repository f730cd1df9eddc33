"""The study's figures: titled, labelled, colour-blind-safe (seaborn's ``colorblind`` palette)."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

from xlr.analysis.figure_style import (
    ARM_VARIANTS,
    CAPSIZE,
    GROUP_LABELS,
    INTERVAL_COLUMNS,
    PALETTE,
    ArmShape,
    arm_order,
    arm_styles,
    check_figure_table,
    dodged_points,
    error_bars,
    group_rank,
    interval_note,
    legend_outside,
    palette_colours,
    plain_styles,
    readable_xticks,
    sort_arms,
)


def language_mix_figure(
    counts: Mapping[str, int],
    reference: Mapping[str, float],
    title: str,
    before: Mapping[str, int] | None = None,
) -> Figure:
    """Share of captions per language in a sample (and, given ``before``, in what it was drawn
    from) beside a reference mix (LAION-5B's), log scale.

    Log scale because LAION's mix spans three orders of magnitude: on a linear axis every
    language but English would be a sliver.
    """
    langs = sorted(reference, key=reference.get, reverse=True)
    series = {"after sampling" if before else "this pool": counts}
    if before:
        series = {"before sampling": before, **series}
    rows = [
        {"language": lang, "share (%)": 100 * mix.get(lang, 0) / sum(mix.values()), "source": name}
        for name, mix in series.items()
        for lang in langs
    ]
    rows += [
        {"language": lang, "share (%)": 100 * reference[lang], "source": "LAION-5B (renormalised)"}
        for lang in langs
    ]
    table = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(langs)), 3.6), layout="constrained")
    sns.barplot(table, x="language", y="share (%)", hue="source", palette=PALETTE, ax=ax)
    ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel("language (ISO 639-1)")
    ax.set_ylabel("share of captions (%, log scale)")
    return fig


def loss_curves_figure(logs: pd.DataFrame, smooth: int = 10, warmup: int = 0) -> Figure:
    """Training loss per arm against step (mean over bases and seeds, rolling mean of
    ``smooth`` steps, since single-batch losses are noisy), on a log y axis with the first
    ``warmup`` steps shaded. The band is the range over runs (bases and seeds), a spread and not
    a confidence interval: seaborn's default bootstrap would resample runs as if seeds of one
    base were independent.

    Every step is drawn (a short run may be mostly warm-up), but the early, large losses of the
    learning-rate warm-up would set a linear axis's range and flatten the rest; the log axis keeps
    both readable and the shading says which steps are warm-up.
    """
    table = logs.sort_values("step").copy()
    table["loss (smoothed)"] = table.groupby(["arm", "base_seed", "seed"])["loss"].transform(
        lambda s: s.rolling(smooth, min_periods=1).mean()
    )
    arms = arm_order(table["arm"])
    styles = arm_styles(arms)
    fig, ax = plt.subplots(figsize=(7.5, 4), layout="constrained")
    if warmup > 0:
        ax.axvspan(table["step"].min(), warmup, color="0.9", zorder=0)
        ax.text(
            0.01, 0.02, f"warm-up ({warmup} steps)", transform=ax.transAxes, color="0.35",
            fontsize=9,
        )  # fmt: skip
    sns.lineplot(
        table,
        x="step",
        y="loss (smoothed)",
        hue="arm",
        style="arm",
        hue_order=arms,
        style_order=arms,
        palette={arm: style.colour for arm, style in styles.items()},
        dashes={arm: style.dashes for arm, style in styles.items()},
        errorbar=("pi", 100),
        ax=ax,
    )
    plain_log_yticks(ax)
    ax.set_title(
        "Fine-tuning loss by arm, mean over runs\n"
        "(image-text + lambda x text-text InfoNCE)\nband: the runs' range"
    )
    ax.set_xlabel("step")
    ax.set_ylabel(f"loss (nats, {smooth}-step rolling mean, log scale)")
    legend_outside(ax, "arm")
    return fig


def plain_log_yticks(ax: Axes) -> None:
    """A log y axis labelled in plain numbers (``3``, ``4``, ``6``, not ``6 x 10^0``); the
    in-between ticks are labelled only when the data span less than a decade."""
    ax.set_yscale("log")
    plain = FuncFormatter(lambda value, _position: f"{value:g}")
    ax.yaxis.set_major_formatter(plain)
    low, high = ax.get_ylim()
    ax.yaxis.set_minor_formatter(plain if high / low < 10 else NullFormatter())


def batch_kind_figure(logs: pd.DataFrame) -> Figure:
    """Share of steps by batch kind per arm: hybrid's mono share should sit at its alpha."""
    shares = pd.crosstab(logs["arm"], logs["kind"], normalize="index") * 100
    shares = shares.reindex(arm_order(shares.index)[::-1])  # barh draws bottom-up
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(shares) + 1.5), layout="constrained")
    colours = sns.color_palette(PALETTE, n_colors=len(shares.columns))
    shares.plot.barh(stacked=True, ax=ax, color=colours, width=0.7)
    ax.set_title("Batch kinds per arm")
    ax.set_xlabel("share of training steps (%)")
    ax.set_ylabel("arm")
    legend_outside(ax, "batch kind")
    return fig


# --- Notebooks 05 (bias) and 06 (paper figures) ----------------------------------------------
#
# Interval tables carry ``estimate, low, high`` (an interval over bases, seeds and images, e.g.
# from :func:`xlr.analysis.intervals.interval_by_arm`); bars and points show them as error bars.
# Retrieval metrics are fractions of queries in [0, 1], as the results table stores them.


def per_language_recall_figure(
    intervals: pd.DataFrame, metric_label: str = "R@1 (fraction of queries)"
) -> Figure:
    """Per-language retrieval by arm with error bars, seen and held-out languages apart.

    Languages are grouped by ``lang_group`` (seen, then held-out, then any other), alphabetical
    within a group, with a gap and a dashed divider between groups named along the top, so the
    seen - held-out contrast reads at a glance. ``intervals`` has one row per (arm, query_lang).
    """
    columns = ["arm", "query_lang", "lang_group", *INTERVAL_COLUMNS]
    check_figure_table(intervals, columns, "per-language interval", unique=["arm", "query_lang"])
    groups = intervals.groupby("query_lang")["lang_group"].nunique()
    if (groups > 1).any():
        raise ValueError(f"languages {list(groups.index[groups > 1])} are in several lang_groups")
    langs = (
        intervals[["query_lang", "lang_group"]]
        .drop_duplicates()
        .assign(rank=lambda t: group_rank(t["lang_group"]))
        .sort_values(["rank", "lang_group", "query_lang"])
    )
    gap = np.cumsum(langs["lang_group"].ne(langs["lang_group"].shift()).to_numpy()) - 1
    positions = dict(zip(langs["query_lang"], np.arange(len(langs)) + gap, strict=True))
    n_arms = intervals["arm"].nunique()
    width = min(24.0, max(7.0, 0.16 * len(langs) * (n_arms + 1) + 3))
    fig, ax = plt.subplots(figsize=(width, 4.2), layout="constrained")
    intervals = sort_arms(intervals)
    styles = arm_styles(list(pd.unique(intervals["arm"])))
    dodged_points(ax, intervals, "query_lang", "arm", positions, styles)
    ax.grid(axis="y", alpha=0.3)
    ax.set_xticks(list(positions.values()), list(positions))
    centres, names = [], []
    for group, part in langs.groupby("lang_group", sort=False):
        xs = [positions[lang] for lang in part["query_lang"]]
        centres.append(float(np.mean(xs)))
        names.append(f"{GROUP_LABELS.get(group, group)} ({len(xs)})")
        if min(xs) > 0:
            ax.axvline(min(xs) - 1, color="0.4", linestyle="--", linewidth=1)
    top = ax.secondary_xaxis("top")
    top.set_xticks(centres, names)
    top.tick_params(length=0)
    ax.set_title(f"Per-language {metric_label.split(' (')[0]} by arm {interval_note(intervals)}")
    ax.set_xlabel("query language (ISO 639-1)")
    ax.set_ylabel(metric_label)
    legend_outside(ax, "arm")
    return fig


def alpha_sweep_figure(
    points: pd.DataFrame,
    zero_shot: float | None = None,
    metric_label: str = "multilingual mAP",
) -> Figure:
    """A metric against the hybrid mix alpha (share of mono batches), a line per what trains.

    alpha 0 is the cross-lingual arm and alpha 1 the mono arm, so the curve's ends are those arms
    and an interior peak is the hybrid's claimed advantage; the zero-shot model, which has no
    alpha, is a dashed horizontal line.
    """
    columns = ["alpha", "trained", *INTERVAL_COLUMNS]
    check_figure_table(points, columns, "alpha sweep", unique=["alpha", "trained"])
    if not points["alpha"].between(0, 1).all():
        raise ValueError(f"alpha must lie in [0, 1], got {sorted(points['alpha'].unique())}")
    fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
    kinds = list(pd.unique(points["trained"]))
    colours = palette_colours(kinds)
    for kind in kinds:
        line = points[points["trained"] == kind].sort_values("alpha")
        ax.errorbar(
            line["alpha"],
            line["estimate"],
            yerr=error_bars(line),
            marker=ARM_VARIANTS.get(kind, ArmShape()).marker,
            capsize=CAPSIZE,
            color=colours[kind],
            label=f"{kind} fine-tuning",
        )
    if zero_shot is not None:
        ax.axhline(zero_shot, color="0.3", linestyle="--", label="zero-shot")
    ticks = sorted(set(points["alpha"]) | {0.0, 1.0})
    names = {0.0: "\ncross", 1.0: "\nmono"}
    ax.set_xticks(ticks, [f"{a:g}{names.get(a, '')}" for a in ticks])
    ax.set_xlim(-0.05, 1.05)
    ax.set_title(f"{metric_label} against the hybrid mix alpha\n{interval_note(points)}")
    ax.set_xlabel("alpha (share of mono-lingual batches)")
    ax.set_ylabel(f"{metric_label} (fraction, 0-1)")
    ax.legend(title="what trains")
    return fig


def _dodged_log(points: pd.DataFrame, step: float = 0.04) -> pd.Series:
    """Positive ``trainable_params`` with the arms that share a count set side by side, ``step``
    decades apart in arm order and centred on the true count (a fixed dodge, not jitter)."""
    counts = points["trainable_params"]
    rank = points.groupby("trainable_params").cumcount()
    ties = counts.groupby(counts).transform("size")
    return counts * 10 ** (step * (rank - (ties - 1) / 2))


def parameter_count(value: float, _position: object = None) -> str:
    """A parameter count for a tick label: ``4.1k``, ``211k``, ``1.5M``, ``12``."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def accuracy_vs_params_figure(
    points: pd.DataFrame, metric_label: str = "multilingual mAP"
) -> Figure:
    """A metric against the number of trainable parameters (log x), one point per arm.

    Shows what each arm buys per parameter trained (adapters and LoRA against full fine-tuning).
    The x ticks are the counts the arms train, labelled in full (``4.1k``, ``211k``); arms with
    the same count sit side by side around its tick, in arm order, each with its own marker
    and colour (:func:`arm_styles`) and named in the legend. Arms with no trainable parameters
    (zero-shot) cannot sit on a log axis and are dashed horizontal reference lines.
    """
    columns = ["arm", "trainable_params", *INTERVAL_COLUMNS]
    check_figure_table(points, columns, "accuracy vs parameters", unique=["arm"])
    if (points["trainable_params"] < 0).any():
        raise ValueError("trainable_params must be >= 0")
    unknown = points.loc[points["trainable_params"].isna(), "arm"].tolist()
    if unknown:
        raise ValueError(
            f"arms {unknown} have no cost summary (their trainable parameters are unknown): "
            "train them (xlr.train.study.arm_summaries reads their summary.json) or leave them out"
        )
    points = sort_arms(points)
    trained = points[points["trainable_params"] > 0]
    if trained.empty:
        raise ValueError("no arm has trainable parameters: there is nothing to place on the axis")
    fig, ax = plt.subplots(figsize=(9, 4.5), layout="constrained")
    styles = arm_styles(list(points["arm"]))
    for row in points[points["trainable_params"] == 0].itertuples():
        ax.axhline(row.estimate, color=styles[row.arm].colour, linestyle="--", label=row.arm)
    for row in trained.assign(x=_dodged_log(trained)).itertuples():
        style = styles[row.arm]
        ax.errorbar(
            [row.x],
            [row.estimate],
            yerr=[[row.estimate - row.low], [row.high - row.estimate]],
            fmt=style.marker,
            capsize=CAPSIZE,
            color=style.colour,
            label=row.arm,
        )
    counts = sorted(trained["trainable_params"].unique())
    ax.set_xscale("log")
    ax.set_xlim(counts[0] / 10**0.3, counts[-1] * 10**0.3)
    ax.xaxis.set_major_locator(FixedLocator(counts))
    ax.xaxis.set_major_formatter(FuncFormatter(parameter_count))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.grid(alpha=0.3)
    ax.set_title(f"{metric_label} against trainable parameters\n{interval_note(points)}")
    ax.set_xlabel("trainable parameters (log scale; arms with equal counts side by side)")
    ax.set_ylabel(f"{metric_label} (fraction, 0-1)")
    legend_outside(ax, "arm (dashed: no trainable parameters)")
    return fig


def seen_heldout_figure(
    points: pd.DataFrame, metric_label: str = "R@1 (fraction of queries)"
) -> Figure:
    """Seen vs held-out languages per arm, side by side with error bars.

    Fine-tuning on the seen languages should help them most; the held-out bar shows whether
    that gain transfers to languages the arm never trained on.
    """
    columns = ["arm", "lang_group", *INTERVAL_COLUMNS]
    check_figure_table(points, columns, "seen / held-out", unique=["arm", "lang_group"])
    arms = arm_order(points["arm"])
    table = points.sort_values("lang_group", key=group_rank, kind="stable").assign(
        lang_group=lambda t: t["lang_group"].map(lambda g: GROUP_LABELS.get(g, g))
    )
    fig, ax = plt.subplots(figsize=(max(6.5, 0.8 * len(arms) + 3), 4), layout="constrained")
    positions = {arm: float(i) for i, arm in enumerate(arms)}
    styles = plain_styles(list(pd.unique(table["lang_group"])))
    dodged_points(ax, table, "arm", "lang_group", positions, styles)
    ax.grid(axis="y", alpha=0.3)
    ax.set_xticks(range(len(arms)), arms)
    readable_xticks(ax)
    ax.set_title(
        f"{metric_label.split(' (')[0]}: seen vs held-out languages {interval_note(points)}"
    )
    ax.set_xlabel("arm")
    ax.set_ylabel(metric_label)
    legend_outside(ax, "languages")
    return fig


def rank_distance_figure(
    per_query: pd.DataFrame, value_label: str = "maximum rank distance (ranks)"
) -> Figure:
    """Distribution of per-query maximum rank distance by arm: box (quartiles, 1.5 IQR whiskers)
    with the mean as a white diamond, since the claims compare means but the tails show bias.

    Rows of every run (seeds, bases) are pooled; arms in the study's order, the legend outside
    the data. The y axis is logarithmic when the values span two decades or more (symmetric-log
    when some are 0), else linear.
    """
    check_figure_table(per_query, ["arm", "value"], "per-query")
    arms = arm_order(per_query["arm"])
    data = [per_query.loc[per_query["arm"] == arm, "value"].to_numpy(np.float64) for arm in arms]
    fig, ax = plt.subplots(figsize=(max(7.5, 0.8 * len(arms) + 3), 5), layout="constrained")
    boxes = ax.boxplot(
        data,
        tick_labels=arms,
        patch_artist=True,
        showmeans=True,
        meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black"},
        medianprops={"color": "black"},
        flierprops={"marker": ".", "markersize": 2, "alpha": 0.4},
    )
    for patch, style in zip(boxes["boxes"], arm_styles(arms).values(), strict=True):
        patch.set_facecolor(style.colour)
        patch.set_hatch(style.hatch)
    values = per_query["value"]
    spread = values.max() / values[values > 0].min() if (values > 0).any() else 1.0
    scale = ""
    if spread >= 100:
        scale = "log" if (values > 0).all() else "symlog"
        ax.set_yscale(scale, **({"linthresh": 1.0} if scale == "symlog" else {}))
    readable_xticks(ax)
    legend_outside(ax, "marks", boxes["means"][:1] + boxes["medians"][:1], ["mean", "median"])
    ax.set_title("Per-query maximum rank distance by arm\n(lower = less language bias)")
    ax.set_xlabel("arm")
    ax.set_ylabel(value_label.replace(" (", "\n(") + (f", {scale} scale" if scale else ""))
    return fig


def language_preference_figure(shares: pd.DataFrame) -> Figure:
    """How far each language's share of first-ranked relevant items lies from uniform, per arm,
    in percentage points, with its interval.

    ``shares``: one row per arm and language (``lang``) with the share's interval
    (``estimate, low, high``: :func:`xlr.analysis.intervals.preference_intervals`) and the
    ``uniform`` share 1 / L of an unbiased model. Points start from the axis's centre, the
    uniform share: up is preferred, down avoided, and a difference whose bar crosses the centre
    is not told from chance at that level. Differences of a few points would be slivers on bars
    drawn from 0.
    """
    columns = ["arm", "lang", "uniform", *INTERVAL_COLUMNS]
    check_figure_table(shares, columns, "language-preference", unique=["arm", "lang"])
    if shares["uniform"].nunique() > 1:
        raise ValueError("language-preference table has several uniform levels (language pools)")
    uniform = float(shares["uniform"].iat[0])
    table = sort_arms(shares).copy()
    for column in INTERVAL_COLUMNS:
        table[column] = 100 * (table[column] - uniform)
    langs = sorted(table["lang"].unique())
    positions = {lang: float(i) for i, lang in enumerate(langs)}
    n_arms = table["arm"].nunique()
    width = min(13.0, max(7.5, 0.13 * len(langs) * (n_arms + 1) + 4))
    with plt.rc_context({"font.size": 11}):
        fig, ax = plt.subplots(figsize=(width, 4.8), layout="constrained")
        styles = arm_styles(list(pd.unique(table["arm"])))
        dodged_points(ax, table, "lang", "arm", positions, styles)
        reach = np.abs(table[list(INTERVAL_COLUMNS)].to_numpy(np.float64))
        limit = float(np.nanmax(reach)) * 1.15 if np.isfinite(reach).any() else 1.0
        ax.set_ylim(-(limit or 1.0), limit or 1.0)
        ax.axhline(0, color="0.2", linewidth=1)
        ax.set_xticks(range(len(langs)), langs)
        readable_xticks(ax)
        for edge in np.arange(len(langs) - 1) + 0.5:
            ax.axvline(edge, color="0.85", linewidth=0.8, zorder=0)
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(
            "Language of the best-ranked relevant item:\nshare minus the uniform share "
            f"({100 * uniform:.1f}%)\n{interval_note(shares)}"
        )
        ax.set_xlabel("language of the best-ranked relevant item (ISO 639-1)")
        ax.set_ylabel("share - uniform (percentage points)")
        legend_outside(ax, "arm")
    return fig
