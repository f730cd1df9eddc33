"""An img2dataset output folder: which shards are finished, their counts, their samples.

img2dataset writes, per shard, ``{shard:05d}.tar`` (webdataset samples), ``.parquet`` (every
input row with its ``status`` and ``error_message``) and, last, ``_stats.json`` (counts per
status). :mod:`xlr.data.download` reads its own downloads here; ``data.laion.shards`` points the
study at a folder downloaded elsewhere (a cluster), checked by :func:`check_given_shards`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from xlr.data.imagetext import CAPTION_COLUMNS, ImageTextSet
from xlr.data.shards import shard_images, store_subset
from xlr.langs import UnknownLanguageError, canonical_code

UNKNOWN_LANGUAGE = "unknown"  # rows whose LANGUAGE is null, or samples without the column


STATS_KEYS = {  # report status: its count's key in img2dataset's _stats.json
    "success": "successes",
    "failed_to_download": "failed_to_download",
    "failed_to_resize": "failed_to_resize",
}


_STATS_FIELDS: tuple[str, ...] = ("count", *STATS_KEYS.values(), "status_dict")


_HTTP_ERROR = re.compile(r"^HTTP Error (\d{3})\b")


_MAX_KIND_CHARS = 120


def _shard_problem(shard_dir: Path, shard: str) -> str | None:
    """Why a shard with a ``_stats.json`` is not complete, or None when it is."""
    try:
        stats = json.loads((shard_dir / f"{shard}_stats.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return f"{shard}_stats.json is not readable JSON ({err})"
    missing = [key for key in _STATS_FIELDS if not isinstance(stats, dict) or key not in stats]
    if missing:
        return f"{shard}_stats.json lacks {', '.join(missing)}"
    for suffix in (".tar", ".parquet"):
        if not (shard_dir / f"{shard}{suffix}").is_file():
            return f"{shard}{suffix} is missing"
    try:
        rows = pq.read_metadata(shard_dir / f"{shard}.parquet").num_rows
    except (pa.ArrowInvalid, OSError) as err:
        return f"{shard}.parquet is not readable ({err})"
    if rows != stats["count"]:
        return f"{shard}.parquet has {rows} rows where {shard}_stats.json counts {stats['count']}"
    return None


def audit_shards(shard_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The finished shards of an img2dataset folder, and why each other shard is unfinished.

    img2dataset closes a shard's tar and parquet, then writes its ``_stats.json``; a kill before
    that leaves no stats, a kill during it a truncated one. So a shard is finished when its
    stats are readable and complete, its tar and parquet exist and the parquet has the stats'
    row count.
    """
    suffixes = ("_stats.json", ".tar", ".parquet")
    names = {p.name.removesuffix(x) for x in suffixes for p in shard_dir.glob(f"*{x}")}
    finished: list[str] = []
    unfinished: dict[str, str] = {}
    for shard in sorted(names):
        if not (shard_dir / f"{shard}_stats.json").is_file():
            unfinished[shard] = f"no {shard}_stats.json (img2dataset writes it last)"
        elif problem := _shard_problem(shard_dir, shard):
            unfinished[shard] = problem
        else:
            finished.append(shard)
    return finished, unfinished


def drop_unfinished_shards(shard_dir: Path) -> list[str]:
    """Shards img2dataset completed (see :func:`audit_shards`); the others' files deleted.

    Why delete: before a resume, so that img2dataset downloads them again rather than trusting
    a truncated ``_stats.json``; after the last run, because a shard that crashed on every retry
    can leave a truncated tar that would break the webdataset reader (its rows are reported as
    ``unaccounted``).
    """
    finished, unfinished = audit_shards(shard_dir)
    for shard in unfinished:
        for suffix in ("_stats.json", ".tar", ".parquet"):
            (shard_dir / f"{shard}{suffix}").unlink(missing_ok=True)
    return finished


def error_kind(message: str) -> str:
    """Fold one failure message into a kind: servers word the reason of an HTTP status freely."""
    match = _HTTP_ERROR.match(message)
    return f"HTTP {match.group(1)}" if match else message[:_MAX_KIND_CHARS]


def stats_totals(shard_dir: Path, shards: Sequence[str]) -> tuple[Counter[str], Counter[str]]:
    """Counts per status and per error kind, summed over the shards' ``_stats.json``."""
    totals: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for shard in shards:
        stats = json.loads((shard_dir / f"{shard}_stats.json").read_text(encoding="utf-8"))
        totals.update({status: stats[key] for status, key in STATS_KEYS.items()})
        for message, count in stats["status_dict"].items():
            if message != "success":
                kinds[error_kind(message)] += count
    return totals, kinds


def language_column(table: pa.Table) -> pd.Series:
    """LANGUAGE as strings, null (or a missing column) as :data:`UNKNOWN_LANGUAGE`."""
    if "LANGUAGE" not in table.column_names:
        return pd.Series([UNKNOWN_LANGUAGE] * table.num_rows, dtype=object)
    return table.column("LANGUAGE").to_pandas().fillna(UNKNOWN_LANGUAGE).astype(str)


def status_by_language(shard_dir: Path, shards: Sequence[str]) -> pd.DataFrame:
    """Per-sample ``language`` and ``status`` from the shards' parquet files."""
    languages: list[str] = []
    statuses: list[str] = []
    for shard in shards:
        table = pq.read_table(shard_dir / f"{shard}.parquet")
        languages.extend(language_column(table))
        statuses.extend(table.column("status").to_pylist())
    return pd.DataFrame({"language": languages, "status": statuses})


def pool_language(code: str | None, langs: Collection[str]) -> str | None:
    """A downloaded sample's canonical language code when it is one of ``langs`` (the study's
    seen languages), else None: LAION's LANGUAGE can be null, blank or no registered code
    (laion2B-multi has ``und`` and ``zh-Latn``), which the sampler skips and counts, and shards
    downloaded elsewhere may hold other languages, whose images would enter fine-tuning through
    their English translation (ENG TEXT). The pool skips them all alike."""
    if not code or not code.strip():
        return None
    try:
        lang = canonical_code(code)
    except UnknownLanguageError:
        return None
    return lang if lang in langs else None


_NEEDED = ("key", "status", "caption")  # img2dataset's own columns the pool reads
_OPTIONAL = ("LANGUAGE", "ENG TEXT")  # saved additional columns (their absence is checked later)


def _downloaded_text(tars: Sequence[str]) -> dict[str, tuple[str | None, str | None, str | None]]:
    """Per downloaded key: (caption, LANGUAGE, ENG TEXT), from the parquet beside each tar.

    img2dataset writes one parquet row per input row, ``status`` ``success`` for exactly the
    samples it put in the tar, with the caption it wrote as ``.txt`` and the saved additional
    columns it wrote into ``.json``: a few columns of it give what the tars would only give by
    reading every image's bytes too. A key downloaded in two shards is an error naming both:
    whose text it gets would depend on the order the shards are read in.
    """
    text: dict[str, tuple[str | None, str | None, str | None]] = {}
    source: dict[str, Path] = {}  # the parquet each key's text came from
    for tar in tars:
        parquet = Path(tar).with_suffix(".parquet")
        try:
            names = pq.read_schema(parquet).names
        except (pa.ArrowInvalid, OSError) as err:
            raise ValueError(
                f"{parquet}: not readable ({err}); img2dataset writes it beside {Path(tar).name}: "
                "download that shard again"
            ) from None
        lacking = [column for column in _NEEDED if column not in names]
        if lacking:
            raise ValueError(
                f"{parquet}: no column {', '.join(lacking)}; not an img2dataset shard written "
                "with caption_col (xlr.data.download.img2dataset_arguments sets it): download again"
            )
        read = [*_NEEDED, *(column for column in _OPTIONAL if column in names)]
        columns = pq.read_table(parquet, columns=read).to_pydict()
        none = [None] * len(columns["key"])
        rows = zip(
            columns["key"], columns["status"], columns["caption"],
            columns.get("LANGUAGE", none), columns.get("ENG TEXT", none), strict=True,
        )  # fmt: skip
        for key, status, caption, language, eng in rows:
            if status != "success":
                continue
            if key in text:
                raise ValueError(
                    f"sample key {key!r} is downloaded in both {source[key]} and {parquet}; "
                    "shards of different img2dataset runs share one folder: keep one run's "
                    "shards per folder"
                )
            text[key] = (caption, language, eng)
            source[key] = parquet
    return text


def load_downloaded(
    out_dir: Path, name: str = "laion", *, langs: Collection[str], eng_text: bool = False
) -> ImageTextSet:
    """The downloaded pairs whose LANGUAGE is one of ``langs`` (:func:`pool_language`) as an
    :class:`ImageTextSet`: images where the tars hold them, text from the shards' parquet files.

    Each image gets its caption (TEXT) in its LANGUAGE as caption 0. ``eng_text`` adds LAION's
    machine translation (ENG TEXT) as the English caption 0 of non-English images, for the
    translated-caption arms. ``translated_by`` says who wrote each caption: ``""`` the web page,
    ``ENG TEXT`` LAION's translation (:mod:`xlr.data.laion.translate` adds its own). Images stay
    in the tars (:class:`xlr.data.shards.ShardImages`): memory holds where each lies, not its
    bytes, and no image byte is read here (at 900k images the tars are 20-35 GB): the image
    order is the tars' member order, read from their headers, as webdataset would yield them.
    """
    out_dir = Path(out_dir)
    keys, images = shard_images(out_dir)
    text = _downloaded_text(images.tars)
    missing = [key for key in keys if key not in text]
    if missing:
        raise ValueError(
            f"{out_dir}: images {missing[:5]} ({len(missing)} in all) are in the tars but not "
            "listed as downloaded in the shards' parquet files; download those shards again"
        )
    in_tars = set(keys)
    lost = [key for key in text if key not in in_tars]
    if lost:  # a tar cut short at a member's boundary reads as a shorter tar
        raise ValueError(
            f"{out_dir}: images {lost[:5]} ({len(lost)} in all) are listed as downloaded in the "
            "shards' parquet files but not in their tars (a tar cut short?); copy or download "
            "those shards again"
        )
    records: list[tuple[int, str, int, str, str]] = []
    kept: list[int] = []
    for index, key in enumerate(keys):
        caption, language, eng = text[key]
        lang = pool_language(language, langs)
        if lang is None:
            continue
        if caption is None:
            raise ValueError(f"{out_dir}: sample {key} has no caption; sample rows with a TEXT")
        image_id = len(kept)
        kept.append(index)
        records.append((image_id, lang, 0, caption, ""))
        if eng_text and lang != "en" and eng:
            records.append((image_id, "en", 0, eng, "ENG TEXT"))
    captions = pd.DataFrame(records, columns=[*CAPTION_COLUMNS, "translated_by"])
    if len(kept) < len(keys):
        images = store_subset(images, np.asarray(kept, dtype=np.int64))
    return ImageTextSet(name, [keys[i] for i in kept], images, captions)


def check_given_shards(folder: Path) -> list[str]:
    """The shards of a folder img2dataset wrote elsewhere (``data.laion.shards``), once checked.

    Nothing there is deleted or repaired (it is not ours): an unfinished shard, a folder
    without shards and shards without ``LANGUAGE`` (the study reads each image's language
    from it) are errors naming the folder, the shard and the fix.
    """
    fix = "point data.laion.shards at a folder img2dataset wrote, or remove it to download"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (data.laion.shards); {fix}")
    finished, unfinished = audit_shards(folder)
    if unfinished:
        listed = "; ".join(f"shard {shard}: {why}" for shard, why in unfinished.items())
        raise ValueError(
            f"{folder}: unfinished shards (data.laion.shards): {listed}. Finish the download "
            "there (img2dataset's incremental mode downloads such shards again) or delete those "
            "shards' .tar, .parquet and _stats.json"
        )
    if not finished:
        raise FileNotFoundError(f"{folder}: no shards (*.tar with .parquet and _stats.json); {fix}")
    for shard in finished:
        if "LANGUAGE" not in pq.read_schema(folder / f"{shard}.parquet").names:
            raise ValueError(
                f"{folder / f'{shard}.parquet'}: no LANGUAGE column (data.laion.shards); "
                "download with img2dataset's save_additional_columns including LANGUAGE, as "
                "xlr.data.download.img2dataset_arguments does"
            )
    return finished
