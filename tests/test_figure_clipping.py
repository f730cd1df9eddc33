"""Every study figure keeps its texts and legends inside the canvas, with long arm and language
names.

A reviewer reads the PNG, where anything outside the figure is simply cut off (a y label, a
legend, a slanted tick label). So each figure is rendered with names longer than the study's
and every visible text artist's window extent must lie inside the figure's.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.text import Text

from xlr.analysis.check_figures import calibration_figure, dose_response_figure
from xlr.analysis.heatmaps import pair_heatmap_figure, pair_heatmaps_figure
from xlr.analysis.plots import (
    accuracy_vs_params_figure,
    alpha_sweep_figure,
    batch_kind_figure,
    language_mix_figure,
    language_preference_figure,
    loss_curves_figure,
    per_language_recall_figure,
    rank_distance_figure,
    seen_heldout_figure,
)

# Longer than any name the study makes: a user's own arms and language tags.
ARMS = [
    "zeroshot",
    "mono-full",
    "cross-lora",
    "hybrid-a0.25-full",
    "adapters_hybrid-a0.5-nearest",
    "a-user-defined-arm-with-a-very-long-name",
]
LANGS = ["en", "de", "zh-Hant-TW", "pt-BR-long-tag", "ar", "sr-Latn-RS"]
GROUPS = ["seen", "seen", "seen", "heldout", "heldout", "heldout"]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def undrawn_tick_labels(fig: Figure) -> set[int]:
    """Tick labels of ticks outside their axis's view: matplotlib keeps but never draws them."""
    hidden = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                if not low - 1e-9 * abs(high - low) <= tick.get_loc() <= high + 1e-9 * abs(high):
                    hidden |= {id(tick.label1), id(tick.label2)}
    return hidden


def clipped_texts(fig: Figure) -> list[str]:
    """The visible, non-empty texts and legends whose rendered extent leaves the figure (1 px
    tolerance): a legend's frame cut off hides the entries and markers at its edge."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    hidden = undrawn_tick_labels(fig)
    out = []
    for artist in [*fig.findobj(Text), *fig.findobj(Legend)]:
        if not artist.get_visible() or id(artist) in hidden:
            continue
        if isinstance(artist, Text) and not artist.get_text().strip():
            continue
        extent = artist.get_window_extent(renderer)
        inside = (
            extent.x0 >= box.x0 - 1
            and extent.y0 >= box.y0 - 1
            and extent.x1 <= box.x1 + 1
            and extent.y1 <= box.y1 + 1
        )
        if not inside:
            name = artist.get_text() if isinstance(artist, Text) else "legend"
            out.append(f"{name!r} at {extent.bounds}")
    return out


def interval_rows(rng: np.random.Generator, n: int, scale: float = 1.0) -> dict[str, np.ndarray]:
    estimate = rng.uniform(0.2, 0.8, n) * scale
    return {"estimate": estimate, "low": estimate - 0.05 * scale, "high": estimate + 0.05 * scale}


# The synthetic study's evaluated arms: more legend entries than a short figure has rows for.
STUDY_ARMS = [
    "zeroshot",
    *(f"{family}-{t}" for family in ("mono", "cross", "multi") for t in ("full", "lora")),
    *(f"hybrid-a{a}-{t}" for a in (0.25, 0.5, 0.75) for t in ("full", "lora")),
    *(f"{family}-{f}" for family in ("adapters", "adapters_hybrid-a0.5")
      for f in ("base", "nearest", "average")),
]  # fmt: skip


def per_language(arms: list[str] = ARMS) -> Figure:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        [(arm, lang, group) for arm in arms for lang, group in zip(LANGS, GROUPS, strict=True)],
        columns=["arm", "query_lang", "lang_group"],
    )
    return per_language_recall_figure(frame.assign(**interval_rows(rng, len(frame))))


def heatmap() -> Figure:
    rng = np.random.default_rng(1)
    matrix = pd.DataFrame(rng.uniform(0, 1, (len(LANGS), len(LANGS))), index=LANGS, columns=LANGS)
    return pair_heatmap_figure(matrix, title="xt2t R@1: " + ARMS[-1])


def heatmaps() -> Figure:
    rng = np.random.default_rng(2)
    matrices = {
        arm: pd.DataFrame(rng.uniform(0, 1, (len(LANGS),) * 2), index=LANGS, columns=LANGS)
        for arm in ARMS
    }
    return pair_heatmaps_figure(matrices, "xt2t R@1", seen=LANGS[:3])


def alpha_sweep() -> Figure:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"alpha": [0.0, 0.5, 1.0] * 2, "trained": ["full"] * 3 + ["lora"] * 3})
    return alpha_sweep_figure(frame.assign(**interval_rows(rng, 6)), zero_shot=0.3)


def accuracy_vs_params() -> Figure:
    rng = np.random.default_rng(4)
    counts = [0, 210_689, 4_097, 210_689, 20_480, 4_097]
    frame = pd.DataFrame({"arm": ARMS, "trainable_params": counts})
    return accuracy_vs_params_figure(frame.assign(**interval_rows(rng, len(ARMS))))


def seen_heldout() -> Figure:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        [(arm, group) for arm in ARMS for group in ("seen", "heldout")],
        columns=["arm", "lang_group"],
    )
    return seen_heldout_figure(frame.assign(**interval_rows(rng, len(frame))))


def rank_distance() -> Figure:
    rng = np.random.default_rng(6)
    rows = [(arm, float(v)) for arm in ARMS for v in rng.gamma(2.0, 60.0, 200)]
    return rank_distance_figure(pd.DataFrame(rows, columns=["arm", "value"]))


def language_preference() -> Figure:
    rng = np.random.default_rng(7)
    rows = []
    for arm in ARMS:
        shares = rng.dirichlet(np.full(len(LANGS), 20.0))
        rows += [(arm, lang, share) for lang, share in zip(LANGS, shares, strict=True)]
    frame = pd.DataFrame(rows, columns=["arm", "lang", "estimate"])
    frame = frame.assign(low=frame["estimate"] - 0.03, high=frame["estimate"] + 0.05)
    return language_preference_figure(frame.assign(uniform=1 / len(LANGS), confidence=0.95))


def training_logs() -> pd.DataFrame:
    rng = np.random.default_rng(8)
    rows = []
    for arm in ARMS[1:]:
        for step in range(60):
            loss = 6.0 * np.exp(-step / 4) + 2.0 + rng.normal(0, 0.1)
            rows.append((arm, 0, 0, step, loss, "mono" if step % 2 else "cross"))
    return pd.DataFrame(rows, columns=["arm", "base_seed", "seed", "step", "loss", "kind"])


def calibration() -> Figure:
    frame = pd.DataFrame(
        {
            "key": [f"{arm}>zeroshot:heldout" for arm in ARMS[1:]],
            "measure": ["t2i R@1", "multilingual mAP", "rank distance", "t2i R@1", "t2i R@1"],
            "calibrates": "images only",
            "aa_rate": [0.0, 0.01, np.nan, 0.02, 0.0],
            "power": [0.5, 0.9, np.nan, 0.3, 0.8],
            "resamples": 200,
        }
    )
    return calibration_figure(frame)


def dose_response() -> Figure:
    rows = [
        {"benchmark": "crossmodal-3600-validation-with-a-long-name", "pool": pool,
         "queries": queries, "measure": measure, "fraction": dose, "estimate": -dose / 10,
         "low": -dose / 10 - 0.05, "high": -dose / 10 + 0.05}
        for pool in ("seen languages", "all languages")
        for queries in ("caption", "image")
        for measure in ("mAP", "rank distance")
        for dose in (0.0, 0.5, 1.0, 2.0, 4.0)
    ]  # fmt: skip
    return dose_response_figure(pd.DataFrame(rows), judged=2.0)


def language_mix() -> Figure:
    counts = {lang: 100 * (i + 1) for i, lang in enumerate(LANGS)}
    reference = {lang: (i + 1) / 21 for i, lang in enumerate(LANGS)}
    return language_mix_figure(counts, reference, "Language mix of the sample", before=counts)


FIGURES = {
    "language_mix": language_mix,
    "loss_curves": lambda: loss_curves_figure(training_logs(), warmup=10),
    "batch_kinds": lambda: batch_kind_figure(training_logs()),
    "per_language": per_language,
    "per_language_study_arms": lambda: per_language(STUDY_ARMS),
    "heatmap": heatmap,
    "heatmaps": heatmaps,
    "alpha_sweep": alpha_sweep,
    "accuracy_vs_params": accuracy_vs_params,
    "seen_heldout": seen_heldout,
    "rank_distance": rank_distance,
    "language_preference": language_preference,
    "calibration": calibration,
    "dose_response": dose_response,
}


@pytest.mark.parametrize("name", list(FIGURES))
def test_no_text_is_clipped(name: str) -> None:
    fig = FIGURES[name]()
    assert clipped_texts(fig) == []
