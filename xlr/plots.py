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
