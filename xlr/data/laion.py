"""A study subset of LAION-5B, selected from its metadata parquet files with DuckDB.

The releases are laion2B-en (no ``LANGUAGE`` column: every row is English), laion2B-multi and
laion1B-nolang (``LANGUAGE`` per row), and the translated release, which adds ``ENG TEXT`` (the
M2M100 translation to English) and is joined onto the sample by ``URL`` and ``TEXT``. LAION-5B is
served today as Re-LAION-5B; the same columns apply.

The files are tens of gigabytes, so they are never loaded whole: DuckDB streams them, reading only
the columns a query touches, and spills to disk when a window needs it. The selection is:

1. filters (non-empty URL and caption, similarity, punsafe, pwatermark, image size, caption
   length), counted per language after each one;
2. rows whose language is not in the quotas are set aside; a null language and codes outside
   the registry are counted and skipped (LAION's language-ID output has both);
3. deduplication by URL, then by normalised caption (case and whitespace folded);
4. per-language quotas, as counts or as shares of a total; a language with too few rows keeps
   what it has and is reported as a shortfall, never topped up from another language.

Every choice among rows (which duplicate survives, which rows fill a quota) follows one seeded
order, ``md5(seed, URL, TEXT)``: md5 is fixed by its specification, unlike DuckDB's ``hash``,
so the same inputs and seed give the same subset on any machine and version. The result is a
directory holding ``sample.parquet`` and ``manifest.json`` (inputs with sizes and sha256, filters,
quotas, per-language counts at every stage, shortfalls), written atomically as a whole.
"""

from __future__ import annotations

import hashlib
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any

import duckdb
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from xlr.io import atomic_dir, atomic_write_json
from xlr.langs import UnknownLanguageError, canonical_code

RELEASE_URL = "https://laion.ai/blog/relaion-5b/ (Re-LAION-5B metadata parquet files)"
SAMPLE_FILE = "sample.parquet"
MANIFEST_FILE = "manifest.json"

STRING_COLUMNS: tuple[str, ...] = ("URL", "TEXT")
NUMERIC_COLUMNS: dict[str, str] = {
    "similarity": "DOUBLE",
    "punsafe": "DOUBLE",
    "pwatermark": "DOUBLE",
    "WIDTH": "BIGINT",
    "HEIGHT": "BIGINT",
}
ENG_TEXT = "ENG TEXT"
FILTER_STAGES: tuple[str, ...] = (
    "rows", "non_empty", "similarity", "punsafe", "pwatermark", "size", "caption_length",
)  # fmt: skip
DEDUP_STAGES: tuple[str, ...] = ("url_dedup", "caption_dedup", "selected")

Unit = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]
InputPath = Annotated[Path, Field(strict=False)]


class LaionSamplingError(ValueError):
    """LAION inputs or a specification that cannot give a subset; the message says why and where."""


class EmptySelectionError(LaionSamplingError):
    """Filters, deduplication and quotas left no rows at all."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class LaionInputs(_Spec):
    """Which LAION metadata files to sample from; a directory stands for its ``*.parquet`` files.

    ``metadata``: files with a ``LANGUAGE`` column (laion2B-multi, laion1B-nolang, or the
    translated release itself). ``english``: laion2B-en files, whose rows are all English.
    ``translations``: the translated release, joined on for ``ENG TEXT``.
    """

    metadata: list[InputPath] = []
    english: list[InputPath] = []
    translations: list[InputPath] = []

    @model_validator(mode="after")
    def _something_to_sample(self) -> LaionInputs:
        if not self.metadata and not self.english:
            raise ValueError("no LAION metadata given: set metadata and/or english")
        return self


class LaionFilters(_Spec):
    """Row filters, applied in this order; ``None`` switches one off. A null value fails a filter.

    ``similarity`` is the CLIP ViT-B/32 image-text cosine LAION computed (it kept >= 0.28 for
    English, >= 0.26 otherwise); ``punsafe`` and ``pwatermark`` are classifier probabilities, so
    the default 0.5 on punsafe is the NSFW classifier's own decision threshold. Caption length is
    in characters (code points), which treats scripts without spaces fairly.
    """

    min_similarity: Annotated[float, Field(ge=-1.0, le=1.0)] | None = None
    max_punsafe: Unit | None = 0.5
    max_pwatermark: Unit | None = None
    min_width: PositiveInt | None = None
    min_height: PositiveInt | None = None
    max_aspect_ratio: Annotated[float, Field(ge=1.0)] | None = None
    min_caption_chars: PositiveInt = 1
    max_caption_chars: PositiveInt | None = None

    @model_validator(mode="after")
    def _caption_range(self) -> LaionFilters:
        if self.max_caption_chars is not None and self.max_caption_chars < self.min_caption_chars:
            raise ValueError(
                f"max_caption_chars {self.max_caption_chars} < min_caption_chars "
                f"{self.min_caption_chars}"
            )
        return self


def _canonical_keys(mapping: dict[str, Any]) -> dict[str, Any]:
    """Re-key by canonical language code; unknown codes and two spellings of one are errors."""
    out: dict[str, Any] = {}
    for code, value in mapping.items():
        try:
            canonical = canonical_code(code)
        except UnknownLanguageError as err:
            raise ValueError(str(err)) from None
        if canonical in out:
            raise ValueError(f"language {canonical!r} listed twice (as {code!r} and another code)")
        out[canonical] = value
    return out


class LaionQuotas(_Spec):
    """Rows wanted per language: ``counts`` directly, or ``shares`` of a ``total``.

    Shares must sum to one (e.g. ``xlr.langs.laion_mix``); they are turned into whole counts that
    add up to ``total`` exactly by the largest-remainder method (:func:`quota_counts`).
    """

    counts: dict[str, PositiveInt] | None = None
    shares: dict[str, Annotated[float, Field(gt=0.0, le=1.0)]] | None = None
    total: PositiveInt | None = None

    _codes = field_validator("counts", "shares")(
        classmethod(lambda cls, v: None if v is None else _canonical_keys(v))
    )

    @model_validator(mode="after")
    def _one_form(self) -> LaionQuotas:
        if (self.counts is None) == (self.shares is None):
            raise ValueError("give quotas either as counts or as shares (with a total), not both")
        if self.counts is not None and self.total is not None:
            raise ValueError("total goes with shares; with counts the total is their sum")
        if self.shares is not None:
            if self.total is None:
                raise ValueError("shares need a total number of rows")
            if abs(sum(self.shares.values()) - 1.0) > 1e-6:
                raise ValueError(f"shares sum to {sum(self.shares.values()):.6f}, not 1")
        if not (self.counts or self.shares):
            raise ValueError("quotas name no language")
        return self

    def per_language(self) -> dict[str, int]:
        """Whole rows wanted per canonical language code."""
        if self.counts is not None:
            return dict(self.counts)
        assert self.shares is not None and self.total is not None
        return quota_counts(self.total, self.shares)


def quota_counts(total: int, shares: dict[str, float]) -> dict[str, int]:
    """Split ``total`` rows by ``shares`` into whole counts that sum to ``total`` exactly.

    Largest remainder (Hamilton): every language gets the floor of its exact share, and the rows
    left over go one each to the largest fractional parts, ties to the alphabetically first code,
    so the split is reproducible. Shares are read as the decimals they print as and renormalised,
    so float noise (0.29 * 100 = 28.999...) cannot move a row.
    """
    exact = {code: Fraction(repr(share)) for code, share in shares.items()}
    norm = sum(exact.values())
    ideal = {code: total * share / norm for code, share in exact.items()}
    counts = {code: math.floor(value) for code, value in ideal.items()}
    left = total - sum(counts.values())
    by_remainder = sorted(ideal, key=lambda code: (-(ideal[code] - counts[code]), code))
    for code in by_remainder[:left]:
        counts[code] += 1
    return counts


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


@dataclass(frozen=True)
class _FileGroup:
    """Parquet files read by one ``read_parquet`` call: same role, same optional columns."""

    files: tuple[str, ...]
    language: str | None  # fixed language of every row (laion2B-en), else the LANGUAGE column
    columns: frozenset[str]


class _Query:
    """SQL text plus its named parameters, so values never get spliced into the SQL."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def bind(self, name: str, value: Any) -> str:
        self.params[name] = value
        return f"${name}"


def _expand(paths: Sequence[Path], role: str) -> list[Path]:
    """Files named directly plus the sorted ``*.parquet`` files of any directory."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.parquet"))
            if not found:
                raise LaionSamplingError(f"{path}: directory holds no *.parquet files ({role})")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: LAION {role} file not found; see {RELEASE_URL}")
    return files


def _schema(con: duckdb.DuckDBPyConnection, path: Path) -> dict[str, str]:
    """Column name to DuckDB type, from the parquet footer only."""
    try:
        rows = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
    except duckdb.Error as err:
        raise LaionSamplingError(f"{path}: not a readable parquet file ({err})") from None
    return {name: dtype for name, dtype, *_ in rows}


def _is_numeric(dtype: str) -> bool:
    return dtype.startswith("DECIMAL") or dtype in {
        "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
        "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE",
    }  # fmt: skip


def _check_columns(
    path: Path, schema: dict[str, str], strings: Sequence[str], numeric: Sequence[str]
) -> None:
    """Required columns present, and every column used typed as expected; names file and column.

    Optional numeric columns are type-checked too: a string ``similarity`` would otherwise be
    cast to NULL and quietly fail every row.
    """
    missing = [c for c in (*strings, *numeric) if c not in schema]
    if missing:
        raise LaionSamplingError(
            f"{path}: missing columns {missing}; it has {sorted(schema)}. "
            "Is this a LAION metadata file of the right release?"
        )
    for column in strings:
        if schema[column] != "VARCHAR":
            raise LaionSamplingError(
                f"{path}: column {column!r} holds {schema[column]}, not strings"
            )
    for column in (c for c in NUMERIC_COLUMNS if c in schema):
        if not _is_numeric(schema[column]):
            raise LaionSamplingError(
                f"{path}: column {column!r} holds {schema[column]}, not numbers"
            )


def _needed_numeric(filters: LaionFilters) -> list[str]:
    """Numeric columns the active filters read: a file lacking one cannot be filtered."""
    needed = {
        "similarity": filters.min_similarity is not None,
        "punsafe": filters.max_punsafe is not None,
        "pwatermark": filters.max_pwatermark is not None,
        "WIDTH": filters.min_width is not None or filters.max_aspect_ratio is not None,
        "HEIGHT": filters.min_height is not None or filters.max_aspect_ratio is not None,
    }
    return [column for column, used in needed.items() if used]


def _file_groups(
    con: duckdb.DuckDBPyConnection, inputs: LaionInputs, filters: LaionFilters
) -> list[_FileGroup]:
    """Validate every metadata file's schema and group files that can be read together."""
    numeric = _needed_numeric(filters)
    grouped: dict[tuple[str | None, frozenset[str]], list[str]] = {}
    for role, language, paths in (
        ("metadata", None, inputs.metadata),
        ("english", "en", inputs.english),
    ):
        strings = STRING_COLUMNS if language else (*STRING_COLUMNS, "LANGUAGE")
        for path in _expand(paths, role):
            schema = _schema(con, path)
            _check_columns(path, schema, strings, numeric)
            present = frozenset(c for c in NUMERIC_COLUMNS if c in schema)
            grouped.setdefault((language, present), []).append(str(path))
    return [_FileGroup(tuple(files), lang, cols) for (lang, cols), files in grouped.items()]


def _source_sql(groups: Sequence[_FileGroup], query: _Query) -> str:
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
    con: duckdb.DuckDBPyConnection, groups: Sequence[_FileGroup], filters: LaionFilters
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
    groups: Sequence[_FileGroup],
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


def _translation_files(con: duckdb.DuckDBPyConnection, inputs: LaionInputs) -> list[Path]:
    files = _expand(inputs.translations, "translations")
    for path in files:
        _check_columns(path, _schema(con, path), (*STRING_COLUMNS, ENG_TEXT), ())
    return files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _describe_inputs(
    groups: Sequence[_FileGroup], translations: Sequence[Path], hash_inputs: bool
) -> list[dict[str, Any]]:
    """Each input file with its role, size and (unless switched off) sha256, for provenance."""
    described = []
    roles = [("english" if g.language else "metadata", Path(f)) for g in groups for f in g.files]
    for role, path in sorted(roles + [("translations", p) for p in translations]):
        entry: dict[str, Any] = {"role": role, "path": str(path), "bytes": path.stat().st_size}
        if hash_inputs:
            entry["sha256"] = _sha256(path)
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
        groups = _file_groups(con, inputs, filters)
        translations = _translation_files(con, inputs)
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
                "sha256": _sha256(build / SAMPLE_FILE),
                "translated": bool(translations),
            },
        }
        atomic_write_json(manifest, build / MANIFEST_FILE)
        con.close()
        shutil.rmtree(build / ".duckdb_spill", ignore_errors=True)
    return SampleResult(out_dir / SAMPLE_FILE, out_dir / MANIFEST_FILE, manifest)
