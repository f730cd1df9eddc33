"""``data.laion``: the real path's sampling, download, validation split and translation settings.

Its own module (not :mod:`xlr.config`) so that the schema stays one screenful per section and the
LAION code and the params file share one definition; :mod:`xlr.config` imports it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from xlr.data.download_settings import DownloadSection
from xlr.data.laion import LaionColumns, LaionEngine, LaionFilters, LaionInputs, LaionQuotas
from xlr.data.translate_settings import TranslateSection


class LaionSection(BaseModel):
    """The real path: a study subset of LAION-5B metadata (xlr.data.laion), then img2dataset.

    The input, column, quota, filter and engine specs are the sampler's own models, so the
    params file and a direct call of :func:`xlr.data.laion.sample_laion` are validated by the
    same rules. ``columns`` names each role's release schema (Re-LAION research-safe files call
    the caption ``caption``); ``engine`` is DuckDB's memory limit, threads and spill folder;
    ``shards`` img2dataset shards to use instead of sampling and downloading (inputs and quotas
    may then be left out). Unset, they are left out of dumps, so of the hashes naming checkpoints.
    ``val_fraction`` of the images are held out for validation; ``translate`` machine-translates;
    ``near_duplicate_bits`` is the pHash radius within which a pool image counts as a copy of a
    benchmark or training image.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    snapshot: str = "relaion2B-multi-research-safe"
    inputs: LaionInputs | None = Field(default=None, exclude_if=lambda v: v is None)
    columns: LaionColumns = LaionColumns()
    quotas: LaionQuotas | None = Field(default=None, exclude_if=lambda v: v is None)
    filters: LaionFilters = LaionFilters()
    engine: LaionEngine = LaionEngine()
    download: DownloadSection = DownloadSection()
    shards: str | None = Field(default=None, exclude_if=lambda v: v is None)
    val_fraction: Annotated[float, Field(gt=0.0, le=0.2)] = 0.02  # xlr.data.laion.holdout
    # Two images whose 64-bit pHashes differ in at most this many bits are one photo
    # (xlr.data.laion.near_duplicates). Fixed a priori, never from results: 8-10 is the usual
    # pHash near-duplicate threshold, and the loose end is taken because the errors cost unevenly
    # (a false match drops a few pool images; a missed copy leaks a benchmark or validation photo
    # into training). Unrelated photos differ in about 32 bits.
    near_duplicate_bits: Annotated[int, Field(ge=0, le=32)] = 10
    translate: TranslateSection | None = Field(default=None, exclude_if=lambda v: v is None)

    @model_validator(mode="after")
    def _sample_or_shards(self) -> LaionSection:
        if self.shards is None and (self.inputs is None or self.quotas is None):
            raise ValueError(
                "data.laion needs inputs and quotas (the metadata to sample and download), "
                "or shards (a folder of img2dataset shards downloaded elsewhere)"
            )
        return self
