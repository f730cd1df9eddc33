"""What a LAION subset is drawn from and by which rules: the input, filter and quota specs,
and the metadata files found, their schemas checked and grouped for reading.

The releases are laion2B-en (no ``LANGUAGE`` column: every row is English), laion2B-multi and
laion1B-nolang (``LANGUAGE`` per row), and the translated release, which adds ``ENG TEXT``.
Only parquet footers are read here; the rows are left to :mod:`xlr.data.laion.sampling`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any

import duckdb
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from xlr.langs import UnknownLanguageError, canonical_code

RELEASE_URL = "https://laion.ai/blog/relaion-5b/ (Re-LAION-5B metadata parquet files)"

STRING_COLUMNS: tuple[str, ...] = ("URL", "TEXT")
NUMERIC_COLUMNS: dict[str, str] = {
    "similarity": "DOUBLE",
    "punsafe": "DOUBLE",
    "pwatermark": "DOUBLE",
    "WIDTH": "BIGINT",
    "HEIGHT": "BIGINT",
}
ENG_TEXT = "ENG TEXT"

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
class FileGroup:
    """Parquet files read by one ``read_parquet`` call: same role, same optional columns."""

    files: tuple[str, ...]
    language: str | None  # fixed language of every row (laion2B-en), else the LANGUAGE column
    columns: frozenset[str]


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


def file_groups(
    con: duckdb.DuckDBPyConnection, inputs: LaionInputs, filters: LaionFilters
) -> list[FileGroup]:
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
    return [FileGroup(tuple(files), lang, cols) for (lang, cols), files in grouped.items()]


def translation_files(con: duckdb.DuckDBPyConnection, inputs: LaionInputs) -> list[Path]:
    """The translated release's files, each checked for ``URL``, ``TEXT`` and ``ENG TEXT``."""
    files = _expand(inputs.translations, "translations")
    for path in files:
        _check_columns(path, _schema(con, path), (*STRING_COLUMNS, ENG_TEXT), ())
    return files
