"""HTML galleries of images with their captions, safe to put in a report.

Captions come from the web (alt-text), so every caption is HTML-escaped; images are embedded
as base64 PNG so a report is one self-contained file. HTML rather than a matplotlib grid because
the browser has fonts for every script (Devanagari, Han, kana), matplotlib's default font does not.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence

import pandas as pd
from PIL import Image

from xlr.data.imagetext import ImageTextSet


def png_data_uri(image: Image.Image, size: int) -> str:
    """``image`` resized to ``size`` pixels square as an inline PNG, for self-contained pages."""
    buffer = io.BytesIO()
    image.resize((size, size), resample=0).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def caption_gallery_html(
    images: ImageTextSet,
    image_ids: Sequence[int],
    langs: Sequence[str],
    size: int = 96,
    noise: pd.DataFrame | None = None,
) -> str:
    """A table: one row per image, its thumbnail, then its first caption in each language.

    ``noise`` (``image_id, lang, caption_idx, noise``: the corpus's label of each caption, see
    :func:`xlr.data.prepare.caption_noise`) adds a last column naming the shown captions that
    are web-like noise (``de: mismatch``: describes another image), or ``clean``, so a reader
    does not take an intended mismatch for a broken pairing.
    """
    header = "".join(f"<th>{html.escape(lang)}</th>" for lang in langs)
    if noise is not None:
        header += "<th>noise</th>"
        labels = noise.set_index(["image_id", "lang", "caption_idx"])["noise"]
    rows = []
    captions = images.captions.set_index(["image_id", "lang"]).sort_index()
    for image_id in image_ids:
        cells, noisy = [], []
        for lang in langs:
            key = (image_id, lang)
            shown = captions.loc[[key]].iloc[0] if key in captions.index else None
            cells.append(f"<td>{html.escape('' if shown is None else shown['caption'])}</td>")
            if noise is not None and shown is not None:
                label = labels.get((image_id, lang, shown["caption_idx"]), "clean")
                if label != "clean":
                    noisy.append(f"{lang}: {label}")
        if noise is not None:
            cells.append(f"<td>{html.escape('; '.join(noisy) or 'clean')}</td>")
        uri = png_data_uri(images.images[image_id], size)
        thumbnail = f'<td><img src="{uri}" width="{size}" alt="image {image_id}"></td>'
        rows.append(f"<tr>{thumbnail}{''.join(cells)}</tr>")
    return f"<table><tr><th>image</th>{header}</tr>{''.join(rows)}</table>"
