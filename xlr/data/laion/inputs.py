"""What a LAION subset is drawn from and by which rules: the input, column, filter and quota
specs, and how DuckDB runs the selection.

The releases are laion2B-en (no ``LANGUAGE`` column: every row is English), laion2B-multi and
laion1B-nolang (``LANGUAGE`` per row), and the translated release, which adds ``ENG TEXT``.
Re-LAION-5B serves the same rows under other column names (:data:`KNOWN_SCHEMAS`). The files
themselves are found and checked in :mod:`xlr.data.laion.files`.
"""

from __future__ import annotations

import math
import os
import re
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

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
OUR_COLUMNS: tuple[str, ...] = (*STRING_COLUMNS, "LANGUAGE", *NUMERIC_COLUMNS, ENG_TEXT)
ROLES: tuple[str, ...] = ("metadata", "english", "translations")

# Our column names -> a release's, for the columns it names differently. Sources: the 2022
# releases (laion2B-en, laion2B-multi, laion1B-nolang, their -joined versions with punsafe and
# pwatermark, and laion2B-multi-joined-translated-to-en with ENG TEXT) use our names. Re-LAION's
# research-safe files (laion/relaion2B-en-research-safe on the Hugging Face Hub) name them
# url, caption, similarity, punsafe, pwatermark, original_width and original_height, as code
# reading those files in public repositories shows; the image size LAION filtered on is the
# original one. Their language column is taken to be ``language`` by the same lower-casing; no
# public source read here confirms it, so a file that differs fails with the name it lacks
# (names match in any case, as DuckDB resolves them: ``LANGUAGE`` would do).
KNOWN_SCHEMAS: dict[str, dict[str, str]] = {
    "laion-2022": {},
    "relaion-research-safe": {
        "URL": "url", "TEXT": "caption", "LANGUAGE": "language",
        "WIDTH": "original_width", "HEIGHT": "original_height",
    },
}  # fmt: skip

# hash_inputs=None hashes local inputs up to this many bytes in all: sha256 read 0.5 GB/s on
# this project's machine (warm cache), so this costs a few seconds per call; the full metadata
# (hundreds of gigabytes) would take hours, on every call, since a reuse check hashes too.
HASH_INPUTS_MAX_BYTES = 1 << 30
REMOTE_SCHEMES: tuple[str, ...] = ("s3", "s3a", "s3n", "r2", "gcs", "gs", "hf", "http", "https")

Unit = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]


def _path_string(value: Any) -> Any:
    """A path object as its string (it has lost any ``//`` already); strings pass untouched."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


InputPath = Annotated[str, BeforeValidator(_path_string)]


def is_remote(path: str | os.PathLike[str]) -> bool:
    """Whether DuckDB reads ``path`` through httpfs (``s3://``, ``hf://``, ``https://``, ...)."""
    scheme, sep, _ = os.fspath(path).partition("://")
    return bool(sep) and scheme.lower() in REMOTE_SCHEMES


class LaionSamplingError(ValueError):
    """LAION inputs or a specification that cannot give a subset; the message says why and where."""


class EmptySelectionError(LaionSamplingError):
    """Filters, deduplication and quotas left no rows at all."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class LaionInputs(_Spec):
    """Which LAION metadata files to sample from, as strings handed to DuckDB unchanged.

    Each entry is a local file, a local directory (standing for its ``*.parquet`` files), a glob
    (``data/laion/part-0000*.parquet``), or a remote URL DuckDB reads through its httpfs
    extension (``s3://bucket/laion2B-multi/*.parquet``, ``hf://datasets/laion/.../``; a trailing
    ``/`` stands for the ``*.parquet`` files under it). They are strings, not paths, because a
    path object folds ``s3://`` into ``s3:/``.

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

    def resolved(self, root: Path) -> LaionInputs:
        """Relative local entries anchored at ``root`` (the project root, for params files);
        absolute and remote ones unchanged."""

        def anchor(entry: str) -> str:
            entry = os.fspath(entry)
            if is_remote(entry) or Path(entry).is_absolute():
                return entry
            return str(Path(root) / entry)

        return LaionInputs(**{role: [anchor(e) for e in getattr(self, role)] for role in ROLES})


class LaionColumns(_Spec):
    """Where each of our column names is found in each role's files.

    A role takes a known schema's name (:data:`KNOWN_SCHEMAS`: ``laion-2022``,
    ``relaion-research-safe``) or a mapping from our names (``URL``, ``TEXT``, ``LANGUAGE``,
    ``similarity``, ``punsafe``, ``pwatermark``, ``WIDTH``, ``HEIGHT``, ``ENG TEXT``) to the
    file's; columns a mapping leaves out keep our names. Roles differ because the releases do:
    Re-LAION's research-safe metadata beside the 2022 translated release is the usual mix.
    """

    metadata: str | dict[str, str] = "laion-2022"
    english: str | dict[str, str] = "laion-2022"
    translations: str | dict[str, str] = "laion-2022"

    @field_validator("metadata", "english", "translations")
    @classmethod
    def _known(cls, value: str | dict[str, str]) -> str | dict[str, str]:
        if isinstance(value, str):
            if value not in KNOWN_SCHEMAS:
                raise ValueError(
                    f"unknown schema {value!r}; known: {', '.join(KNOWN_SCHEMAS)}, or give a "
                    "mapping from our column names to the file's"
                )
            return value
        unknown = sorted(set(value) - set(OUR_COLUMNS))
        if unknown:
            raise ValueError(f"unknown columns {unknown}; ours are {list(OUR_COLUMNS)}")
        mapped = {**{c: c for c in OUR_COLUMNS}, **value}
        clashes = sorted({n for n in mapped.values() if list(mapped.values()).count(n) > 1})
        if clashes:
            raise ValueError(f"two of our columns would read the same file column: {clashes}")
        return value

    def names(self, role: str) -> dict[str, str]:
        """Our column name -> the file's, for every one of our columns, in ``role``'s files."""
        value = getattr(self, role)
        renames = KNOWN_SCHEMAS[value] if isinstance(value, str) else value
        return {column: renames.get(column, column) for column in OUR_COLUMNS}


_MEMORY = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")


class LaionEngine(_Spec):
    """How DuckDB runs the selection; nothing here changes which rows are selected.

    ``memory_limit`` caps DuckDB's buffers (a string such as ``"2GB"``; ``None`` is DuckDB's
    default, 80% of RAM), ``threads`` its worker threads (``None``: one per core), and
    ``temp_directory`` where it spills (``None``: a folder inside the output being built,
    removed with it). The sampler examines, per language, the rows whose seeded key falls
    under a threshold expected to hold ``oversample`` times its quota (at least
    ``min_examined`` rows), and widens the threshold when deduplication leaves too few.
    """

    memory_limit: str | None = "2GB"
    threads: PositiveInt | None = None
    temp_directory: str | None = None
    oversample: Annotated[float, Field(ge=1.0)] = 1.5
    min_examined: PositiveInt = 100_000

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not _MEMORY.match(value):
            raise ValueError(f"memory_limit {value!r} is not a size such as '2GB' or '512MiB'")
        return value

    def settings(self) -> dict[str, Any]:
        """DuckDB settings to apply, as ``SET name = value`` pairs (only those given)."""
        given = {"memory_limit": self.memory_limit, "threads": self.threads}
        return {name: value for name, value in given.items() if value is not None}


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
