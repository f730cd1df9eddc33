"""The SQL both selections share: one relation over every metadata file under our column names,
the filters as conditions, the counting pass, the seeded order and the caption key.

Every choice among rows follows ``md5(seed, URL, TEXT)`` (fixed by its specification, unlike
DuckDB's ``hash``), then the remaining columns (:data:`TIEBREAK`), so a selection depends only
on the rows and the seed, never on file order, threads or version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import duckdb

from xlr.data.laion.files import FileGroup
from xlr.data.laion.inputs import NUMERIC_COLUMNS, LaionEngine, LaionFilters, LaionSamplingError

TIEBREAK = "sample_key, TEXT, LANGUAGE, similarity, punsafe, pwatermark, WIDTH, HEIGHT"
DEDUP_STAGES: tuple[str, ...] = ("url_dedup", "caption_dedup", "selected")


class Query:
    """SQL text plus its named parameters, so values never get spliced into the SQL."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def bind(self, name: str, value: Any) -> str:
        self.params[name] = value
        return f"${name}"


def quote(name: str) -> str:
    """A column name as a SQL identifier: the releases use spaces (``ENG TEXT``) and lower case."""
    return '"' + name.replace('"', '""') + '"'


def sample_key(alias: str) -> str:
    """The seeded order of a row of ``alias`` (needs the ``$seed`` parameter): md5 hex."""
    return f"md5(concat_ws(chr(31), $seed, {alias}.URL, {alias}.TEXT))"


def _re2_class(codes: list[int]) -> str:
    """The characters ``codes`` (ascending) as the inside of an RE2 character class, in ranges."""
    runs: list[list[int]] = []
    for code in codes:
        if runs and code == runs[-1][1] + 1:
            runs[-1][1] = code
        else:
            runs.append([code, code])
    return "".join(f"\\x{{{a:x}}}" if a == b else f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in runs)


# What Python's str.split and str.strip take for white space (no such character lies above
# U+3000), as RE2 classes: all of it, and all but the ASCII space.
WHITE_SPACE = [code for code in range(0x3001) if chr(code).isspace()]
WHITE = _re2_class(WHITE_SPACE)
WHITE_BUT_SPACE = _re2_class([code for code in WHITE_SPACE if code != 0x20])


def caption_key(alias: str) -> str:
    """A caption with runs of white space (Python's: tabs, newlines, Unicode spaces) folded to
    one space, its ends trimmed and case folded: what counts as the same caption. Unicode forms
    (composed or decomposed accents, full-width letters) are not folded: DuckDB has no NFKC,
    and its ``nfc_normalize`` took six times a lower-casing over 3M captions here.

    Most captions have nothing to fold (no white space but single inner spaces); they skip the
    regular expression that replaces (the costly part), which gives the same key for them.
    """
    text = f"{alias}.TEXT"
    folded = f"lower(trim(regexp_replace({text}, '[{WHITE}]+', ' ', 'g')))"
    tame = f"NOT regexp_matches({text}, '[{WHITE_BUT_SPACE}]|  |^ | $')"
    return f"CASE WHEN {tame} THEN lower({text}) ELSE {folded} END"


def source_sql(groups: Sequence[FileGroup], query: Query) -> str:
    """One relation over all metadata files under our column names, missing numerics as NULL."""
    parts = []
    for i, group in enumerate(groups):
        files = query.bind(f"files_{i}", list(group.files))
        language = (
            query.bind(f"language_{i}", group.language)
            if group.language
            else f"NULLIF(trim({quote(group.name('LANGUAGE'))}), '')"
        )
        numeric = ", ".join(
            f"{_number(quote(group.name(col)), dtype)} AS {col}"
            if col in group.columns
            else f"NULL::{dtype} AS {col}"
            for col, dtype in NUMERIC_COLUMNS.items()
        )
        parts.append(
            f"SELECT {quote(group.name('URL'))} AS URL, {quote(group.name('TEXT'))} AS TEXT, "
            f"{language} AS LANGUAGE_RAW, {numeric} FROM read_parquet({files})"
        )
    return "\nUNION ALL\n".join(parts)


def _number(column: str, dtype: str) -> str:
    """``column`` as ``dtype``, NULL where it is no number: DuckDB orders NaN above every number,
    so a NaN similarity would pass ``similarity >= min`` where a missing one fails."""
    cast = f"TRY_CAST({column} AS {dtype})"  # (NULLIF(cast, 'NaN') kept the tests' NaN)
    return f"CASE WHEN isnan({cast}) THEN NULL ELSE {cast} END" if dtype == "DOUBLE" else cast


def _not_blank(column: str) -> str:
    """Whether ``column`` holds a character that is not white space (:data:`WHITE_SPACE`: a
    caption of tabs and newlines is blank too), decided from the first character where it is
    plainly one: the regular expression was most of the cost of a scan."""
    return (
        f"CASE WHEN ascii({column}) BETWEEN 33 AND 126 THEN TRUE "
        f"ELSE regexp_matches({column}, '[^{WHITE}]') END"
    )


def filter_conditions(filters: LaionFilters, query: Query) -> list[tuple[str, str]]:
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
        ("non_empty", f"{_not_blank('URL')} AND {_not_blank('TEXT')}"),
        ("similarity", bound(filters.min_similarity, "similarity >= {}", "min_similarity")),
        ("punsafe", bound(filters.max_punsafe, "punsafe <= {}", "max_punsafe")),
        ("pwatermark", bound(filters.max_pwatermark, "pwatermark <= {}", "max_pwatermark")),
        ("size", " AND ".join(size) or "TRUE"),
        ("caption_length", " AND ".join(length)),
    ]


def filter_counts(
    con: duckdb.DuckDBPyConnection, groups: Sequence[FileGroup], filters: LaionFilters
) -> dict[str | None, list[int]]:
    """Rows per raw language code after each filter stage, in one streaming pass."""
    query = Query()
    source = source_sql(groups, query)
    conditions = filter_conditions(filters, query)
    # Each condition evaluated once per row (as a column), then combined: written inline, every
    # count would evaluate the string functions of all the stages before it again.
    passed = ", ".join(f"({c}) AS stage_{i}" for i, (_, c) in enumerate(conditions))
    cumulative = [" AND ".join(f"stage_{j}" for j in range(i + 1)) for i in range(len(conditions))]
    counts = ", ".join(f"count(*) FILTER (WHERE COALESCE({c}, FALSE))" for c in cumulative)
    sql = f"""SELECT LANGUAGE_RAW, count(*), {counts}
        FROM (SELECT LANGUAGE_RAW, {passed} FROM ({source})) GROUP BY LANGUAGE_RAW"""
    try:
        rows = con.execute(sql, query.params).fetchall()
    except duckdb.InvalidInputException as err:
        # The first full scan is where corrupt pages and invalid UTF-8 surface; DuckDB's message
        # names the file and the offending value.
        raise LaionSamplingError(f"{err}; re-download that file or leave it out") from None
    return {raw: list(values) for raw, *values in rows}


@dataclass(frozen=True)
class FilteredRows:
    """The rows that compete for the quotas, as SQL: every row passing the filters whose
    language has a quota, with our column names and ``LANGUAGE`` as the canonical code.

    ``sql`` needs ``params`` (which bind ``$seed`` for :func:`sample_key`); ``counts`` is how
    many rows it holds per quota language, from the counting pass.
    """

    sql: str
    params: dict[str, Any]
    counts: dict[str, int]


def filtered_rows(
    con: duckdb.DuckDBPyConnection,
    groups: Sequence[FileGroup],
    filters: LaionFilters,
    raw_map: dict[str, str],
    quotas: dict[str, int],
    counts: dict[str, int],
    seed: int,
) -> FilteredRows:
    """The competing rows (temp tables ``langmap`` and ``quotas`` back the SQL)."""
    con.execute("CREATE OR REPLACE TEMP TABLE langmap (raw VARCHAR, lang VARCHAR)")
    wanted = [(raw, lang) for raw, lang in raw_map.items() if lang in quotas]
    if wanted:
        con.executemany("INSERT INTO langmap VALUES (?, ?)", wanted)
    con.execute("CREATE OR REPLACE TEMP TABLE quotas (lang VARCHAR, quota BIGINT)")
    con.executemany("INSERT INTO quotas VALUES (?, ?)", sorted(quotas.items()))
    query = Query()
    source = source_sql(groups, query)
    # WHERE drops rows whose conditions are NULL: a null value fails a filter.
    where = " AND ".join(f"({c})" for _, c in filter_conditions(filters, query))
    query.bind("seed", str(seed))
    numeric = ", ".join(f"s.{col}" for col in NUMERIC_COLUMNS)
    sql = f"""SELECT s.URL, s.TEXT, m.lang AS LANGUAGE, {numeric}
        FROM ({source}) s JOIN langmap m ON s.LANGUAGE_RAW = m.raw
        WHERE {where}"""
    return FilteredRows(sql, query.params, {lang: counts.get(lang, 0) for lang in quotas})


def counts_by_language(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, int]:
    """``SELECT LANGUAGE, count(*)`` of a relation, as a dict."""
    return dict(con.execute(f"SELECT LANGUAGE, count(*) FROM ({sql}) GROUP BY LANGUAGE").fetchall())


@dataclass(frozen=True)
class Selection:
    """What a selection left in temp table ``selected`` (our columns plus ``sample_key``):
    rows per quota language after each dedup stage, and how it went, for the manifest."""

    counts: dict[str, dict[str, int]]
    details: dict[str, Any] = field(default_factory=dict)


class Selector(Protocol):
    """A way to fill temp table ``selected`` from the competing rows: per language, the quota's
    worth of rows with the smallest seeded keys among those that survive deduplication."""

    def __call__(
        self,
        con: duckdb.DuckDBPyConnection,
        rows: FilteredRows,
        quotas: dict[str, int],
        engine: LaionEngine,
    ) -> Selection: ...
