"""The LAION metadata files behind an input spec: found (files, directories, globs, remote URLs),
their parquet footers checked against the column mapping, grouped for reading, and described
for provenance. Only listings and footers are read here; the rows are left to the selection."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from huggingface_hub import get_token

from xlr.data.laion.inputs import (
    ENG_TEXT,
    HASH_INPUTS_MAX_BYTES,
    KNOWN_SCHEMAS,
    NUMERIC_COLUMNS,
    RELEASE_URL,
    ROLES,
    STRING_COLUMNS,
    LaionColumns,
    LaionFilters,
    LaionInputs,
    LaionSamplingError,
    is_remote,
)
from xlr.io import file_sha256

GLOB_CHARS = frozenset("*?[")
S3_SCHEMES = ("s3", "s3a", "s3n")  # the schemes DuckDB's httpfs reads as AWS S3


@dataclass(frozen=True)
class FileGroup:
    """Parquet files read by one ``read_parquet`` call: same role, same optional columns."""

    files: tuple[str, ...]
    language: str | None  # fixed language of every row (laion2B-en), else the LANGUAGE column
    columns: frozenset[str]  # our optional numeric columns the files have
    names: tuple[tuple[str, str], ...]  # our column name -> the files' name

    def name(self, column: str) -> str:
        """The files' name for our ``column``."""
        return dict(self.names)[column]


def enable_remote(con: duckdb.DuckDBPyConnection, inputs: LaionInputs) -> None:
    """Load DuckDB's httpfs extension when some input is remote (installing it if need be),
    give ``hf://`` inputs the Hugging Face token (:func:`_hugging_face_secret`) and ``s3://``
    inputs the AWS credential chain (:func:`_s3_secret`).

    Local-only runs never touch it, so they work offline; a remote run without it fails here,
    before any work, with what to do.
    """
    remote = [entry for role in ROLES for entry in getattr(inputs, role) if is_remote(entry)]
    if not remote:
        return
    _load_httpfs(con, remote[0])
    schemes = {entry.partition("://")[0].lower(): entry for entry in remote}
    if "hf" in schemes:
        _hugging_face_secret(con)
    s3 = [schemes[scheme] for scheme in S3_SCHEMES if scheme in schemes]
    if s3:
        _s3_secret(con, s3[0])


def _hugging_face_secret(con: duckdb.DuckDBPyConnection) -> None:
    """DuckDB reads gated Hugging Face datasets (Re-LAION's) only with a token in a secret of
    its own; ``hf auth login`` alone does not give it one. The token is the one
    ``huggingface_hub`` finds (``HF_TOKEN``, else the login's token file); without one, public
    datasets still read and a gated one is refused by the Hub."""
    token = get_token()
    if token is None:
        return
    quoted = token.replace("'", "''")  # a SQL string literal: CREATE SECRET takes no parameters
    con.execute(f"CREATE OR REPLACE TEMPORARY SECRET xlr_hf (TYPE huggingface, TOKEN '{quoted}')")


def _s3_secret(con: duckdb.DuckDBPyConnection, example: str) -> None:
    """DuckDB signs S3 requests only with a secret; without one it reads anonymously, which a
    private bucket refuses. Unless the user made an S3 secret of their own (a persistent one, say),
    a temporary ``credential_chain`` secret takes what the AWS SDK finds (environment, profiles,
    SSO, instance or pod roles), as the AWS CLI would. It needs DuckDB's aws extension; where that
    or the credentials are missing, the run warns and reads anonymously (public buckets)."""
    if con.execute("SELECT count(*) FROM duckdb_secrets() WHERE type = 's3'").fetchone()[0]:
        return
    try:
        con.execute(
            "CREATE OR REPLACE TEMPORARY SECRET xlr_s3 (TYPE s3, PROVIDER credential_chain)"
        )
    except duckdb.Error as err:
        reason = str(err).splitlines()[0]
        warnings.warn(
            f"{example}: no AWS credentials for DuckDB ({reason}); S3 is read anonymously, "
            "which only a public bucket allows. Install DuckDB's aws extension "
            "(python -c \"import duckdb; duckdb.connect().install_extension('aws')\") and set "
            "AWS credentials (AWS_PROFILE, ~/.aws), or create an S3 secret of your own "
            "(CREATE PERSISTENT SECRET ... TYPE s3)",
            stacklevel=3,
        )


def _load_httpfs(con: duckdb.DuckDBPyConnection, example: str) -> None:
    """Load httpfs, installing it if need be; ``example`` (a remote input) names the failure."""
    try:
        con.execute("LOAD httpfs")
        return
    except duckdb.Error:
        pass
    try:
        con.execute("INSTALL httpfs")
        con.execute("LOAD httpfs")
    except duckdb.Error as err:
        reason = str(err).splitlines()[0]
        raise LaionSamplingError(
            f"{example}: remote inputs need DuckDB's httpfs extension, which is not installed "
            f"here and could not be installed ({reason}). Install it on a machine with internet "
            "(python -c \"import duckdb; duckdb.connect().install_extension('httpfs')\") and copy "
            "~/.duckdb/extensions here, or download the files and list local paths"
        ) from None


def _glob(con: duckdb.DuckDBPyConnection, pattern: str) -> list[str]:
    try:
        return sorted(
            row[0] for row in con.execute("SELECT file FROM glob(?)", [pattern]).fetchall()
        )
    except duckdb.Error as err:
        raise LaionSamplingError(f"{pattern}: cannot list files ({err})") from None


def _expand(con: duckdb.DuckDBPyConnection, entry: str, role: str) -> list[str]:
    """One input entry as the sorted files it stands for; a missing file is an error."""
    entry = os.fspath(entry)
    if is_remote(entry):
        pattern = entry + "*.parquet" if entry.endswith("/") else entry
        if not GLOB_CHARS & set(pattern):
            return [entry]
    elif Path(entry).is_dir():  # listed here: DuckDB would read "laion[2022]/" as a pattern
        found = sorted(str(path) for path in Path(entry).glob("*.parquet") if path.is_file())
        if not found:
            raise LaionSamplingError(f"{entry}: directory holds no *.parquet files ({role})")
        return found
    elif GLOB_CHARS & set(entry):
        pattern = entry
    elif Path(entry).is_file():
        return [entry]
    else:
        raise FileNotFoundError(f"{entry}: LAION {role} file not found; see {RELEASE_URL}")
    found = _glob(con, pattern)
    if not found:
        raise LaionSamplingError(f"{entry}: matches no file ({role}); check the pattern")
    return found


def _normalised(file: str) -> str:
    """A local path without ``./`` or ``a/../`` detours, so that one file listed by two entries
    (``./data/a.parquet`` and a glob's ``data/a.parquet``) is one; a URL as it is."""
    return file if "://" in file else os.path.normpath(file)


def list_inputs(con: duckdb.DuckDBPyConnection, inputs: LaionInputs) -> dict[str, list[str]]:
    """Every input file per role (``metadata``, ``english``, ``translations``), globs expanded,
    each once: entries that overlap (a folder and a glob in it) would read its rows twice, and
    the manifest's counts with them. A file both ``metadata`` and ``english`` is an error (its
    rows would compete twice); the translations may be the metadata files themselves."""
    listed = {
        role: list(dict.fromkeys(
            _normalised(file) for entry in getattr(inputs, role)
            for file in _expand(con, entry, role)
        ))
        for role in ROLES
    }  # fmt: skip
    both = sorted(set(listed["metadata"]) & set(listed["english"]))
    if both:
        raise LaionSamplingError(
            f"{both[0]} ({len(both)} file(s) in all) is listed under both data.laion.inputs."
            "metadata and english; list laion2B-en files under english only"
        )
    return listed


class Schema:
    """A parquet file's column types by name, looked up as DuckDB resolves names in a query:
    whatever their case (a ``LANGUAGE`` column answers to ``language``; DuckDB lower-cases, so
    ``ß`` is no ``ss``). ``names`` keeps the file's own spelling for messages."""

    def __init__(self, columns: Sequence[tuple[str, str]]) -> None:
        self._types = {name.lower(): dtype for name, dtype in columns}
        self.names = sorted(name for name, _ in columns)

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._types

    def __getitem__(self, name: str) -> str:
        return self._types[name.lower()]


def _schema(con: duckdb.DuckDBPyConnection, file: str) -> Schema:
    """Column name to DuckDB type, from the parquet footer only."""
    try:
        rows = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [file]).fetchall()
    except duckdb.Error as err:
        hint = (
            "; a gated Hugging Face dataset (Re-LAION's) reads only once its terms are accepted "
            "on the Hub and a token is found (hf auth login, or HF_TOKEN)"
            if file.lower().startswith("hf://")
            else ""
        )
        raise LaionSamplingError(f"{file}: not a readable parquet file ({err}){hint}") from None
    return Schema([(name, dtype) for name, dtype, *_ in rows])


def _is_numeric(dtype: str) -> bool:
    return dtype.startswith("DECIMAL") or dtype in {
        "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
        "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE",
    }  # fmt: skip


def _check_columns(
    file: str,
    schema: Schema,
    required: Sequence[str],
    names: dict[str, str],
    where: str,
) -> None:
    """Required columns present (under the file's names), and every column used typed as
    expected; the message names the file, the column and the setting to change.

    Optional numeric columns are type-checked too: a string ``similarity`` would otherwise be
    cast to NULL and quietly fail every row.
    """
    missing = [c for c in required if names[c] not in schema]
    if where == "english" and names["LANGUAGE"] in schema:
        raise LaionSamplingError(
            f"{file}: has a {names['LANGUAGE']!r} column, so its rows need not be English, as "
            "data.laion.inputs.english takes every row to be (laion2B-en has none); list it "
            "under data.laion.inputs.metadata"
        )
    if missing == ["LANGUAGE"] and where == "metadata":
        raise LaionSamplingError(
            f"{file}: no {names['LANGUAGE']!r} column, as in laion2B-en (every row English); "
            "list such files under data.laion.inputs.english, not metadata, or map our LANGUAGE "
            "to the file's column in data.laion.columns.metadata"
        )
    if missing:
        renamed = [c for c in missing if names[c] != c]
        ours = f" (our {', '.join(renamed)})" if renamed else ""
        raise LaionSamplingError(
            f"{file}: missing columns {[names[c] for c in missing]}{ours}; it has "
            f"{schema.names}. Is this a LAION metadata file of the right release? Its column "
            f"names come from data.laion.columns.{where}; set that to a known schema "
            f"({', '.join(KNOWN_SCHEMAS)}) or map our names to the file's"
        )
    for column in (*STRING_COLUMNS, "LANGUAGE", ENG_TEXT):
        if column in required and schema[names[column]] != "VARCHAR":
            raise LaionSamplingError(
                f"{file}: column {names[column]!r} holds {schema[names[column]]}, not strings"
            )
    for column in (c for c in NUMERIC_COLUMNS if names[c] in schema):
        if not _is_numeric(schema[names[column]]):
            raise LaionSamplingError(
                f"{file}: column {names[column]!r} holds {schema[names[column]]}, not numbers"
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
    con: duckdb.DuckDBPyConnection,
    listed: dict[str, list[str]],
    columns: LaionColumns,
    filters: LaionFilters,
) -> list[FileGroup]:
    """Validate every metadata file's schema and group files that can be read together."""
    numeric = _needed_numeric(filters)
    grouped: dict[tuple[str, frozenset[str]], list[str]] = {}
    for role, language in (("metadata", None), ("english", "en")):
        names = columns.names(role)
        strings = STRING_COLUMNS if language else (*STRING_COLUMNS, "LANGUAGE")
        for file in listed[role]:
            schema = _schema(con, file)
            _check_columns(file, schema, (*strings, *numeric), names, role)
            present = frozenset(c for c in NUMERIC_COLUMNS if names[c] in schema)
            grouped.setdefault((role, present), []).append(file)
    return [
        FileGroup(
            tuple(files),
            "en" if role == "english" else None,
            present,
            tuple(columns.names(role).items()),
        )
        for (role, present), files in grouped.items()
    ]


def check_translations(
    con: duckdb.DuckDBPyConnection, files: Sequence[str], columns: LaionColumns
) -> dict[str, str]:
    """Check each translated-release file for URL, TEXT and ENG TEXT; returns their names."""
    names = columns.names("translations")
    for file in files:
        _check_columns(file, _schema(con, file), (*STRING_COLUMNS, ENG_TEXT), names, "translations")
    return names


def _stat(con: duckdb.DuckDBPyConnection, files: Sequence[str]) -> dict[str, tuple[int, str]]:
    """Size in bytes and modification time per file, local or remote, without reading it."""
    try:
        rows = con.execute(
            "SELECT filename, size, last_modified FROM read_blob(?)", [list(files)]
        ).fetchall()
    except duckdb.Error as err:
        raise LaionSamplingError(f"cannot read the size of the inputs ({err})") from None
    return {name: (size, modified.isoformat()) for name, size, modified in rows}


def describe_inputs(
    con: duckdb.DuckDBPyConnection, listed: dict[str, list[str]], hash_inputs: bool | None
) -> list[dict[str, Any]]:
    """Each input file with its role, size, modification time and (where hashed) sha256.

    This is what a sample is made from: a sample is reused only while it stays the same.
    ``hash_inputs=None`` hashes when every input is local and together they hold at most
    :data:`HASH_INPUTS_MAX_BYTES`; ``True`` hashes local inputs of any size.
    """
    roles = sorted((role, file) for role, files in listed.items() for file in files)
    remote = [file for _, file in roles if is_remote(file)]
    if hash_inputs and remote:
        raise LaionSamplingError(
            f"{remote[0]}: hash_inputs=True needs local inputs; remote files are described by "
            "size and modification time. Pass hash_inputs=None or False"
        )
    stats = _stat(con, sorted({file for _, file in roles}))
    total = sum(size for size, _ in stats.values())
    if hash_inputs is None:
        hash_inputs = not remote and total <= HASH_INPUTS_MAX_BYTES
    described = []
    for role, file in roles:
        size, modified = stats[file]
        entry: dict[str, Any] = {"role": role, "path": file, "bytes": size, "modified": modified}
        if hash_inputs:
            entry["sha256"] = file_sha256(Path(file))
        described.append(entry)
    return described
