"""Warnings and library log records land in the notebook's log file, not on the page, from the
kernel and from the worker processes it spawns."""

import logging
import os
import subprocess
import sys
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path

from xlr.config import load_params
from xlr.logs import LOG_ENV
from xlr.notebook import notebook_log
from xlr.paths import resolve_path
from xlr.workers import run_jobs


@dataclass(frozen=True)
class Warn:
    """A picklable job that warns and logs as a library would, in a worker process."""

    text: str

    def __call__(self) -> int:
        warnings.warn(f"{self.text} from a worker", FutureWarning, stacklevel=1)
        logging.getLogger("some.library").warning("%s logged by a worker", self.text)
        return os.getpid()


def test_warnings_and_logs_go_to_the_file_not_stderr(tmp_path: Path) -> None:
    """In a fresh interpreter (as a kernel is): nothing reaches stderr, all reaches the file."""
    script = textwrap.dedent(
        f"""
        import logging, warnings
        from xlr.logs import log_to_file
        log_to_file({str(tmp_path / "logs" / "01.log")!r})
        warnings.warn("is_gradient_checkpointing is deprecated", FutureWarning)
        logging.warning("No pretrained weights loaded for model 'local-dir:/x'")
        logging.getLogger("open_clip").info("Loaded config")
        print("page output")
        """
    )
    env = os.environ | {"PYTHONPATH": str(resolve_path("."))}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout == "page output\n"
    assert done.stderr == ""
    log = (tmp_path / "logs" / "01.log").read_text()
    assert "FutureWarning: is_gradient_checkpointing is deprecated" in log
    assert "No pretrained weights loaded" in log and "Loaded config" in log


def test_workers_append_to_the_notebook_log(tmp_path: Path, monkeypatch) -> None:
    params = load_params(resolve_path("params/smoke.yaml"))
    params = params.model_copy(
        update={"run": params.run.model_copy(update={"reports_dir": str(tmp_path)})}
    )
    monkeypatch.setenv(LOG_ENV, "")  # restored after the test: notebook_log sets it
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        assert notebook_log(params, "04") == Path("logs/04.log")
        pids = run_jobs([Warn("first"), Warn("second")], workers=2, progress=False)
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], root.level = saved
        logging.captureWarnings(False)
    log = (tmp_path / params.run.name / "logs" / "04.log").read_text()
    assert os.getpid() not in pids
    for text in ("first", "second"):
        assert f"{text} from a worker" in log and f"{text} logged by a worker" in log
