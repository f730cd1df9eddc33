"""Download a LAION-schema sample with img2dataset and count what failed, per language.

Why img2dataset: LAION was built and is fetched with it, its webdataset output is what the training
loaders read (:mod:`xlr.data.shards` writes the same layout), and one call scales from this machine
(``multiprocessing``) to a cluster (``pyspark``, ``ray``) by changing ``download.distributor``.

Why in a child process: ``img2dataset.download`` replaces the caller's SIGINT handler with one that
calls ``sys.exit``, starts a non-daemon logger process that keeps the caller alive when the call
raises, and spawns workers that re-import the caller's ``__main__``. ``python -c`` isolates all
three. The child calls the Python API with keyword arguments passed as one JSON argument, so no
shell and no command-line parsing sit in between.

Failed images never stop the study. Each sample row ends in one status: ``success``,
``failed_to_download`` (HTTP errors, timeouts, refused connections, X-Robots-Tag opt-outs),
``failed_to_resize`` (a body OpenCV cannot decode: truncated JPEGs, HTML or text served as an
image) or ``unaccounted`` (its shard crashed on every retry; its partial files are deleted). The
counts per ``LANGUAGE`` and the commonest error kinds go to ``download_report.json``. Only a
failure of img2dataset itself (not installed, a bad argument) raises :class:`Img2DatasetError`.

``out_dir`` holds img2dataset's shards (``{shard:05d}.tar``, ``.parquet`` with a status per
sample, ``_stats.json``), ``img2dataset.log`` and the report, and appears whole or not at all.
Running again with the same sample and settings returns the saved report and downloads nothing;
a different sample or setting replaces ``out_dir``, and only once the new download is complete.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from xlr.config import DownloadSection
from xlr.data.imagetext import CAPTION_COLUMNS, ImageTextSet
from xlr.data.shards import read_shards
from xlr.io import atomic_dir, atomic_write_json
from xlr.langs import UnknownLanguageError, canonical_code

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
LOG_FILE = "img2dataset.log"
UNKNOWN_LANGUAGE = "unknown"  # rows whose LANGUAGE is null, or samples without the column
TOP_ERROR_KINDS = 10
# How it runs, not what it fetches: left out of the fingerprint, so moving a finished download to
# a cluster's settings does not fetch it again.
EXECUTION_ARGUMENTS: frozenset[str] = frozenset({"distributor", "processes_count", "thread_count"})
INSTALL_HINT = (
    "install it with `pip install -e '.[dev]'` then `pip install --no-deps img2dataset==1.47.0` "
    "(what `make env` does; img2dataset pins webdataset<0.3, which xlr does not need)"
)
_RUNNER = "import json, sys; from img2dataset import download; download(**json.loads(sys.argv[1]))"
_STATS_KEYS = {  # report status: its count's key in img2dataset's _stats.json
    "success": "successes",
    "failed_to_download": "failed_to_download",
    "failed_to_resize": "failed_to_resize",
}
_HTTP_ERROR = re.compile(r"^HTTP Error (\d{3})\b")
_MAX_KIND_CHARS = 120


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
    content; ``seconds`` is wall-clock time of the download.
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


@dataclass(frozen=True)
class EncodedImages:
    """Images kept encoded (JPEG bytes) and decoded on access.

    A download is mixed in size (``keep_ratio`` fixes only the short side) and about ten times
    smaller encoded than as pixels, so it is held as bytes rather than in :class:`ArrayImages`.
    """

    blobs: Sequence[bytes]

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, index: int) -> Image.Image:
        with Image.open(io.BytesIO(self.blobs[index])) as img:
            return img.convert("RGB")


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
        return DownloadReport(**saved) if saved.get("fingerprint") == fingerprint else None
    if any(out_dir.iterdir()):
        raise FileExistsError(
            f"{out_dir} exists and holds no {REPORT_FILE}, so it is not a finished download; "
            "remove it or choose another out_dir"
        )
    return None


def _run_img2dataset(arguments: dict[str, Any], log_path: Path) -> None:
    """Run ``img2dataset.download(**arguments)`` in a child Python; its output goes to the log.

    The child leads its own process group, so an interrupt (Ctrl-C, a notebook's stop button)
    ends it together with its logger and download workers instead of orphaning them.
    """
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}  # no update check against PyPI
    command = [sys.executable, "-c", _RUNNER, json.dumps(arguments)]
    with open(log_path, "w", encoding="utf-8") as log:
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
            f"{arguments['url_list']}; the end of its output:\n{tail}"
        )


def _finished_shards(shard_dir: Path) -> list[str]:
    """Shards img2dataset completed (it writes ``_stats.json`` last); the others' files deleted.

    Why delete: a shard that crashed on every retry can leave a truncated tar that would break
    the webdataset reader; its rows are reported as ``unaccounted`` instead.
    """
    finished = sorted(p.name.removesuffix("_stats.json") for p in shard_dir.glob("*_stats.json"))
    for path in [*shard_dir.glob("*.tar"), *shard_dir.glob("*.parquet")]:
        if path.stem not in finished:
            path.unlink()
    return finished


def error_kind(message: str) -> str:
    """Fold one failure message into a kind: servers word the reason of an HTTP status freely."""
    match = _HTTP_ERROR.match(message)
    return f"HTTP {match.group(1)}" if match else message[:_MAX_KIND_CHARS]


def _stats_totals(shard_dir: Path, shards: Sequence[str]) -> tuple[Counter[str], Counter[str]]:
    """Counts per status and per error kind, summed over the shards' ``_stats.json``."""
    totals: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for shard in shards:
        stats = json.loads((shard_dir / f"{shard}_stats.json").read_text(encoding="utf-8"))
        totals.update({status: stats[key] for status, key in _STATS_KEYS.items()})
        for message, count in stats["status_dict"].items():
            if message != "success":
                kinds[error_kind(message)] += count
    return totals, kinds


def _language_column(table: pa.Table) -> pd.Series:
    """LANGUAGE as strings, null (or a missing column) as :data:`UNKNOWN_LANGUAGE`."""
    if "LANGUAGE" not in table.column_names:
        return pd.Series([UNKNOWN_LANGUAGE] * table.num_rows, dtype=object)
    return table.column("LANGUAGE").to_pandas().fillna(UNKNOWN_LANGUAGE).astype(str)


def _status_by_language(shard_dir: Path, shards: Sequence[str]) -> pd.DataFrame:
    """Per-sample ``language`` and ``status`` from the shards' parquet files."""
    languages: list[str] = []
    statuses: list[str] = []
    for shard in shards:
        table = pq.read_table(shard_dir / f"{shard}.parquet")
        languages.extend(_language_column(table))
        statuses.extend(table.column("status").to_pylist())
    return pd.DataFrame({"language": languages, "status": statuses})


def _per_language(rows: pd.Series, statuses: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Counts per language and status; rows no finished shard mentions are ``unaccounted``."""
    wanted = rows.value_counts()
    counts = statuses.groupby(["language", "status"]).size()
    out: dict[str, dict[str, int]] = {}
    for lang, total in wanted.items():
        got = {s: int(counts.get((lang, s), 0)) for s in _STATS_KEYS}
        out[str(lang)] = {"rows": int(total), **got, "unaccounted": int(total) - sum(got.values())}
    return out


def summarise_download(
    shard_dir: Path,
    sample: Path,
    *,
    fingerprint: str,
    img2dataset: dict[str, Any],
    seconds: float,
) -> DownloadReport:
    """Build the report of the img2dataset output in ``shard_dir`` for the rows of ``sample``.

    Deletes the files of shards img2dataset did not finish (see :func:`_finished_shards`).
    """
    shards = _finished_shards(shard_dir)
    totals, kinds = _stats_totals(shard_dir, shards)
    present = [c for c in ("LANGUAGE",) if c in pq.read_schema(sample).names]
    languages = _language_column(pq.read_table(sample, columns=present))
    totals["unaccounted"] = len(languages) - sum(totals.values())
    return DownloadReport(
        fingerprint=fingerprint,
        sample=str(sample),
        rows=len(languages),
        totals={s: int(totals[s]) for s in STATUSES},
        per_language=_per_language(languages, _status_by_language(shard_dir, shards)),
        error_kinds=dict(kinds.most_common(TOP_ERROR_KINDS)),
        shards=shards,
        img2dataset=img2dataset,
        seconds=round(seconds, 3),
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
    also written to ``out_dir/download_report.json``; see the module docstring for re-runs.

    Raises :class:`DownloadInputError` when the parquet lacks URL or TEXT, ``ImportError`` when
    img2dataset or the distributor is not installed, and :class:`Img2DatasetError` when
    img2dataset itself fails. Images that fail are counted, never raised.
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
    start = time.perf_counter()
    with atomic_dir(out_dir, overwrite=True) as build:
        paths = {"url_list": str(sample_parquet), "output_folder": str(build)}
        _run_img2dataset({**arguments, **paths}, build / LOG_FILE)
        report = summarise_download(
            build,
            sample_parquet,
            fingerprint=fingerprint,
            img2dataset={"version": version, "arguments": arguments},
            seconds=time.perf_counter() - start,
        )
        atomic_write_json(asdict(report), build / REPORT_FILE)
    return report


def _sample_language(meta: dict[str, Any], out_dir: Path) -> str:
    """A downloaded sample's canonical language code; the error names the shard folder and key."""
    code = meta.get("LANGUAGE")
    if not code:
        raise ValueError(
            f"{out_dir}: sample {meta.get('key')} has no LANGUAGE; download from a sample parquet "
            "with a LANGUAGE column"
        )
    try:
        return canonical_code(code)
    except UnknownLanguageError as err:
        raise ValueError(f"{out_dir}: sample {meta.get('key')}: {err}") from None


def load_downloaded(out_dir: Path, name: str = "laion", *, eng_text: bool = False) -> ImageTextSet:
    """The downloaded pairs as an :class:`ImageTextSet`, read from the shards with webdataset.

    Each image gets its caption (TEXT) in its LANGUAGE as caption 0. ``eng_text`` adds LAION's
    machine translation (ENG TEXT) as the English caption 0 of non-English images, for the
    translated-caption arms. Images stay JPEG-encoded in memory (:class:`EncodedImages`).
    """
    out_dir = Path(out_dir)
    keys: list[str] = []
    blobs: list[bytes] = []
    records: list[tuple[int, str, int, str]] = []
    for image_id, sample in enumerate(read_shards(out_dir)):
        meta = sample["json"]
        lang = _sample_language(meta, out_dir)
        keys.append(sample["key"])
        blobs.append(sample["jpg"])
        records.append((image_id, lang, 0, sample["txt"]))
        if eng_text and lang != "en" and meta.get("ENG TEXT"):
            records.append((image_id, "en", 0, meta["ENG TEXT"]))
    captions = pd.DataFrame(records, columns=list(CAPTION_COLUMNS))
    return ImageTextSet(name, keys, EncodedImages(blobs), captions)
