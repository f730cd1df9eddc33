"""One-command reproduction: run the numbered notebooks with papermill, export HTML, index it all.

``xlr reproduce params/P.yaml`` executes ``notebooks/NN_*.ipynb`` in order into
``reports/<run.name>/``, each with P's validated sections injected. It stops at the first
failing notebook, naming it and the failing cell, and leaves every earlier report intact. A
re-run skips notebooks already executed with the same parameters, the same notebook file and
the same ``xlr/`` code unless ``force``; once one notebook runs, all later ones run too, since
they read what it writes. Each executed notebook is
exported to HTML twice (with code, and without for reviewers) by :mod:`xlr.export`, pages that
read offline, and :mod:`xlr.report_index` writes ``index.html``. Papermill runs them on the
``xlr`` kernel (:mod:`xlr.kernel`), registered from this environment when missing.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

import papermill
from tqdm.auto import tqdm

from xlr.config import Params, load_params
from xlr.export import export_html
from xlr.io import atomic_write_json, file_sha256
from xlr.kernel import KERNEL_NAME, ensure_kernel
from xlr.paths import report_dir
from xlr.report_index import INDEX_FILE, NotebookRun, write_index

__all__ = ["NotebookFailed", "NotebookRun", "export_html", "reproduce"]

PACKAGE_DIR = Path(__file__).resolve().parent
NOTEBOOK_DIR = PACKAGE_DIR.parent / "notebooks"
STATUS_FILE = "status.json"
# What notebooks write in the report folder: these folders' files, and these files
OUTPUT_FOLDERS: tuple[str, ...] = ("tables", "figures", "logs")
OUTPUT_FILES: tuple[str, ...] = ("claims.csv", "claims.md")
# status.json's own entry: what its per-notebook hashes are (the index explains both hashes)
STATUS_ABOUT = {
    "params": "sha256 of the validated params (every section after defaults, sorted JSON): a "
    "re-run compares it to skip a notebook; index.html also gives the params file's own sha256",
    "notebook": "sha256 of the notebook file that ran",
    "code": "sha256 over the xlr package's files (path and content): changed code re-runs",
    "wall_s": "seconds the notebook took",
    "outputs": "the report folder's files the notebook wrote (tables, figures, logs): removed "
    "before it runs again, so a table of a benchmark no longer evaluated does not stay",
}


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names it, the failing cell and the executed copy."""


def study_notebooks(directory: Path | None = None) -> list[Path]:
    """The numbered notebooks, in order (``notebooks/`` of the checkout by default)."""
    directory = directory or NOTEBOOK_DIR
    found = sorted(directory.glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise FileNotFoundError(f"{directory}: no numbered notebooks (NN_name.ipynb) to run")
    return found


def _params_digest(params: Params) -> str:
    blob = json.dumps(params.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


CODE_SUFFIXES: tuple[str, ...] = (".py", ".json", ".j2", ".css")  # what xlr/ runs or renders


def code_digest(package: Path = PACKAGE_DIR) -> str:
    """sha256 over the ``xlr`` package's code files (:data:`CODE_SUFFIXES`; relative path and
    content hash): a report reflects the code that wrote it, so a re-run repeats notebooks whose
    code changed, even uncommitted (the commit alone would miss an edit). Editor backups, caches
    and other files do not count."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.suffix in CODE_SUFFIXES and path.is_file() and "__pycache__" not in path.parts:
            digest.update(f"{path.relative_to(package).as_posix()}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def _read_status(out: Path) -> dict:
    path = out / STATUS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _execute(notebook: Path, out: Path, params: Params) -> None:
    executed = out / notebook.name
    partial = out / f".{notebook.stem}.running.ipynb"
    try:
        papermill.execute_notebook(
            str(notebook),
            str(partial),
            parameters=params.model_dump(mode="json"),
            cwd=str(notebook.parent),
            kernel_name=KERNEL_NAME,
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
    digest, code = _params_digest(params), code_digest()
    status = _read_status(out)
    status["about"] = STATUS_ABOUT
    ensure_kernel()
    runs: list[NotebookRun] = []
    listed = list(notebooks or study_notebooks())
    try:
        for i, notebook in enumerate(tqdm(listed, desc="notebooks", unit="nb")):
            previous = status.get(notebook.name, {})
            source = file_sha256(notebook)
            same_inputs = previous.get("params") == digest and previous.get("notebook") == source
            same_inputs = same_inputs and previous.get("code") == code
            done = same_inputs and all(path.is_file() for path in _outputs(out, notebook))
            # a notebook that runs may change what every later one reads: they run again too
            if done and not force and not any(run.status == "ran" for run in runs):
                runs.append(NotebookRun(notebook.name, "skipped", previous["wall_s"]))
                continue
            # ... in this call or, should it stop, the next: their entries and what they wrote
            # go before it runs
            for later in listed[i:]:
                for written in status.pop(later.name, {}).get("outputs", []):
                    (out / written).unlink(missing_ok=True)
            atomic_write_json(status, out / STATUS_FILE)
            before = _written_files(out)
            start = time.perf_counter()
            try:
                _execute(notebook, out, params)
            finally:  # what it wrote, in a run that failed too: removed before it runs again
                after = _written_files(out)
                changed = [name for name, stamp in after.items() if before.get(name) != stamp]
                status[notebook.name] = {"outputs": sorted(changed)}  # not done: no hashes
                atomic_write_json(status, out / STATUS_FILE)
            wall = time.perf_counter() - start
            status[notebook.name] |= {
                "params": digest,
                "notebook": source,
                "code": code,
                "wall_s": round(wall, 2),
            }
            atomic_write_json(status, out / STATUS_FILE)
            runs.append(NotebookRun(notebook.name, "ran", wall))
    except BaseException:
        # the landing page of an earlier run would pass for this one's beside its new reports
        (out / INDEX_FILE).unlink(missing_ok=True)
        raise
    write_index(out, params, params_file, digest, runs)
    return runs


def _written_files(out: Path) -> dict[str, int]:
    """The files notebooks write in the report folder (:data:`OUTPUT_FOLDERS`' files and
    :data:`OUTPUT_FILES`), by relative path, with their change time; nothing else there (a
    user's file, a runs folder placed inside) is ever taken for a notebook's."""
    found = [out / name for name in OUTPUT_FILES]
    found += [path for folder in OUTPUT_FOLDERS for path in (out / folder).rglob("*")]
    return {
        path.relative_to(out).as_posix(): path.stat().st_mtime_ns
        for path in found
        if path.is_file() and not path.name.startswith(".")  # atomic writes' temporaries
    }


def _outputs(out: Path, notebook: Path) -> list[Path]:
    """What a notebook's run leaves in ``out``: the executed notebook and its two pages."""
    executed = out / notebook.name
    return [executed, executed.with_suffix(".html"), executed.with_suffix(".nocode.html")]
