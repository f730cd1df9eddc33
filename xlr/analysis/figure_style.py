"""How the study's figures look and what they accept: arm styles (colour by family, shape by
variant, seaborn's colour-blind palette), checks of the interval tables figures are drawn from,
the shared drawing helpers, and saving.

Every figure of :mod:`xlr.analysis.plots` draws through these, so one arm looks the same in
every figure and a table that would mix incomparable numbers is refused before it is drawn.
"""

from __future__ import annotations

import colorsys
import itertools
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from xlr.arms import FALLBACKS, FAMILIES, SWEEP_FAMILIES, TRAINABLE, Arm
from xlr.eval.results import check_table
from xlr.io import atomic_file

PALETTE = "colorblind"
_COLOURS = sns.color_palette(PALETTE)
# Each arm family's colour, in xlr.arms.FAMILIES' order: dark grey for the model every arm is read
# against, then the palette's blue, orange, green for the mono, cross and multi schedules, tan for
# hybrid batches (a lightness ramp over alpha), purple for the adapters and sky blue for the
# adapters on hybrid batches. Chosen for their distance under simulated colour-vision deficiency
# (Machado et al. 2009: deutan, protan, tritan; CIELAB): the alpha ramps 0.25/0.5/0.75,
# 0.4/0.5/0.6 and 0.1/0.5/0.9 keep every pair of colours at least 11 apart in each of them
# (tests/test_study_figures.py), where a vermilion hybrid lightened towards the cross arm's
# orange came within 2.7 and the palette's own grey (lightness 0.58) within 10.8 of multi's
# green (deutan). Pink and yellow (low contrast on white) and vermilion are left spare.
FAMILY_COLOURS: tuple[tuple[float, float, float], ...] = (
    (0.35, 0.35, 0.35), _COLOURS[0], _COLOURS[1], _COLOURS[2], _COLOURS[5], _COLOURS[4],
    _COLOURS[9],
)  # fmt: skip
SPARE_COLOURS: tuple[tuple[float, float, float], ...] = (_COLOURS[3], _COLOURS[6], _COLOURS[8])
ALPHA_LIGHTNESS = (0.5, 0.25, 4.0)  # lightness = a + b * tanh(c * (0.5 - alpha))
LEGEND_ROW_INCHES = 0.26  # a legend entry at the default 10-point font, with its spacing


@dataclass(frozen=True)
class ArmStyle:
    """How one arm is drawn in every figure: colour, marker (points), hatch (bars, boxes) and
    dashes (lines; ``""`` is solid, else seaborn's on/off lengths in points)."""

    colour: tuple[float, float, float]
    marker: str = "o"
    hatch: str = ""
    dashes: str | tuple[float, ...] = ""


class ArmShape(NamedTuple):
    """The colour-free part of an :class:`ArmStyle`, fixed by an arm's variant."""

    marker: str = "o"
    hatch: str = ""
    dashes: str | tuple[float, ...] = ""


# An arm's variant (xlr.arms.Arm.variant) sets its shape: what trains (``full``, ``lora``) or,
# for adapters, the held-out fallback.
ARM_VARIANTS: dict[str, ArmShape] = {
    "full": ArmShape("o", "", ""),
    "lora": ArmShape("s", "//", (4, 2)),
    "base": ArmShape("^", "..", (1, 1.5)),
    "nearest": ArmShape("D", "xx", (4, 1.5, 1, 1.5)),
    "average": ArmShape("v", "\\\\", (6, 1.5, 1, 1.5, 1, 1.5)),
}


def arm_styles(arms: Sequence[str]) -> dict[str, ArmStyle]:
    """One :class:`ArmStyle` per arm: a colour per family (:func:`family_colour`), a marker,
    hatch and dash per variant.

    Why not one colour per arm: the study has about twenty arms and the colour-blind palette ten
    colours, so unrelated arms would share one. Keyed by family, colour answers the study's
    question (which batch schedule) and the shape tells full from LoRA and the adapters'
    fallbacks. Labels that are no arm name take the palette's spare colours in turn.
    """
    colours = {name: family_colour(name) for name in arms}
    spares = itertools.cycle(SPARE_COLOURS)
    colours |= {name: next(spares) for name, colour in colours.items() if colour is None}
    return {
        name: ArmStyle(colours[name], *ARM_VARIANTS.get(family_and_variant(name)[1], ArmShape()))
        for name in arms
    }


def family_colour(label: str) -> tuple[float, float, float] | None:
    """An arm's colour, the same in every figure whichever arms it holds (the loss curves have
    no zero-shot model): its family's (:data:`FAMILY_COLOURS`); in the
    hybrid family, lighter for a smaller alpha (:data:`ALPHA_LIGHTNESS`: steepest around 0.5,
    where the real study's alphas lie, and never clamped, so two alphas never share a colour),
    and adapters_hybrid at the ramp's middle; None for a label that is no arm name."""
    try:
        arm = Arm.parse(label)
    except ValueError:
        return None
    colour = FAMILY_COLOURS[FAMILIES.index(arm.family)]
    if arm.alpha is None:
        return colour
    hue, _, saturation = colorsys.rgb_to_hls(*colour)
    middle, spread, steepness = ALPHA_LIGHTNESS
    # lightness tells alphas apart on the sweep's axis only: adapters_hybrid has one alpha a
    # study (adapters.hybrid_alpha), so it keeps the ramp's middle whatever that alpha is (at
    # 0.6 the ramp took its sky blue within 4.9 of mono's blue under deuteranopia)
    alpha = arm.alpha if arm.family in SWEEP_FAMILIES else 0.5
    light = middle + spread * math.tanh(steepness * (0.5 - alpha))
    return colorsys.hls_to_rgb(hue, light, saturation)


def family_and_variant(label: str) -> tuple[str, str]:
    """An arm name's family (with alpha) and variant (:class:`xlr.arms.Arm`); a label that is no
    arm name (a planted control, a user's own) is a family of its own without a variant."""
    try:
        arm = Arm.parse(label)
    except ValueError:
        return label, ""
    return arm.family_name, arm.variant


_VARIANT_ORDER: tuple[str, ...] = ("", *TRAINABLE, *FALLBACKS)


def arm_sort_key(label: str) -> tuple:
    """Where an arm goes in every figure and table: zero-shot first (the reference every
    other arm is read against), then the batch families in :data:`xlr.arms.FAMILIES` order, alpha
    ascending, full before LoRA and the adapters' fallbacks in their order; labels that are no
    arm name (a planted control, a user's own) last, alphabetically."""
    try:
        arm = Arm.parse(label)
    except ValueError:
        return (len(FAMILIES), 0.0, 0, label)
    variant = arm.variant if arm.variant in _VARIANT_ORDER else ""
    alpha = -1.0 if arm.alpha is None else arm.alpha
    return (FAMILIES.index(arm.family), alpha, _VARIANT_ORDER.index(variant), label)


def arm_order(arms: Sequence[str] | pd.Series) -> list[str]:
    """The distinct ``arms`` in the study's order (:func:`arm_sort_key`)."""
    return sorted(dict.fromkeys(arms), key=arm_sort_key)


def sort_arms(table: pd.DataFrame, column: str = "arm") -> pd.DataFrame:
    """``table`` with its rows in the study's arm order (stable within an arm)."""
    return table.sort_values(column, key=lambda arms: arms.map(arm_sort_key), kind="stable")


def plain_styles(levels: Sequence[str]) -> dict[str, ArmStyle]:
    """A colour each, round markers: for levels that are not arms (language groups)."""
    return {level: ArmStyle(colour) for level, colour in palette_colours(levels).items()}


INTERVAL_COLUMNS: tuple[str, ...] = ("estimate", "low", "high")
# Columns that, when a table has them, must hold one value: averaging or drawing across
# benchmarks, tasks, image vs caption queries, caption conventions or confidence levels would mix
# incomparable numbers.
SINGLE_VALUED: tuple[str, ...] = ("benchmark", "task", "query_kind", "captions", "confidence")


GROUP_LABELS: dict[str, str] = {
    "seen": "seen in fine-tuning",
    "heldout": "held out",
    "mixed": "mixed",
}


CAPSIZE = 3


def check_figure_table(
    frame: pd.DataFrame, columns: Sequence[str], what: str, unique: Sequence[str] = ()
) -> None:
    """Raise ``ValueError`` naming what is wrong with a table a figure is drawn from.

    Checks: required ``columns`` present, at least one row, one row per ``unique`` key, a single
    value in each :data:`SINGLE_VALUED` column present, and ``low <= estimate <= high``.
    """
    check_table(frame, columns, what)
    mixed = [c for c in SINGLE_VALUED if c in frame.columns and frame[c].nunique() > 1]
    if mixed:
        raise ValueError(
            f"{what} table mixes several values of {mixed}; filter it to one of each first"
        )
    if unique:
        repeated = frame[frame.duplicated(list(unique), keep=False)]
        if not repeated.empty:
            keys = repeated[list(unique)].drop_duplicates().head(5).to_dict("records")
            raise ValueError(
                f"{what} table needs one row per {list(unique)}; repeated: {keys} "
                "(average over seeds and bases first)"
            )
    if set(INTERVAL_COLUMNS) <= set(columns):
        outside = frame[(frame["low"] > frame["estimate"]) | (frame["high"] < frame["estimate"])]
        if not outside.empty:
            raise ValueError(
                f"{what} table has intervals that do not contain their estimate "
                f"(need low <= estimate <= high), rows {list(outside.index[:5])}"
            )


def error_bars(table: pd.DataFrame) -> np.ndarray:
    """Asymmetric error-bar lengths ``[estimate - low, high - estimate]`` for matplotlib."""
    estimate = table["estimate"].to_numpy(np.float64)
    return np.vstack([estimate - table["low"].to_numpy(), table["high"].to_numpy() - estimate])


def interval_note(frame: pd.DataFrame) -> str:
    """What the error bars are, for a title: the confidence level when the table records it, and
    the units the interval is over (:mod:`xlr.analysis.stats`)."""
    if "confidence" in frame.columns:
        return f"(error bars: {frame['confidence'].iat[0]:.0%} CI over bases, seeds, images)"
    return "(error bars: CI over bases, seeds, images)"


def palette_colours(levels: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    return dict(zip(levels, sns.color_palette(PALETTE, n_colors=len(levels)), strict=True))


def dodged(positions: Mapping[str, float], i: int, n: int) -> tuple[np.ndarray, float]:
    """x of the ``i``-th of ``n`` dodged marks at each of ``positions``, and their spacing."""
    width = 0.8 / n
    return np.asarray(list(positions.values())) + (i - (n - 1) / 2) * width, width


def dodged_points(
    ax: Axes,
    table: pd.DataFrame,
    x: str,
    hue: str,
    positions: Mapping[str, float],
    styles: Mapping[str, ArmStyle],
) -> None:
    """Estimates as markers with their interval as error bars at ``positions`` of ``x``, one
    dodged column per ``hue`` level (in table order); absent cells draw nothing.

    Points rather than bars: bars must start at 0, which flattens the differences of a few
    hundredths between arms that the study is about; points let the axis zoom to the data.
    """
    levels = list(pd.unique(table[hue]))
    for i, level in enumerate(levels):
        part = table[table[hue] == level].set_index(x).reindex(list(positions))
        xs, _ = dodged(positions, i, len(levels))
        style = styles[level]
        ax.errorbar(
            xs, part["estimate"], yerr=error_bars(part), fmt=style.marker, color=style.colour,
            markersize=4, capsize=CAPSIZE, elinewidth=1, label=level,
        )  # fmt: skip


def group_rank(groups: pd.Series) -> pd.Series:
    """Sort key putting language groups in :data:`GROUP_LABELS` order, unknown groups last."""
    return groups.map({name: i for i, name in enumerate(GROUP_LABELS)}).fillna(len(GROUP_LABELS))


def legend_outside(ax: Axes, title: str, handles: Sequence | None = None, labels=None) -> None:
    """The legend right of the axes, where it hides no data; ``layout="constrained"`` makes
    room for its width inside the figure, not for its height, so it takes as many columns as
    the figure's height needs (the study's 19 arms do not fit one column of a 4-inch figure)."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    rows = max(1, int(ax.figure.get_figheight() / LEGEND_ROW_INCHES) - 2)  # title, frame
    ax.legend(handles, labels, title=title, loc="center left", bbox_to_anchor=(1.0, 0.5),
              ncols=math.ceil(len(handles) / rows))  # fmt: skip


def readable_xticks(ax: Axes) -> None:
    """Slant the x tick labels when they would overlap (many or long arm names): at about
    0.08 inch a character, they need more room than the axes' width gives each label."""
    labels = [t.get_text() for t in ax.get_xticklabels()]
    needed = len(labels) * (max(map(len, labels), default=0) + 1) * 0.08
    if needed > 0.7 * ax.figure.get_figwidth():
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor")


def save_figure(
    fig: Figure,
    out_dir: str | os.PathLike[str],
    name: str,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Write ``fig`` as ``out_dir/name.<format>`` for each format, atomically (a crash leaves the
    old file or none, never half a file); PNG at 150 dpi. Returns the paths written."""
    if not name or Path(name).name != name:
        raise ValueError(f"figure name must be a plain file stem, got {name!r}")
    paths = []
    for fmt in formats:
        path = Path(out_dir) / f"{name}.{fmt}"
        with atomic_file(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150)
        paths.append(path)
    return paths
