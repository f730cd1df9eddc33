"""HTML views of training batches for notebook 02, escaped like every caption in a report."""

from __future__ import annotations

import html

from xlr.data.gallery import png_data_uri
from xlr.data.imagetext import ImageTextSet
from xlr.train.batching import Batch


def batch_gallery_html(
    images: ImageTextSet, batch: Batch, n: int = 4, size: int = 64, strategy: str | None = None
) -> str:
    """The first ``n`` examples of a training batch: image, query and target captions.

    Headed by the batch's kind; given the ``strategy`` that drew it, by that, with the kind it
    drew when they differ (a hybrid batch is a mono or a cross batch at each step)."""
    head = "".join(
        f"<th>{h}</th>" for h in ("image", "query lang", "query", "target lang", "target")
    )
    rows = []
    for i in range(min(n, len(batch))):
        uri = png_data_uri(images.images[int(batch.image_ids[i])], size)
        target = batch.target_texts[i]
        cells = (
            f'<td><img src="{uri}" width="{size}" alt="image {int(batch.image_ids[i])}"></td>'
            f"<td>{html.escape(batch.query_langs[i])}</td>"
            f"<td>{html.escape(batch.query_texts[i])}</td>"
            f"<td>{html.escape(batch.target_langs[i])}</td>"
            f"<td>{html.escape(target) if target is not None else '(no second caption)'}</td>"
        )
        rows.append(f"<tr>{cells}</tr>")
    title = f"{batch.kind} batch (step {batch.step})"
    if strategy is not None and strategy != batch.kind:
        title = f"{strategy} batch (step {batch.step}: it drew a {batch.kind} batch)"
    title = html.escape(title)
    return f"<p><b>{title}</b></p><table><tr>{head}</tr>{''.join(rows)}</table>"
