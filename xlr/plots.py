"""The study's figures: titled, labelled, colour-blind-safe (seaborn's ``colorblind`` palette)."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

PALETTE = "colorblind"


def language_mix_figure(
    counts: Mapping[str, int], reference: Mapping[str, float], title: str
) -> Figure:
    """Share of captions per language in a pool beside a reference mix (LAION-5B's), log scale.

    Log scale because LAION's mix spans three orders of magnitude: on a linear axis every
    language but English would be a sliver.
    """
    total = sum(counts.values())
    langs = sorted(reference, key=reference.get, reverse=True)
    table = pd.DataFrame(
        {
            "language": langs * 2,
            "share (%)": [100 * counts.get(lang, 0) / total for lang in langs]
            + [100 * reference[lang] for lang in langs],
            "source": ["this pool"] * len(langs) + ["LAION-5B (renormalised)"] * len(langs),
        }
    )
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(langs)), 3.6), layout="constrained")
    sns.barplot(table, x="language", y="share (%)", hue="source", palette=PALETTE, ax=ax)
    ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel("language (ISO 639-1)")
    ax.set_ylabel("share of captions (%, log scale)")
    return fig


def loss_curves_figure(logs: pd.DataFrame, smooth: int = 10) -> Figure:
    """Training loss per arm against step (mean over bases and seeds, rolling mean of
    ``smooth`` steps, since single-batch losses are noisy)."""
    table = logs.sort_values("step").copy()
    table["loss (smoothed)"] = table.groupby(["arm", "base_seed", "seed"])["loss"].transform(
        lambda s: s.rolling(smooth, min_periods=1).mean()
    )
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    sns.lineplot(table, x="step", y="loss (smoothed)", hue="arm", palette=PALETTE, ax=ax)
    ax.set_title("Fine-tuning loss by arm (image-text + lambda x text-text InfoNCE)")
    ax.set_xlabel("step")
    ax.set_ylabel(f"loss (nats, {smooth}-step rolling mean)")
    return fig


def batch_kind_figure(logs: pd.DataFrame) -> Figure:
    """Share of steps by batch kind per arm: hybrid's mono share should sit at its alpha."""
    shares = pd.crosstab(logs["arm"], logs["kind"], normalize="index") * 100
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(shares) + 1.5), layout="constrained")
    colours = sns.color_palette(PALETTE, n_colors=len(shares.columns))
    shares.plot.barh(stacked=True, ax=ax, color=colours, width=0.7)
    ax.set_title("Batch kinds per arm")
    ax.set_xlabel("share of training steps (%)")
    ax.set_ylabel("arm")
    ax.legend(title="batch kind", loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig
