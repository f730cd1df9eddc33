"""The DuckDB selection of a LAION subset: filters, deduplication and quotas in SQL over the
checked input files, the sample streamed to parquet, and its manifest."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from xlr.data.laion.inputs import (
    ENG_TEXT,
    NUMERIC_COLUMNS,
    EmptySelectionError,
    FileGroup,
    LaionFilters,
    LaionInputs,
    LaionQuotas,
    LaionSamplingError,
    file_groups,
    translation_files,
)
from xlr.io import atomic_dir, atomic_write_json, file_sha256
from xlr.langs import UnknownLanguageError, canonical_code

SAMPLE_FILE = "sample.parquet"
MANIFEST_FILE = "manifest.json"
FILTER_STAGES: tuple[str, ...] = (
    "rows", "non_empty", "similarity", "punsafe", "pwatermark", "size", "caption_length",
)  # fmt: skip
DEDUP_STAGES: tuple[str, ...] = ("url_dedup", "caption_dedup", "selected")


@dataclass(frozen=True)
class SampleResult:
    """Where the subset went and what the manifest says about it."""

    parquet: Path
    manifest_path: Path
    manifest: dict[str, Any]

    @property
    def shortfalls(self) -> dict[str, dict[str, int]]:
        """Languages whose quota could not be met: ``{lang: {quota, available, missing}}``."""
        return self.manifest["shortfalls"]


class _Query:
    """SQL text plus its named parameters, so values never get spliced into the SQL."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def bind(self, name: str, value: Any) -> str:
        self.params[name] = value
        return f"${name}"


def _source_sql(groups: Sequence[FileGroup], query: _Query) -> str:
    """One relation over all metadata files with LAION's columns, missing ones as NULL."""
    parts = []
    for i, group in enumerate(groups):
        files = query.bind(f"files_{i}", list(group.files))
        language = (
            query.bind(f"language_{i}", group.language)
            if group.language
            else "NULLIF(trim(LANGUAGE), '')"
        )
        numeric = ", ".join(
            f"TRY_CAST({col} AS {dtype}) AS {col}"
            if col in group.columns
            else f"NULL::{dtype} AS {col}"
            for col, dtype in NUMERIC_COLUMNS.items()
        )
        parts.append(
            f"SELECT URL, TEXT, {language} AS LANGUAGE_RAW, {numeric} FROM read_parquet({files})"
        )
    return "\nUNION ALL\n".join(parts)


def _filter_conditions(filters: LaionFilters, query: _Query) -> list[tuple[str, str]]:
    """``(stage, SQL condition)`` per filter stage in order; switched-off filters are ``TRUE``."""
    size = []
    if filters.min_width is not None:
        size.append(f"WIDTH >= {query.bind('min_width', filters.min_width)}")
    if filters.min_height is not None:
        size.append(f"HEIGHT >= {query.bind('min_height', filters.min_height)}")
    if filters.max_aspect_ratio is not None:
        ratio = query.bind("max_aspect_ratio", filters.max_aspect_ratio)
        size.append(f"greatest(WIDTH, HEIGHT) <= {ratio} * least(WIDTH, HEIGHT)")
    length = [f"length(TEXT) >= {query.bind('min_chars', filters.min_caption_chars)}"]
    if filters.max_caption_chars is not None:
        length.append(f"length(TEXT) <= {query.bind('max_chars', filters.max_caption_chars)}")

    def bound(value: float | None, condition: str, name: str) -> str:
        return "TRUE" if value is None else condition.format(query.bind(name, value))

    return [
        ("non_empty", "trim(URL) <> '' AND trim(TEXT) <> ''"),
        ("similarity", bound(filters.min_similarity, "similarity >= {}", "min_similarity")),
        ("punsafe", bound(filters.max_punsafe, "punsafe <= {}", "max_punsafe")),
        ("pwatermark", bound(filters.max_pwatermark, "pwatermark <= {}", "max_pwatermark")),
        ("size", " AND ".join(size) or "TRUE"),
        ("caption_length", " AND ".join(length)),
    ]


def _filter_counts(
    con: duckdb.DuckDBPyConnection, groups: Sequence[FileGroup], filters: LaionFilters
) -> dict[str | None, list[int]]:
    """Rows per raw language code after each filter stage, in one streaming pass."""
    query = _Query()
    source = _source_sql(groups, query)
    conditions = _filter_conditions(filters, query)
    cumulative = [
        " AND ".join(f"({c})" for _, c in conditions[: i + 1]) for i in range(len(conditions))
    ]
    counts = ", ".join(f"count(*) FILTER (WHERE COALESCE({c}, FALSE))" for c in cumulative)
    sql = f"SELECT LANGUAGE_RAW, count(*), {counts} FROM ({source}) GROUP BY LANGUAGE_RAW"
    try:
        rows = con.execute(sql, query.params).fetchall()
    except duckdb.InvalidInputException as err:
        # The first full scan is where corrupt pages and invalid UTF-8 surface; DuckDB's message
        # names the file and the offending value.
        raise LaionSamplingError(f"{err}; re-download that file or leave it out") from None
    return {raw: list(values) for raw, *values in rows}


def _language_counts(
    by_raw: dict[str | None, list[int]],
) -> tuple[dict[str, dict[str, int]], int, dict[str, int], dict[str, str]]:
    """Fold raw codes (``iw``, ``nb``) into canonical ones; count null and unregistered codes.

    Returns per-language stage counts, rows with a null language, rows per unregistered code, and
    the raw-to-canonical map the sampling query joins on.
    """
    per_lang: dict[str, dict[str, int]] = {}
    null_rows = 0
    unregistered: dict[str, int] = {}
    raw_map: dict[str, str] = {}
    for raw, values in sorted(by_raw.items(), key=lambda kv: (kv[0] is None, kv[0] or "")):
        if raw is None:
            null_rows += values[0]
            continue
        try:
            lang = canonical_code(raw)
        except UnknownLanguageError:
            unregistered[raw] = values[0]
            continue
        raw_map[raw] = lang
        stages = per_lang.setdefault(lang, dict.fromkeys(FILTER_STAGES, 0))
        for stage, value in zip(FILTER_STAGES, values, strict=True):
            stages[stage] += value
    return per_lang, null_rows, unregistered, raw_map


_TIEBREAK = "sample_key, TEXT, LANGUAGE, similarity, punsafe, pwatermark, WIDTH, HEIGHT"


def _select(
    con: duckdb.DuckDBPyConnection,
    groups: Sequence[FileGroup],
    filters: LaionFilters,
    raw_map: dict[str, str],
    quotas: dict[str, int],
    seed: int,
) -> dict[str, dict[str, int]]:
    """Build temp table ``selected``; returns rows per language after each dedup stage."""
    con.execute("CREATE OR REPLACE TEMP TABLE langmap (raw VARCHAR, lang VARCHAR)")
    wanted = [(raw, lang) for raw, lang in raw_map.items() if lang in quotas]
    if wanted:
        con.executemany("INSERT INTO langmap VALUES (?, ?)", wanted)
    con.execute("CREATE OR REPLACE TEMP TABLE quotas (lang VARCHAR, quota BIGINT)")
    con.executemany("INSERT INTO quotas VALUES (?, ?)", sorted(quotas.items()))

    query = _Query()
    source = _source_sql(groups, query)
    where = " AND ".join(f"({c})" for _, c in _filter_conditions(filters, query))
    seed_param = query.bind("seed", str(seed))
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE candidates AS
        SELECT s.URL, s.TEXT, m.lang AS LANGUAGE, s.similarity, s.punsafe, s.pwatermark,
               s.WIDTH, s.HEIGHT,
               md5(concat_ws(chr(31), {seed_param}, s.URL, s.TEXT)) AS sample_key,
               lower(regexp_replace(trim(s.TEXT), '\\s+', ' ', 'g')) AS caption_key
        FROM ({source}) s JOIN langmap m ON s.LANGUAGE_RAW = m.raw
        WHERE COALESCE({where}, FALSE)""",
        query.params,
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE url_unique AS SELECT * FROM candidates
        QUALIFY row_number() OVER (PARTITION BY URL ORDER BY {_TIEBREAK}) = 1"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE caption_unique AS SELECT * FROM url_unique
        QUALIFY row_number() OVER (PARTITION BY caption_key ORDER BY {_TIEBREAK}) = 1"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE selected AS
        SELECT c.* EXCLUDE (caption_key) FROM caption_unique c JOIN quotas q ON c.LANGUAGE = q.lang
        QUALIFY row_number() OVER (PARTITION BY c.LANGUAGE ORDER BY sample_key) <= q.quota"""
    )
    counts: dict[str, dict[str, int]] = {lang: dict.fromkeys(DEDUP_STAGES, 0) for lang in quotas}
    tables = {"url_dedup": "url_unique", "caption_dedup": "caption_unique", "selected": "selected"}
    for stage, table in tables.items():
        sql = f"SELECT LANGUAGE, count(*) FROM {table} GROUP BY LANGUAGE"
        for lang, n in con.execute(sql).fetchall():
            counts[lang][stage] = n
    return counts


def _write_sample(con: duckdb.DuckDBPyConnection, translations: Sequence[Path], out: Path) -> int:
    """Stream ``selected`` (plus ``ENG TEXT`` where translations are given) to parquet."""
    columns = "s.URL, s.TEXT, s.LANGUAGE, s.similarity, s.punsafe, s.pwatermark, s.WIDTH, s.HEIGHT"
    if translations:
        # min() makes the pick deterministic where the release repeats a (URL, TEXT) pair.
        sql = f"""SELECT {columns}, t.eng AS "{ENG_TEXT}" FROM selected s LEFT JOIN (
                SELECT URL, TEXT, min("{ENG_TEXT}") AS eng FROM read_parquet($files)
                WHERE URL IN (SELECT URL FROM selected) GROUP BY URL, TEXT
            ) t ON s.URL = t.URL AND s.TEXT = t.TEXT
            ORDER BY s.LANGUAGE, s.sample_key"""
        params = {"files": [str(p) for p in translations]}
        reader = con.sql(sql, params=params).to_arrow_reader()
    else:
        sql = f"SELECT {columns} FROM selected s ORDER BY s.LANGUAGE, s.sample_key"
        reader = con.sql(sql).to_arrow_reader()
    rows = 0
    with pq.ParquetWriter(out, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


def _describe_inputs(
    groups: Sequence[FileGroup], translations: Sequence[Path], hash_inputs: bool
) -> list[dict[str, Any]]:
    """Each input file with its role, size and (unless switched off) sha256, for provenance."""
    described = []
    roles = [("english" if g.language else "metadata", Path(f)) for g in groups for f in g.files]
    for role, path in sorted(roles + [("translations", p) for p in translations]):
        entry: dict[str, Any] = {"role": role, "path": str(path), "bytes": path.stat().st_size}
        if hash_inputs:
            entry["sha256"] = file_sha256(path)
        described.append(entry)
    return described


def _shortfalls(quotas: dict[str, int], counts: dict[str, dict[str, int]]) -> dict[str, Any]:
    return {
        lang: {"quota": quota, "available": counts[lang]["selected"],
               "missing": quota - counts[lang]["selected"]}
        for lang, quota in sorted(quotas.items())
        if counts[lang]["selected"] < quota
    }  # fmt: skip


def _merge_counts(
    filtered: dict[str, dict[str, int]], deduped: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    """Stage counts per language; languages outside the quotas stop after the filters."""
    merged = {lang: dict(stages) for lang, stages in filtered.items()}
    for lang, stages in deduped.items():
        merged.setdefault(lang, dict.fromkeys(FILTER_STAGES, 0)).update(stages)
    return dict(sorted(merged.items()))


def sample_laion(
    inputs: LaionInputs | Sequence[Path],
    quotas: LaionQuotas,
    filters: LaionFilters | None = None,
    seed: int = 0,
    out_dir: Path = Path("laion_sample"),
    *,
    overwrite: bool = False,
    hash_inputs: bool = True,
) -> SampleResult:
    """Select a seeded, filtered, deduplicated, per-language-quota subset of LAION metadata.

    ``inputs`` may be bare paths, read as files with a ``LANGUAGE`` column. ``out_dir`` receives
    ``sample.parquet`` (LAION's columns with ``LANGUAGE`` as the registry's canonical code, plus
    ``ENG TEXT`` when translations are given; ordered by language, then the seeded order) and
    ``manifest.json``; both appear together or not at all. ``hash_inputs=False`` skips the
    sha256 of the inputs, which takes minutes over the full release.

    Raises :class:`EmptySelectionError` when nothing survives, with the stage counts, and
    :class:`LaionSamplingError` for unreadable inputs, missing columns or non-string captions.
    """
    if not isinstance(inputs, LaionInputs):
        inputs = LaionInputs(metadata=list(inputs))
    filters = filters or LaionFilters()
    wanted = quotas.per_language()
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, overwrite=overwrite) as build, duckdb.connect() as con:
        con.execute("SET temp_directory = ?", [str(build / ".duckdb_spill")])
        groups = file_groups(con, inputs, filters)
        translations = translation_files(con, inputs)
        filtered, null_rows, unregistered, raw_map = _language_counts(
            _filter_counts(con, groups, filters)
        )
        deduped = _select(con, groups, filters, raw_map, wanted, seed)
        counts = _merge_counts(filtered, deduped)
        if sum(stages["selected"] for stages in deduped.values()) == 0:
            wanted_counts = {lang: counts[lang] for lang in sorted(wanted)}
            raise EmptySelectionError(
                f"no rows selected for {sorted(wanted)}; rows per language after each stage: "
                f"{wanted_counts}; {null_rows} rows had no language, "
                f"{sum(unregistered.values())} an unregistered code. Loosen the filters or check "
                "the inputs."
            )
        rows = _write_sample(con, translations, build / SAMPLE_FILE)
        manifest = {
            "created_by": "xlr.data.laion.sample_laion",
            "duckdb_version": duckdb.__version__,
            "seed": seed,
            "order": "md5(seed || 0x1f || URL || 0x1f || TEXT), ascending",
            "inputs": _describe_inputs(groups, translations, hash_inputs),
            "filters": filters.model_dump(),
            "quotas": {"spec": quotas.model_dump(exclude_none=True), "per_language": wanted},
            "stages": [*FILTER_STAGES, *DEDUP_STAGES],
            "counts": counts,
            "skipped": {"null_language": null_rows, "unregistered_language": unregistered},
            "shortfalls": _shortfalls(wanted, deduped),
            "output": {
                "file": SAMPLE_FILE,
                "rows": rows,
                "sha256": file_sha256(build / SAMPLE_FILE),
                "translated": bool(translations),
            },
        }
        atomic_write_json(manifest, build / MANIFEST_FILE)
        con.close()
        shutil.rmtree(build / ".duckdb_spill", ignore_errors=True)
    return SampleResult(out_dir / SAMPLE_FILE, out_dir / MANIFEST_FILE, manifest)
