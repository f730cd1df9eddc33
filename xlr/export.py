"""Executed notebooks to HTML pages that read offline, as a reviewer opens them from a folder.

nbconvert's lab template loads require.js and MathJax from a CDN on every page, an unpinned
widget embedder where the notebook saved widget state and mermaid for diagrams; tqdm's notebook
bars are widgets, so offline they render blank. Here the pages come from the ``xlr_offline``
template (``xlr/templates/``: the lab page without those scripts, plus the font stack of
``static/xlr.css``), and every widget output is first replaced by the text its saved state
shows: a finished bar reads as tqdm prints it in a terminal.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import mistune
import nbformat
from nbconvert import HTMLExporter

from xlr.io import atomic_write_text

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE = "xlr_offline"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
BAR_WIDTH = 10  # characters of a text progress bar, as tqdm draws it without a known width
# a script, stylesheet, font, image or frame fetched from another host: what an offline page
# must not need (a link the reader may follow, <a href>, is no fetch)
EXTERNAL_FETCH = re.compile(
    r"<(?:script|img|iframe|embed|source|video|audio|track|object|image|use|input)\b[^>]*"
    r"(?<![\w-])(?:src|srcset|poster|data|href|xlink:href)\s*=\s*[\"']?(?:https?:)?//"
    r"|<link\b[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//"
    r"|@import\s+(?:url\()?[\"']?(?:https?:)?//"
    r"|\burl\(\s*[\"']?(?:https?:)?//"
    r"|\bimport\(\s*[\"'](?:https?:)?//",
    re.IGNORECASE,
)


def page_css() -> str:
    """The stylesheet every page shares (the font stack and the index's layout)."""
    return (TEMPLATE_DIR / TEMPLATE / "static" / "xlr.css").read_text(encoding="utf-8")


def external_fetches(page: str) -> list[str]:
    """The places where ``page`` would fetch a script, stylesheet, font, image or frame from
    another host."""
    return [page[m.start() : m.start() + 120] for m in EXTERNAL_FETCH.finditer(page)]


def widget_text(state: dict, model_id: str) -> str | None:
    """What the widget ``model_id`` showed when the notebook finished, as plain text.

    A box joins its children's text (tqdm's bar is a box of a description, a bar and the
    counts); a progress bar becomes ``|█████     |``; a label or HTML widget gives its value
    unescaped, as text (it is escaped again when the page is written), so a finished tqdm bar
    reads ``steps: 100%|██████████| 3/3 [00:00<00:00, 105.81it/s]`` as in a terminal. None
    when the state does not hold the widget (a bar closed with ``leave=False``, or none saved).
    """
    model = state.get(model_id)
    if model is None:
        return None
    values = model.get("state", {})
    name = model.get("model_name", "")
    if "children" in values:
        parts = [
            widget_text(state, child.removeprefix("IPY_MODEL_")) for child in values["children"]
        ]
        return "".join(part for part in parts if part)
    if name.endswith("ProgressModel"):
        top = float(values.get("max") or 0) - float(values.get("min") or 0)
        done = float(values.get("value") or 0) - float(values.get("min") or 0)
        filled = round(BAR_WIDTH * min(max(done / top, 0.0), 1.0)) if top > 0 else 0
        return "|" + "█" * filled + " " * (BAR_WIDTH - filled) + "|"
    value = values.get("value", values.get("description", ""))
    if not isinstance(value, str):
        return None
    # tqdm pads its HTML with figure spaces (U+2007) to keep digits aligned; text needs none
    return html.unescape(value).replace("\u2007", " ")


def flatten_widgets(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Replace every widget output by the text of its saved state, in place, and drop the saved
    state: the page then needs no widget script. An output whose widget left no state falls back
    to its plain-text form, and is dropped when it has none."""
    saved = notebook.metadata.pop("widgets", {})
    state = saved.get(WIDGET_STATE, {}).get("state", {})
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.outputs:
            data = output.get("data", {})
            if WIDGET_VIEW not in data:
                kept.append(output)
                continue
            text = widget_text(state, data[WIDGET_VIEW].get("model_id", ""))
            text = text if text is not None else data.get("text/plain", "")
            if text:
                output["data"] = {"text/plain": text}
                kept.append(output)
        cell.outputs = kept
    return notebook


_MARKDOWN = mistune.create_markdown(escape=True, plugins=["table"])


def safe_markdown(text: str) -> str:
    """Markdown as HTML with any raw HTML in it escaped and script links (``javascript:``,
    ``data:``) blocked, tables rendered (mistune): for Markdown that may hold what the web
    wrote, in the exported pages and the landing page alike."""
    return _MARKDOWN(text)


def inert_markdown(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Render every Markdown output through :func:`safe_markdown`, in place: nbconvert passes
    raw HTML and ``javascript:`` links in Markdown through, so a caption or name that reached a
    Markdown table (``display(Markdown(...))``) would be live script in a reviewer's page."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "text/markdown" in data:
                text = data.pop("text/markdown")
                data["text/html"] = safe_markdown("".join(text) if isinstance(text, list) else text)
    return notebook


def offline_html(notebook: nbformat.NotebookNode, with_code: bool = True) -> str:
    """One notebook as a self-contained page (images inline, no script from another host)."""
    exporter = HTMLExporter(
        template_name=TEMPLATE,
        extra_template_basedirs=[str(TEMPLATE_DIR)],
        exclude_input=not with_code,
        exclude_input_prompt=not with_code,
        exclude_output_prompt=not with_code,  # "Out[4]:" means nothing without the code
    )
    page, _ = exporter.from_notebook_node(inert_markdown(flatten_widgets(notebook)))
    fetches = external_fetches(page)
    if fetches:
        where = notebook.metadata.get("papermill", {}).get("output_path", "the page")
        raise RuntimeError(
            f"{where}: fetches from "
            f"another host: {fetches[0]!r}; remove that block from the {TEMPLATE} template "
            f"(xlr/templates/{TEMPLATE}/) or that output from the notebook"
        )
    return page


def export_html(executed: Path) -> tuple[Path, Path]:
    """``NN_x.html`` (code and outputs) and ``NN_x.nocode.html`` (outputs only) beside it."""
    full = atomic_write_text(
        executed.with_suffix(".html"), offline_html(nbformat.read(executed, as_version=4))
    )
    bare = atomic_write_text(
        executed.with_suffix(".nocode.html"),
        offline_html(nbformat.read(executed, as_version=4), with_code=False),
    )
    return full, bare
