"""Quota sampling that never materialises all filtered rows, and selects exactly what the
definition (:func:`xlr.data.laion.reference.select_reference`) selects.

The definition keeps, per language, the quota's worth of smallest seeded keys among rows that
survive deduplication by URL and then by caption, where a duplicate group keeps its row first in
the seeded order. Two facts make that computable from a small slice:

* Whether a row survives does not depend on which other rows are examined: it is decided by the
  rows sharing its URL (and, among URL survivors, its caption) that come before it in the
  order, and those all have keys at most its own.
* So if, per language, only rows whose key falls under a threshold are examined, and each is
  checked against every row sharing its caption or URL up to its key, the survivors among them
  are exactly the definition's survivors under that threshold, and the quota's smallest keys
  among them are the definition's selection as long as at least a quota's worth survived.

A round is three streaming scans, each a hash join against a small table: the examined rows
(key under the language's threshold, chosen to hold ``oversample`` times the quota, at least
``min_examined`` rows); every row sharing a caption with one of them, up to the largest
examined key of that caption; and every row sharing a URL with those, up to the largest key of
that URL. The windows then run over these few rows. A language that falls short with its
threshold below the whole key range is widened and the round repeated; one whose threshold
covers everything keeps what it has (a shortfall, as in the definition).

The dedup counts are over the examined rows, so they equal the definition's exactly where a
language was examined in full (fraction 1) and are lower otherwise.
"""

from __future__ import annotations

import math

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

KEY_DIGITS = 16  # hex digits of the md5 key a threshold resolves: 2^64 steps


def key_bound(fraction: float) -> str:
    """The string a key must sort below to fall in the lowest ``fraction`` of the key range
    (md5 hex sorts as its number); ``"g"`` sorts after every key."""
    steps = math.ceil(fraction * 16**KEY_DIGITS)
    return "g" if fraction >= 1 or steps >= 16**KEY_DIGITS else f"{steps:0{KEY_DIGITS}x}"


def initial_fraction(quota: int, available: int, engine: LaionEngine) -> float:
    """Share of a language's rows to examine first: ``oversample`` times its quota, at least
    ``min_examined`` rows, at most all of them."""
    if available == 0:
        return 1.0
    wanted = max(math.ceil(engine.oversample * quota), engine.min_examined)
    return min(1.0, wanted / available)


def widened(fraction: float, quota: int, survived: int, engine: LaionEngine) -> float:
    """The next fraction for a language that fell short: scaled by what the shortfall implies
    (with the oversampling margin), at least doubled, so the rounds end."""
    needed = engine.oversample * quota / max(survived, 1)
    return min(1.0, fraction * max(2.0, needed))


def _round(
    con: duckdb.DuckDBPyConnection, rows: FilteredRows, fractions: dict[str, float]
) -> dict[str, dict[str, int]]:
    """One round at the given fractions: fills ``selected``; returns counts per language
    (``examined`` and the dedup stages). Each helper table is dropped once used, so memory
    holds about two tables of the examined rows' size at a time."""
    con.execute("CREATE OR REPLACE TEMP TABLE bands (lang VARCHAR, bound VARCHAR)")
    con.executemany(
        "INSERT INTO bands VALUES (?, ?)", [(lang, key_bound(f)) for lang, f in fractions.items()]
    )
    keyed = f"SELECT r.*, {sample_key('r')} AS sample_key FROM ({rows.sql}) r"
    # Join keys are hashes of the caption key and the URL: a collision only brings in a row
    # that the windows below, partitioned by the values themselves, then set apart.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE examined AS
        SELECT k.LANGUAGE, hash({caption_key("k")}) AS caption_hash, k.sample_key
        FROM ({keyed}) k JOIN bands b ON k.LANGUAGE = b.lang WHERE k.sample_key < b.bound""",
        rows.params,
    )
    examined = counts_by_language(con, "SELECT LANGUAGE FROM examined")
    con.execute(
        """CREATE OR REPLACE TEMP TABLE caption_bounds AS
        SELECT caption_hash, max(sample_key) AS bound FROM examined GROUP BY ALL;
        DROP TABLE examined"""
    )
    # Rows sharing a caption with an examined row, up to the last examined key of it; their
    # URLs, each up to the last key seen with it, are the URL groups the windows need.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE url_bounds AS
        SELECT hash(URL) AS url_hash, max(sample_key) AS bound FROM (
            SELECT r.URL, c.bound, {sample_key("r")} AS sample_key FROM ({rows.sql}) r
            JOIN caption_bounds c ON hash({caption_key("r")}) = c.caption_hash
        ) WHERE sample_key <= bound GROUP BY ALL""",
        rows.params,
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE url_winners AS
        SELECT * EXCLUDE (bound) FROM (
            SELECT r.*, u.bound, {sample_key("r")} AS sample_key FROM ({rows.sql}) r
            JOIN url_bounds u ON hash(r.URL) = u.url_hash
        ) WHERE sample_key <= bound
        QUALIFY row_number() OVER (PARTITION BY URL ORDER BY {TIEBREAK}) = 1""",
        rows.params,
    )
    con.execute(
        f"""DROP TABLE url_bounds;
        CREATE OR REPLACE TEMP TABLE caption_winners AS
        SELECT * FROM (SELECT w.*, {caption_key("w")} AS caption_key FROM url_winners w)
        WHERE hash(caption_key) IN (SELECT caption_hash FROM caption_bounds)
        QUALIFY row_number() OVER (PARTITION BY caption_key ORDER BY {TIEBREAK}) = 1"""
    )
    under = (
        "SELECT t.LANGUAGE FROM {} t JOIN bands b ON t.LANGUAGE = b.lang "
        "WHERE t.sample_key < b.bound"
    )
    url_dedup = counts_by_language(con, under.format("url_winners"))
    con.execute(
        """DROP TABLE url_winners; DROP TABLE caption_bounds;
        CREATE OR REPLACE TEMP TABLE selected AS
        SELECT c.* EXCLUDE (caption_key) FROM caption_winners c
        JOIN bands b ON c.LANGUAGE = b.lang JOIN quotas q ON c.LANGUAGE = q.lang
        WHERE c.sample_key < b.bound
        QUALIFY row_number() OVER (PARTITION BY c.LANGUAGE ORDER BY c.sample_key) <= q.quota"""
    )
    caption_dedup = counts_by_language(con, under.format("caption_winners"))
    con.execute("DROP TABLE caption_winners")
    selected = counts_by_language(con, "SELECT LANGUAGE FROM selected")
    stages = ("examined", *DEDUP_STAGES)
    found = dict(zip(stages, (examined, url_dedup, caption_dedup, selected), strict=True))
    return {lang: {stage: n.get(lang, 0) for stage, n in found.items()} for lang in fractions}


def select_scalable(
    con: duckdb.DuckDBPyConnection,
    rows: FilteredRows,
    quotas: dict[str, int],
    engine: LaionEngine,
) -> Selection:
    """Fill ``selected`` as the definition would, examining per language only the rows under a
    key threshold, widened until every quota is met or its language is examined in full."""
    fractions = {
        lang: initial_fraction(quota, rows.counts[lang], engine) for lang, quota in quotas.items()
    }
    rounds = 0
    while True:
        rounds += 1
        counts = _round(con, rows, fractions)
        short = [
            lang
            for lang, quota in quotas.items()
            if counts[lang]["selected"] < quota and fractions[lang] < 1
        ]
        if not short:
            break
        for lang in short:
            survived = counts[lang]["caption_dedup"]
            fractions[lang] = widened(fractions[lang], quotas[lang], survived, engine)
    details = {
        "method": "seeded key threshold per language, checked against every row sharing a "
        "caption or URL",
        "rounds": rounds,
        "examined": {
            lang: {"fraction": fractions[lang], "rows": counts[lang].pop("examined")}
            for lang in sorted(quotas)
        },
    }
    return Selection(counts, details)
