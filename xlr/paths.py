"""Where the project's files are: the root that relative params paths (``runs/``, ``reports/``,
LAION inputs, model files) are anchored to, whichever directory a notebook or command runs in."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xlr.config import Params


def project_root() -> Path:
    """Where relative paths in params files point: $XLR_ROOT, else the source checkout, else cwd.

    Why: notebooks run with ``notebooks/`` as working directory (in JupyterLab, and under
    ``xlr reproduce``'s papermill) while the CLI and Python callers run from wherever they are
    started; anchoring paths here makes all of them write to the same ``runs/`` and
    ``reports/``.
    """
    if env := os.environ.get("XLR_ROOT"):
        return Path(env).resolve()
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file():
        return checkout
    return Path.cwd()


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """A params path, absolute as given or relative to :func:`project_root`."""
    path = Path(path)
    return path if path.is_absolute() else project_root() / path


def report_dir(params: Params) -> Path:
    """``reports/<run.name>``: executed notebooks, HTML, figures and the index.

    Here, not in :mod:`xlr.report`: every notebook names this folder, and importing the
    reproduction machinery (papermill, nbconvert, the kernel manager) cost each kernel ~2 s.
    """
    return resolve_path(params.run.reports_dir) / params.run.name
