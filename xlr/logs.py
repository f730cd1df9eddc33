"""Warnings and library log records go to a file, not to the page.

A notebook's HTML is what a reviewer reads: a library's ``FutureWarning`` with a path into the
virtual environment, or open_clip's "no pretrained weights loaded" when the tiny base is built
from random weights, reads there as a bug. :func:`log_to_file` sends Python warnings and every
logging record of the process to one file instead, and names that file in the environment so
the worker processes the study spawns (:mod:`xlr.workers`) append to it too.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

LOG_ENV = "XLR_LOG_FILE"  # inherited by spawned workers: where they send their records
_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def log_to_file(path: str | os.PathLike[str], append: bool = False) -> Path:
    """Route warnings and log records (INFO and up) of this process and its workers to ``path``
    (started afresh unless ``append``).

    Replaces the root logger's stream handlers (stderr ones included), so ``logging.warning``
    no longer installs a stderr handler, and captures :mod:`warnings` through logging (each
    warning once per place, as Python's default filter shows it). Calling it again (a re-run
    cell) replaces the file handler rather than adding a second one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.StreamHandler):  # FileHandler is one too
            root.removeHandler(handler)
            handler.close()
    handler = logging.FileHandler(path, mode="a" if append else "w", encoding="utf-8")
    handler.setFormatter(logging.Formatter(_FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    os.environ[LOG_ENV] = str(path)
    return path


def log_to_inherited_file() -> None:
    """In a worker process: route to the file its parent named (:data:`LOG_ENV`), if any."""
    if path := os.environ.get(LOG_ENV):
        log_to_file(path, append=True)
