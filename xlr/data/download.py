"""Download a LAION-schema sample with img2dataset and count what failed, per language.

Why img2dataset: LAION was built and is fetched with it, its webdataset output is what the training
loaders read (:mod:`xlr.data.shards` writes the same layout), and one call scales from this machine
(``multiprocessing``) to a cluster (``pyspark``, ``ray``) by changing ``download.distributor``.

Why in a child process: ``img2dataset.download`` replaces the caller's SIGINT handler with one that
calls ``sys.exit``, starts a non-daemon logger process that keeps the caller alive when the call
raises, and spawns workers that re-import the caller's ``__main__``. ``python -c`` isolates all
three. The child (:mod:`xlr.data.img2dataset_child`) joins the configured Spark or Ray cluster
and calls the Python API with keyword arguments passed as JSON, so no shell and no command-line
parsing sit in between.

Failed images never stop the study. Each sample row ends in one status: ``success``,
``failed_to_download`` (HTTP errors, timeouts, refused connections, X-Robots-Tag opt-outs),
``failed_to_resize`` (a body OpenCV cannot decode: truncated JPEGs, HTML or text served as an
image) or ``unaccounted`` (its shard crashed on every retry; its partial files are deleted). The
counts per ``LANGUAGE`` and the commonest error kinds go to ``download_report.json``. Only a
failure of img2dataset itself (a bad argument, its process killed) raises
:class:`Img2DatasetError`.

``out_dir`` holds img2dataset's output folder ``shards/`` (``{shard:05d}.tar``, ``.parquet``
with a status per sample, ``_stats.json``), ``img2dataset.log``, ``download_plan.json`` (what
is being downloaded) and the report, and appears whole or not at all: the download is written
in place into ``<out_dir>.partial/`` and renamed to ``out_dir`` once complete. Why in place:
about 900k images take hours, and img2dataset's incremental mode skips every shard whose
``_stats.json`` exists, so a download that was interrupted (Ctrl-C, a killed job, a crash)
resumes where it stopped when run again with the same sample and settings. img2dataset writes a
shard's ``_stats.json`` only after closing its tar and parquet, but not atomically, so before
resuming every shard is checked (stats readable and complete, tar and parquet present, the
parquet's row count equal to the stats' count) and the files of any other shard are deleted, to
be downloaded again. A finished ``out_dir`` with the same sample and settings is returned as
is; a different sample or setting replaces it once the new download is complete, and a
``.partial`` folder of another sample or setting is never overwritten (the error says how to
resume or discard it).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from xlr.data.download_settings import DownloadSection
from xlr.data.img2dataset_shards import (
    STATS_KEYS,
    drop_unfinished_shards,
    language_column,
    stats_totals,
    status_by_language,
)
from xlr.io import atomic_write_json, replace_dir

SAMPLE_COLUMNS: tuple[str, ...] = ("URL", "TEXT")
ADDITIONAL_COLUMNS: tuple[str, ...] = (
    "LANGUAGE",
    "ENG TEXT",
    "similarity",
    "punsafe",
    "pwatermark",
)
STATUSES: tuple[str, ...] = ("success", "failed_to_download", "failed_to_resize", "unaccounted")
REPORT_FILE = "download_report.json"
PLAN_FILE = "download_plan.json"
LOG_FILE = "img2dataset.log"
SHARD_DIR = "shards"  # img2dataset's output folder: it reads every *.json there as a shard's stats
PARTIAL_SUFFIX = ".partial"
TOP_ERROR_KINDS = 10
# How it runs, not what it fetches: left out of the fingerprint, so moving a finished download to
# a cluster's settings does not fetch it again.
EXECUTION_ARGUMENTS: frozenset[str] = frozenset(
    {"distributor", "processes_count", "thread_count", "incremental_mode"}
)
INSTALL_HINT = (
    "install it with `pip install -e '.[dev]'` then `pip install --no-deps img2dataset==1.47.0` "
    "(what `make env` does; img2dataset pins webdataset<0.3, which xlr does not need)"
)
_RUNNER = (
    "import json, sys; from xlr.data.img2dataset_child import run; "
    "run(json.loads(sys.argv[1]), json.loads(sys.argv[2]))"
)


class DownloadInputError(ValueError):
    """The sample parquet cannot be downloaded from; the message names the file and the column."""


class Img2DatasetError(RuntimeError):
    """img2dataset itself failed (not a single image); the message carries its log's tail."""


@dataclass(frozen=True)
class DownloadReport:
    """What a download fetched, per status overall and per language.

    ``totals`` come from img2dataset's ``*_stats.json``, ``per_language`` from its per-sample
    ``*.parquet``; both have one count per :data:`STATUSES` entry, and ``per_language`` also the
    sample's ``rows``. ``error_kinds`` are the commonest failure messages, HTTP errors folded by
    status code. ``fingerprint`` identifies the sample bytes and the arguments that decide
    content; ``seconds`` is wall-clock time of the last run, which resumed
    ``resumed_shards`` shards finished by earlier, interrupted runs.
    """

    fingerprint: str
    sample: str
    rows: int
    totals: dict[str, int]
    per_language: dict[str, dict[str, int]]
    error_kinds: dict[str, int]
    shards: list[str]
    img2dataset: dict[str, Any]
    seconds: float
    resumed_shards: int = 0

    @property
    def failed(self) -> int:
        """Rows without an image: every status but success."""
        return self.rows - self.totals["success"]

    def to_frame(self) -> pd.DataFrame:
        """One row per language: ``rows``, a count per status and ``success_rate``."""
        table = pd.DataFrame.from_dict(self.per_language, orient="index")[["rows", *STATUSES]]
        table.index.name = "language"
        table["success_rate"] = table["success"] / table["rows"]
        return table.sort_index()

    @classmethod
    def read(cls, path: Path) -> DownloadReport:
        """Load a ``download_report.json`` written by :func:`download_images`."""
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))


def _check_sample(path: Path) -> pa.Schema:
    """The sample's schema, once URL and TEXT are known to be there and to hold strings."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no sample parquet; write one with xlr.data.laion")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise DownloadInputError(f"{path}: not a readable parquet file ({err})") from None
    for column in SAMPLE_COLUMNS:
        if column not in schema.names:
            raise DownloadInputError(
                f"{path}: missing column {column!r} (it has {schema.names}); img2dataset reads "
                "image URLs from URL and captions from TEXT, LAION's column names"
            )
        dtype = schema.field(column).type
        if not (pa.types.is_string(dtype) or pa.types.is_large_string(dtype)):
            raise DownloadInputError(f"{path}: column {column!r} holds {dtype}, not strings")
    return schema


def _check_installed(distributor: str) -> None:
    """Fail before any work when img2dataset or the distributor's package is missing.

    Why here: img2dataset starts its logger process before it imports pyspark or ray, and an
    import error after that point leaves the child process hanging instead of exiting.
    """
    if importlib.util.find_spec("img2dataset") is None:
        raise ImportError(f"img2dataset is not installed; {INSTALL_HINT}")
    if distributor != "multiprocessing" and importlib.util.find_spec(distributor) is None:
        raise ImportError(
            f"download.distributor {distributor!r} needs the {distributor} package: "
            f"`pip install {distributor}`, or set download.distributor to 'multiprocessing'"
        )


def img2dataset_arguments(
    settings: DownloadSection,
    additional_columns: Sequence[str],
    image_size: int | None = None,
    timeout: float = 10,
    retries: int = 0,
) -> dict[str, Any]:
    """Keyword arguments of ``img2dataset.download`` for a LAION-schema parquet, less the paths."""
    return {
        "input_format": "parquet",
        "url_col": "URL",
        "caption_col": "TEXT",
        "output_format": "webdataset",
        "save_additional_columns": list(additional_columns),
        "distributor": settings.distributor,
        "processes_count": settings.processes,
        "thread_count": settings.threads,
        "image_size": image_size or settings.image_size,
        "resize_mode": settings.resize_mode,
        "number_sample_per_shard": settings.shard_size,
        "timeout": timeout,
        "retries": retries,
        "incremental_mode": "incremental",  # skip the shards that have a _stats.json: resume
    }


def _fingerprint(sample: Path, arguments: dict[str, Any], version: str) -> str:
    """sha256 of the sample's bytes, img2dataset's version and the arguments that decide content."""
    digest = hashlib.sha256()
    with open(sample, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    content = {k: v for k, v in arguments.items() if k not in EXECUTION_ARGUMENTS}
    digest.update(json.dumps([version, content], sort_keys=True).encode())
    return digest.hexdigest()


def _finished_report(out_dir: Path, fingerprint: str) -> DownloadReport | None:
    """The saved report when ``out_dir`` is this very download, else ``None`` (to be replaced).

    A non-empty ``out_dir`` without a report is not a download of ours: refuse to replace it.
    """
    if not out_dir.exists():
        return None
    report_path = out_dir / REPORT_FILE
    if report_path.is_file():
        saved = json.loads(report_path.read_text(encoding="utf-8"))
        if saved.get("fingerprint") != fingerprint:
            return None
        _gather_flat_shards(out_dir)
        return DownloadReport(**saved)
    if any(out_dir.iterdir()):
        raise FileExistsError(
            f"{out_dir} exists and holds no {REPORT_FILE}, so it is not a finished download; "
            "remove it or choose another out_dir"
        )
    return None


def _gather_flat_shards(out_dir: Path) -> None:
    """Move the shards of a download made before ``shards/`` existed (they sat in ``out_dir``
    itself) into ``shards/``, by renames, rather than download them again.

    Gathered in a hidden folder renamed to ``shards/`` last, so an interrupted move finishes on
    the next call.
    """
    if (out_dir / SHARD_DIR).is_dir():
        return
    gathering = out_dir / f".{SHARD_DIR}-gathering"
    gathering.mkdir(exist_ok=True)
    for pattern in ("*.tar", "*.parquet", "*_stats.json"):
        for path in out_dir.glob(pattern):
            os.replace(path, gathering / path.name)
    os.replace(gathering, out_dir / SHARD_DIR)


def _claim_partial(partial: Path, plan: dict[str, Any]) -> None:
    """Make ``partial`` the in-place folder of the download ``plan`` describes, or resume it.

    An unfinished download of another sample or setting is never overwritten: hours of work may
    sit in it, and img2dataset would mix its shards with this download's.
    """
    plan_path = partial / PLAN_FILE
    if plan_path.is_file():
        saved = json.loads(plan_path.read_text(encoding="utf-8"))
        if saved["fingerprint"] != plan["fingerprint"]:
            raise FileExistsError(
                f"{partial} holds an unfinished download of {saved['sample']} with another sample "
                f"or other settings (its {PLAN_FILE} lists them): run again with those to resume "
                f"it, or delete {partial} to start this download"
            )
        return
    if partial.exists() and any(partial.iterdir()):
        raise FileExistsError(
            f"{partial} exists and holds no {PLAN_FILE}, so it is not an unfinished download; "
            "remove it or choose another out_dir"
        )
    partial.mkdir(parents=True, exist_ok=True)
    atomic_write_json(plan, plan_path)


def _run_img2dataset(arguments: dict[str, Any], cluster: dict[str, str], log_path: Path) -> None:
    """Run ``img2dataset.download(**arguments)`` in a child Python that first joins ``cluster``
    (:mod:`xlr.data.img2dataset_child`); its output is appended to the log, one block per run.

    The child leads its own process group, so an interrupt (Ctrl-C, a notebook's stop button)
    ends it together with its logger and download workers instead of orphaning them.
    """
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}  # no update check against PyPI
    command = [sys.executable, "-c", _RUNNER, json.dumps(arguments), json.dumps(cluster)]
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"--- img2dataset run started {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
        log.flush()
        child = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            returncode = child.wait()
        except BaseException:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            raise
    if returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise Img2DatasetError(
            f"img2dataset exited with status {returncode} downloading "
            f"{arguments['url_list']}; its finished shards stay in {arguments['output_folder']} "
            f"and running again resumes from them. The end of its output:\n{tail}"
        )


def _per_language(rows: pd.Series, statuses: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Counts per language and status; rows no finished shard mentions are ``unaccounted``."""
    wanted = rows.value_counts()
    counts = statuses.groupby(["language", "status"]).size()
    out: dict[str, dict[str, int]] = {}
    for lang, total in wanted.items():
        got = {s: int(counts.get((lang, s), 0)) for s in STATS_KEYS}
        out[str(lang)] = {"rows": int(total), **got, "unaccounted": int(total) - sum(got.values())}
    return out


def summarise_download(
    shard_dir: Path,
    sample: Path,
    *,
    fingerprint: str,
    img2dataset: dict[str, Any],
    seconds: float,
    resumed_shards: int = 0,
) -> DownloadReport:
    """Build the report of the img2dataset output in ``shard_dir`` for the rows of ``sample``.

    Deletes the files of shards img2dataset did not finish (see :func:`drop_unfinished_shards`).
    """
    shards = drop_unfinished_shards(shard_dir)
    totals, kinds = stats_totals(shard_dir, shards)
    present = [c for c in ("LANGUAGE",) if c in pq.read_schema(sample).names]
    languages = language_column(pq.read_table(sample, columns=present))
    totals["unaccounted"] = len(languages) - sum(totals.values())
    return DownloadReport(
        fingerprint=fingerprint,
        sample=str(sample),
        rows=len(languages),
        totals={s: int(totals[s]) for s in STATUSES},
        per_language=_per_language(languages, status_by_language(shard_dir, shards)),
        error_kinds=dict(kinds.most_common(TOP_ERROR_KINDS)),
        shards=shards,
        img2dataset=img2dataset,
        seconds=round(seconds, 3),
        resumed_shards=resumed_shards,
    )


def download_images(
    sample_parquet: Path,
    out_dir: Path,
    settings: DownloadSection,
    *,
    image_size: int | None = None,
    timeout: float = 10,
    retries: int = 0,
) -> DownloadReport:
    """Download the images of a LAION-schema parquet into webdataset shards with img2dataset.

    ``settings`` gives the distributor, processes, threads, image size, resize mode and shard
    size; ``image_size`` overrides its size, ``timeout`` (seconds per request) and ``retries``
    (extra attempts per URL) go to img2dataset. Of LANGUAGE, ENG TEXT, similarity, punsafe and
    pwatermark, those the parquet has are kept in every sample's ``.json``. Returns the report,
    also written to ``out_dir/download_report.json``; the shards are in ``out_dir/shards``. See
    the module docstring for re-runs and resuming an interrupted download.

    Raises :class:`DownloadInputError` when the parquet lacks URL or TEXT, ``ImportError`` when
    img2dataset or the distributor is not installed, :class:`Img2DatasetError` when img2dataset
    itself fails (its finished shards are kept for the next run), and ``FileExistsError`` when
    ``out_dir`` or its ``.partial`` folder holds something else. Images that fail are counted,
    never raised.
    """
    sample_parquet, out_dir = Path(sample_parquet).resolve(), Path(out_dir)
    schema = _check_sample(sample_parquet)
    _check_installed(settings.distributor)
    present = [c for c in ADDITIONAL_COLUMNS if c in schema.names]
    arguments = img2dataset_arguments(settings, present, image_size, timeout, retries)
    version = importlib.metadata.version("img2dataset")
    fingerprint = _fingerprint(sample_parquet, arguments, version)
    if (report := _finished_report(out_dir, fingerprint)) is not None:
        return report
    partial = out_dir.with_name(out_dir.name + PARTIAL_SUFFIX)
    recipe = {"version": version, "arguments": arguments}
    _claim_partial(partial, {"fingerprint": fingerprint, "sample": str(sample_parquet), **recipe})
    shard_dir = partial / SHARD_DIR
    resumed = drop_unfinished_shards(shard_dir) if shard_dir.is_dir() else []
    start = time.perf_counter()
    paths = {"url_list": str(sample_parquet), "output_folder": str(shard_dir)}
    _run_img2dataset({**arguments, **paths}, settings.cluster(), partial / LOG_FILE)
    report = summarise_download(
        shard_dir,
        sample_parquet,
        fingerprint=fingerprint,
        img2dataset=recipe,
        seconds=time.perf_counter() - start,
        resumed_shards=len(resumed),
    )
    atomic_write_json(asdict(report), partial / REPORT_FILE)
    replace_dir(partial, out_dir)
    return report
