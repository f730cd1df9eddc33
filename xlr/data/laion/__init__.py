"""A study subset of LAION-5B, selected from its metadata parquet files with DuckDB.

The releases are laion2B-en (no ``LANGUAGE`` column: every row is English), laion2B-multi and
laion1B-nolang (``LANGUAGE`` per row), and the translated release, which adds ``ENG TEXT`` (the
M2M100 translation to English) and is joined onto the sample by ``URL`` and ``TEXT``. LAION-5B is
served today as Re-LAION-5B, under other column names (:class:`LaionColumns`). Inputs are local
or remote (``s3://``, ``hf://``) strings DuckDB reads as given (:mod:`.files`).

The metadata holds about 4.6B rows, so it is never loaded whole: DuckDB streams it, reading only
the columns a query touches, and the selection examines only a slice of it
(:mod:`.selection`), equal row for row to the plain definition (:mod:`.reference`). It is:

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
directory holding ``sample.parquet`` and ``manifest.json`` (inputs with sizes, modification
times and, for small local inputs, sha256; columns, filters, quotas, per-language counts at every
stage, shortfalls), written atomically as a whole and reused while that recipe holds.
"""

from xlr.data.laion.files import describe_inputs
from xlr.data.laion.inputs import (
    ENG_TEXT,
    HASH_INPUTS_MAX_BYTES,
    KNOWN_SCHEMAS,
    NUMERIC_COLUMNS,
    OUR_COLUMNS,
    RELEASE_URL,
    STRING_COLUMNS,
    EmptySelectionError,
    InputPath,
    LaionColumns,
    LaionEngine,
    LaionFilters,
    LaionInputs,
    LaionQuotas,
    LaionSamplingError,
    PositiveInt,
    Unit,
    is_remote,
    quota_counts,
)
from xlr.data.laion.reference import select_reference
from xlr.data.laion.sampling import (
    FILTER_STAGES,
    MANIFEST_FILE,
    SAMPLE_FILE,
    SAMPLE_FORMAT,
    SampleResult,
    sample_laion,
)
from xlr.data.laion.selection import select_scalable
from xlr.data.laion.sql import DEDUP_STAGES, Selector

__all__ = [
    "DEDUP_STAGES", "ENG_TEXT", "FILTER_STAGES", "HASH_INPUTS_MAX_BYTES", "KNOWN_SCHEMAS",
    "MANIFEST_FILE", "NUMERIC_COLUMNS", "OUR_COLUMNS", "RELEASE_URL", "SAMPLE_FILE",
    "SAMPLE_FORMAT", "STRING_COLUMNS", "EmptySelectionError", "InputPath", "LaionColumns",
    "LaionEngine", "LaionFilters", "LaionInputs", "LaionQuotas", "LaionSamplingError",
    "PositiveInt", "SampleResult", "Selector", "Unit", "describe_inputs", "is_remote",
    "quota_counts", "sample_laion", "select_reference", "select_scalable",
]  # fmt: skip
