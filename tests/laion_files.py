"""LAION-shaped parquet files for the sampling tests: one row at a time, typed like the release
(float32 scores, int32 sizes, large strings)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

TYPES = {
    "URL": pa.large_string(),
    "TEXT": pa.large_string(),
    "LANGUAGE": pa.large_string(),
    "ENG TEXT": pa.large_string(),
    "similarity": pa.float32(),
    "punsafe": pa.float32(),
    "pwatermark": pa.float32(),
    "WIDTH": pa.int32(),
    "HEIGHT": pa.int32(),
    "hash": pa.int64(),
}


def laion_row(url: str, text: str | None, lang: str | None = "de", **overrides: float) -> dict:
    """A row that passes the tests' filters unless ``overrides`` say otherwise."""
    row = {"URL": url, "TEXT": text, "LANGUAGE": lang, "similarity": 0.3, "punsafe": 0.01,
           "pwatermark": 0.1, "WIDTH": 640, "HEIGHT": 480, "hash": sum(map(ord, url))}  # fmt: skip
    row.update(overrides)
    return row


def write_rows(
    path: Path, rows: list[dict], drop: tuple[str, ...] = (), rename: dict[str, str] | None = None
) -> Path:
    """``rows`` as a parquet file, without the ``drop`` columns and with ``rename`` applied."""
    frame = pd.DataFrame(rows).drop(columns=list(drop))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.cast(pa.schema([(f.name, TYPES.get(f.name, f.type)) for f in table.schema]))
    if rename:
        table = table.rename_columns([rename.get(c, c) for c in table.column_names])
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path
