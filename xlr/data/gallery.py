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

from xlr.data.imagetext import ImageTextSet
from xlr.train.batching import Batch


def _png_data_uri(image, size: int) -> str:
    buffer = io.BytesIO()
    image.resize((size, size), resample=0).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def caption_gallery_html(
    images: ImageTextSet, image_ids: Sequence[int], langs: Sequence[str], size: int = 96
) -> str:
    """A table: one row per image, its thumbnail, then its first caption in each language."""
    header = "".join(f"<th>{html.escape(lang)}</th>" for lang in langs)
    rows = []
    captions = images.captions.set_index(["image_id", "lang"]).sort_index()
    for image_id in image_ids:
        cells = []
        for lang in langs:
            key = (image_id, lang)
            text = captions.loc[[key], "caption"].iloc[0] if key in captions.index else ""
            cells.append(f"<td>{html.escape(text)}</td>")
        uri = _png_data_uri(images.images[image_id], size)
        thumbnail = f'<td><img src="{uri}" width="{size}" alt="image {image_id}"></td>'
        rows.append(f"<tr>{thumbnail}{''.join(cells)}</tr>")
    return f"<table><tr><th>image</th>{header}</tr>{''.join(rows)}</table>"


def batch_gallery_html(images: ImageTextSet, batch: Batch, n: int = 4, size: int = 64) -> str:
    """The first ``n`` examples of a training batch: image, query and target captions."""
    head = "".join(
        f"<th>{h}</th>" for h in ("image", "query lang", "query", "target lang", "target")
    )
    rows = []
    for i in range(min(n, len(batch))):
        uri = _png_data_uri(images.images[int(batch.image_ids[i])], size)
        target = batch.target_texts[i]
        cells = (
            f'<td><img src="{uri}" width="{size}" alt="image {int(batch.image_ids[i])}"></td>'
            f"<td>{html.escape(batch.query_langs[i])}</td>"
            f"<td>{html.escape(batch.query_texts[i])}</td>"
            f"<td>{html.escape(batch.target_langs[i])}</td>"
            f"<td>{html.escape(target) if target is not None else '(no second caption)'}</td>"
        )
        rows.append(f"<tr>{cells}</tr>")
    title = html.escape(f"{batch.kind} batch (step {batch.step})")
    return f"<p><b>{title}</b></p><table><tr>{head}</tr>{''.join(rows)}</table>"
