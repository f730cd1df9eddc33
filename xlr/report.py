"""One-command reproduction: run the numbered notebooks with papermill, export HTML, index it all.

``xlr reproduce params/P.yaml`` executes ``notebooks/NN_*.ipynb`` in order into
``reports/<run.name>/``, each with P's validated sections injected. It stops at the first
failing notebook, naming it and the failing cell, and leaves every earlier report intact. A
re-run skips notebooks already executed with the same parameters and the same notebook file
unless ``force``; once one notebook runs, all later ones run too, since they read what it
writes (a change to ``xlr/`` alone is not detected: use ``force``). Each executed notebook is
exported to HTML twice (with code, and without for reviewers), and ``index.html`` links them
with the figures, the tables (claims first) and a provenance block.
"""

from __future__ import annotations

import hashlib
import html
import importlib.metadata
import json
import platform
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mistune
import nbformat
import papermill
from nbconvert import HTMLExporter
from tqdm.auto import tqdm

from xlr.analysis.tables import claims_columns_markdown
from xlr.config import Params, load_params
from xlr.io import atomic_write_json, atomic_write_text, file_sha256
from xlr.paths import resolve_path

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
STATUS_FILE = "status.json"
PACKAGES = ("xlr", "torch", "open_clip_torch", "transformers", "peft", "faiss-cpu", "papermill")


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names it, the failing cell and the executed copy."""


@dataclass(frozen=True)
class NotebookRun:
    """What happened to one notebook in a reproduction."""

    name: str
    status: str  # "ran" or "skipped"
    wall_s: float


def study_notebooks(directory: Path | None = None) -> list[Path]:
    """The numbered notebooks, in order (``notebooks/`` of the checkout by default)."""
    directory = directory or NOTEBOOK_DIR
    found = sorted(directory.glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise FileNotFoundError(f"{directory}: no numbered notebooks (NN_name.ipynb) to run")
    return found


def report_dir(params: Params) -> Path:
    """``reports/<run.name>``: executed notebooks, HTML, figures and the index."""
    return resolve_path(params.run.reports_dir) / params.run.name


def _params_digest(params: Params) -> str:
    blob = json.dumps(params.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _read_status(out: Path) -> dict:
    path = out / STATUS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def export_html(executed: Path) -> tuple[Path, Path]:
    """``NN_x.html`` (code and outputs) and ``NN_x.nocode.html`` (outputs only) beside it."""
    notebook = nbformat.read(executed, as_version=4)
    with_code, _ = HTMLExporter().from_notebook_node(notebook)
    no_code, _ = HTMLExporter(exclude_input=True, exclude_input_prompt=True).from_notebook_node(
        notebook
    )
    full = atomic_write_text(executed.with_suffix(".html"), with_code)
    bare = atomic_write_text(executed.with_suffix(".nocode.html"), no_code)
    return full, bare


def _execute(notebook: Path, out: Path, params: Params) -> None:
    executed = out / notebook.name
    partial = out / f".{notebook.stem}.running.ipynb"
    try:
        papermill.execute_notebook(
            str(notebook),
            str(partial),
            parameters=params.model_dump(mode="json"),
            cwd=str(notebook.parent),
            progress_bar=False,
        )
    except papermill.PapermillExecutionError as err:
        failed = partial.replace(out / f"{notebook.stem}.failed.ipynb")
        raise NotebookFailed(
            f"{notebook.name}: cell {err.cell_index} (execution count {err.exec_count}) raised "
            f"{err.ename}: {err.evalue}; the executed notebook with its traceback is {failed}"
        ) from None
    partial.replace(executed)
    (out / f"{notebook.stem}.failed.ipynb").unlink(missing_ok=True)
    export_html(executed)


def reproduce(
    params_file: str | Path,
    force: bool = False,
    notebooks: Sequence[Path] | None = None,
) -> list[NotebookRun]:
    """Run the study's notebooks for one params file and write ``index.html``."""
    params_file = Path(params_file)
    params = load_params(params_file)
    out = report_dir(params)
    out.mkdir(parents=True, exist_ok=True)
    digest = _params_digest(params)
    status = _read_status(out)
    runs: list[NotebookRun] = []
    for notebook in tqdm(notebooks or study_notebooks(), desc="notebooks", unit="nb"):
        previous = status.get(notebook.name, {})
        source = file_sha256(notebook)
        same_inputs = previous.get("params") == digest and previous.get("notebook") == source
        done = same_inputs and (out / notebook.name).is_file()
        # a notebook that runs may change what every later one reads: they run again too
        if done and not force and not any(run.status == "ran" for run in runs):
            runs.append(NotebookRun(notebook.name, "skipped", previous["wall_s"]))
            continue
        start = time.perf_counter()
        _execute(notebook, out, params)
        wall = time.perf_counter() - start
        status[notebook.name] = {"params": digest, "notebook": source, "wall_s": round(wall, 2)}
        atomic_write_json(status, out / STATUS_FILE)
        runs.append(NotebookRun(notebook.name, "ran", wall))
    write_index(out, params, params_file, runs)
    return runs


def _git_commit() -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=NOTEBOOK_DIR.parent,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return result.stdout.strip()


def _package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"CUDA: {torch.cuda.get_device_name(0)}"
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def provenance(params: Params, params_file: Path, runs: Sequence[NotebookRun]) -> dict:
    """Where the report came from: code, parameters, libraries, device, seeds, time."""
    return {
        "git commit": _git_commit(),
        "params file": str(params_file),
        "params sha256": file_sha256(params_file),
        "packages": _package_versions(),
        "device": _device(),
        "seeds": params.run.seeds,
        "base seeds": params.run.base_seeds,
        "wall time per notebook (s)": {run.name: round(run.wall_s, 1) for run in runs},
    }


def _links(out: Path) -> str:
    items = []
    for executed in sorted(out.glob("[0-9][0-9]_*.ipynb")):
        if executed.name.endswith(".failed.ipynb"):
            continue
        stem = html.escape(executed.stem)
        items.append(
            f'<li>{stem}: <a href="{stem}.html">report</a> · '
            f'<a href="{stem}.nocode.html">without code</a> · '
            f'<a href="{html.escape(executed.name)}">notebook</a></li>'
        )
    return "<ul>" + "".join(items) + "</ul>"


def _figures(out: Path) -> str:
    figures = sorted((out / "figures").glob("*.png")) if (out / "figures").is_dir() else []
    if not figures:
        return "<p>No figures yet.</p>"
    return "".join(
        f'<figure><img src="figures/{html.escape(f.name)}" width="480" '
        f'alt="{html.escape(f.stem)}"><figcaption>{html.escape(f.stem)}</figcaption></figure>'
        for f in figures
    )


def _href(out: Path, path: Path) -> str:
    """``path`` relative to the report folder, escaped for an HTML attribute."""
    return html.escape(path.relative_to(out).as_posix())


def _tables(out: Path) -> str:
    """The claims table with its columns explained (:data:`xlr.analysis.tables.CLAIMS_COLUMNS`,
    as notebook 06 shows them), then every table under ``tables/``: rendered from their Markdown
    with raw HTML escaped (an arm name or caption stays text), linked with their CSV twins."""
    files = [out / "claims.md", *sorted((out / "tables").glob("*.md"))]
    files = [path for path in files if path.is_file()]
    if not files:
        return "<p>No tables yet (notebook 06 writes them).</p>"
    render = mistune.create_markdown(escape=True, plugins=["table"])
    parts = []
    for path in files:
        links = [f'<a href="{_href(out, path)}">Markdown</a>']
        if path.with_suffix(".csv").is_file():
            links.append(f'<a href="{_href(out, path.with_suffix(".csv"))}">CSV</a>')
        heading = f"<h3>{html.escape(path.stem)}</h3><p>{' · '.join(links)}</p>"
        parts.append(heading + render(path.read_text()))
        if path.name == "claims.md":
            parts.append("<p>The columns:</p>" + render(claims_columns_markdown()))
    return "".join(parts)


def write_index(out: Path, params: Params, params_file: Path, runs: Sequence[NotebookRun]) -> Path:
    """``index.html``: every report, the figures, the tables and the provenance block."""
    prov = html.escape(json.dumps(provenance(params, params_file, runs), indent=2))
    title = html.escape(f"xlr study: {params.run.name}")
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
        f"<h1>{title}</h1><h2>Reports</h2>{_links(out)}<h2>Figures</h2>{_figures(out)}"
        f"<h2>Tables</h2>{_tables(out)}<h2>Provenance</h2><pre>{prov}</pre></body></html>"
    )
    return atomic_write_text(out / "index.html", page)
