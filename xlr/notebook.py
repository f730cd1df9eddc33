"""Parameters of a notebook: papermill's injected sections, or the params file when run as-is.

Every notebook's ``parameters`` cell names a params file (the smoke study, so Run All in
JupyterLab works) and one variable per section set to ``None``. ``papermill -f params/P.yaml``
injects the file's sections under those names; this module turns either form into one validated
:class:`~xlr.config.Params`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from xlr.config import Params, load_params, parse_params
from xlr.logs import log_to_file
from xlr.paths import project_root, report_dir, resolve_path

SECTIONS: tuple[str, ...] = ("run", "data", "model", "train", "adapters", "eval", "report")


def notebook_params(params_file: str, **sections: Any) -> Params:
    """Validate the injected sections if papermill gave any, else load ``params_file``.

    ``params_file`` is tried relative to the working directory first (``notebooks/`` in
    JupyterLab), then to the project root.
    """
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise TypeError(f"unknown notebook parameter sections {unknown}; allowed: {SECTIONS}")
    injected = {name: value for name, value in sections.items() if value is not None}
    if injected:
        return parse_params(injected, source="papermill parameters")
    path = Path(params_file)
    return load_params(path if path.exists() else resolve_path(path))


def notebook_log(params: Params, notebook: str) -> Path:
    """Send this notebook's warnings and library log records to ``logs/<notebook>.log`` in the
    run's report folder instead of the page (:func:`xlr.logs.log_to_file`); returns that path
    relative to the report folder, for the notebook to name.

    Called in each notebook's first code cell, right after its params are read.
    """
    reports = report_dir(params)
    return log_to_file(reports / "logs" / f"{notebook}.log").relative_to(reports)


def shown_path(path: str | os.PathLike[str]) -> str:
    """``path`` as a notebook prints it: relative to the project root. An absolute path says
    where the author's checkout lived, not where the reader's report and runs are."""
    return os.path.relpath(path, project_root())
