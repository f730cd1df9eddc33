"""``data.laion.download``: how img2dataset fetches the sample, on this machine or a cluster.

Its own module (not :mod:`xlr.config`) so that the download code and the params schema share one
definition without the schema growing; :mod:`xlr.config` imports it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PositiveInt = Annotated[int, Field(gt=0)]


class DownloadSection(BaseModel):
    """img2dataset settings for fetching the sampled subset.

    ``distributor`` is img2dataset's: ``multiprocessing`` (``processes`` workers here),
    ``pyspark`` or ``ray``. img2dataset joins an existing cluster only through a session that is
    already open in its process, and xlr runs it in a child process, so the cluster's address is
    given here and xlr opens the session in that child: ``spark_master`` (a Spark master URL such
    as ``spark://host:7077``; without it img2dataset starts a local Spark with ``processes``
    cores) and ``ray_address`` (``ray.init(address=...)``, e.g. ``auto`` or ``ray://host:10001``;
    without it Ray starts a local instance). Unset addresses are left out of dumps, so params
    hashes stay as they were before these settings existed.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    distributor: Literal["multiprocessing", "pyspark", "ray"] = "multiprocessing"
    processes: PositiveInt = 8
    threads: PositiveInt = 64
    image_size: PositiveInt = 256
    # img2dataset's border and center_crop pad or cut the photo, which moves its pHash past the
    # near-duplicate radius (xlr.data.laion.near_duplicates): copies of benchmark images would
    # then stay in the pool unseen, so only aspect-keeping modes are offered
    resize_mode: Literal["keep_ratio", "no"] = "keep_ratio"
    shard_size: PositiveInt = 10000
    spark_master: str | None = Field(default=None, exclude_if=lambda v: v is None)
    ray_address: str | None = Field(default=None, exclude_if=lambda v: v is None)

    @model_validator(mode="after")
    def _address_matches_distributor(self) -> DownloadSection:
        for key, distributor in (("spark_master", "pyspark"), ("ray_address", "ray")):
            if getattr(self, key) is not None and self.distributor != distributor:
                raise ValueError(
                    f"download.{key} is set but download.distributor is {self.distributor!r}; "
                    f"set distributor: {distributor}, or remove {key}"
                )
        return self

    def cluster(self) -> dict[str, str]:
        """The cluster addresses given (``spark_master``, ``ray_address``), for the child."""
        given = {"spark_master": self.spark_master, "ray_address": self.ray_address}
        return {key: value for key, value in given.items() if value is not None}
