"""The selection as its definition reads: every competing row materialised with its keys, then
deduplicated by URL, then by caption, then cut to the quotas, each a window over the whole table.

It is the oracle :func:`xlr.data.laion.selection.select_scalable` must equal row for row (the
tests compare them on fixtures and random data) and the plain alternative the benchmark times it
against. At LAION scale it holds every filtered row of the quota languages (about 2B for
English) in three tables and needs terabytes of spill; :func:`sample_laion` uses the scalable one.
"""

from __future__ import annotations

import duckdb

from xlr.data.laion.inputs import LaionEngine
from xlr.data.laion.sql import (
    DEDUP_STAGES,
    TIEBREAK,
    FilteredRows,
    Selection,
    caption_key,
    counts_by_language,
    sample_key,
)


def select_reference(
    con: duckdb.DuckDBPyConnection,
    rows: FilteredRows,
    quotas: dict[str, int],
    engine: LaionEngine,
) -> Selection:
    """Fill ``selected`` by full materialisation and window passes (``engine`` unused: nothing
    here is tunable)."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE candidates AS
        SELECT r.*, {sample_key("r")} AS sample_key, {caption_key("r")} AS caption_key
        FROM ({rows.sql}) r""",
        rows.params,
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE url_unique AS SELECT * FROM candidates
        QUALIFY row_number() OVER (PARTITION BY URL ORDER BY {TIEBREAK}) = 1"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE caption_unique AS SELECT * FROM url_unique
        QUALIFY row_number() OVER (PARTITION BY caption_key ORDER BY {TIEBREAK}) = 1"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE selected AS
        SELECT c.* EXCLUDE (caption_key) FROM caption_unique c JOIN quotas q ON c.LANGUAGE = q.lang
        QUALIFY row_number() OVER (PARTITION BY c.LANGUAGE ORDER BY sample_key) <= q.quota"""
    )
    tables = dict(zip(DEDUP_STAGES, ("url_unique", "caption_unique", "selected"), strict=True))
    counts = {lang: dict.fromkeys(DEDUP_STAGES, 0) for lang in quotas}
    for stage, table in tables.items():
        for lang, n in counts_by_language(con, f"SELECT LANGUAGE FROM {table}").items():
            counts[lang][stage] = n
    return Selection(counts, {"method": "reference: all competing rows materialised"})
