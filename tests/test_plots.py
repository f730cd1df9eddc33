"""Figures are titled and labelled; galleries escape web captions."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd

from xlr.analysis.plots import batch_kind_figure, language_mix_figure, loss_curves_figure
from xlr.data.gallery import caption_gallery_html
from xlr.data.imagetext import ArrayImages, ImageTextSet
from xlr.train.batching import BatchSampler
from xlr.train.gallery import batch_gallery_html

EVIL = "<img src=x onerror=alert(1)>"


def labelled(fig) -> None:
    ax = fig.axes[0]
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()


def test_language_mix_figure() -> None:
    fig = language_mix_figure(
        {"en": 90, "de": 9, "hi": 1}, {"en": 0.9, "de": 0.09, "hi": 0.01}, "t"
    )
    labelled(fig)
    assert fig.axes[0].get_yscale() == "log"
    fig = language_mix_figure({"en": 9, "de": 1}, {"en": 0.9, "de": 0.1}, "t", before={"en": 5})
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["before sampling", "after sampling", "LAION-5B (renormalised)"]


def test_training_figures() -> None:
    logs = pd.DataFrame(
        {
            "step": list(range(4)) * 2,
            "loss": [4.0, 3.0, 2.5, 2.0, 4.0, 3.5, 3.0, 2.8],
            "kind": ["mono", "cross", "mono", "cross"] + ["mono"] * 4,
            "arm": ["hybrid-a0.5-full"] * 4 + ["mono-full"] * 4,
            "base_seed": 0,
            "seed": 0,
        }
    )
    curves = loss_curves_figure(logs, smooth=2, warmup=2)
    labelled(curves)
    assert curves.axes[0].get_yscale() == "log"
    shaded = [p for p in curves.axes[0].patches if p.get_facecolor()[:3] == (0.9, 0.9, 0.9)]
    assert len(shaded) == 1 and shaded[0].get_x() + shaded[0].get_width() == 2  # the warm-up
    legend = [t.get_text() for t in curves.axes[0].get_legend().get_texts()]
    assert legend == ["mono-full", "hybrid-a0.5-full"]  # the study's arm order
    fig = batch_kind_figure(logs)
    labelled(fig)
    widths = sorted(round(p.get_width()) for p in fig.axes[0].patches if p.get_width() > 0)
    assert widths == [50, 50, 100]


def test_loss_band_is_the_range_over_runs() -> None:
    """Six seeds at losses 1 to 6 every step: the band runs from 1 to 6 (their range), not a
    bootstrap interval of the runs' mean (about 2.5 to 4.5)."""
    logs = pd.DataFrame(
        [{"arm": "mono-full", "base_seed": 0, "seed": seed, "step": step, "loss": loss}
         for seed, loss in enumerate([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) for step in range(5)]
    )  # fmt: skip
    ax = loss_curves_figure(logs, smooth=1).axes[0]
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == 1.0 and band[:, 1].max() == 6.0
    assert "range" in ax.get_title()


def small_set() -> ImageTextSet:
    captions = pd.DataFrame(
        {
            "image_id": [0, 0, 1, 1, 0, 1],
            "lang": ["en", "de", "en", "de", "en", "de"],
            "caption_idx": [0, 0, 0, 0, 1, 1],
            "caption": [EVIL, "rot", "blue", "blau", "a red one", "blaue"],
        }
    )
    return ImageTextSet("t", ["a", "b"], ArrayImages(np.zeros((2, 8, 8, 3), np.uint8)), captions)


def test_galleries_escape_captions() -> None:
    images = small_set()
    page = caption_gallery_html(images, [0, 1], ["en", "de"])
    assert EVIL not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert page.count("<tr>") == 3
    batch = BatchSampler("cross", images.captions, ["en", "de"], 2, seed=0).batch(0)
    page = batch_gallery_html(images, batch)
    assert EVIL not in page and "cross batch (step 0)" in page
    page = batch_gallery_html(images, batch, strategy="hybrid")
    assert "hybrid batch (step 0: it drew a cross batch)" in page


def test_caption_gallery_labels_noisy_captions() -> None:
    images = small_set()
    noise = pd.DataFrame(
        {
            "image_id": [0, 0, 1, 1, 0],
            "lang": ["en", "de", "en", "de", "en"],
            "caption_idx": [0, 0, 0, 0, 1],
            "noise": ["clean", "mismatch", "clean", "clean", "truncate"],
        }
    )
    page = caption_gallery_html(images, [0, 1], ["en", "de"], noise=noise)
    rows = page.split("<tr>")[1:]
    assert rows[0].endswith("<th>noise</th></tr>")
    assert rows[1].endswith("<td>de: mismatch</td></tr>")  # the shown captions are index 0
    assert rows[2].endswith("<td>clean</td></tr></table>")
    assert "noise" not in caption_gallery_html(images, [0], ["en"])
