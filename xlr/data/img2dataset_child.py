"""What the child process of :func:`xlr.data.download.download_images` runs: join the configured
cluster, then call ``img2dataset.download``.

Why the cluster is joined here: img2dataset's ``pyspark`` distributor uses the SparkSession
active in its own process (and otherwise starts a local one), and its ``ray`` distributor
submits tasks to whatever Ray instance its process is connected to (and otherwise starts a
local one). A session opened in the notebook's process is invisible to the child, so the child
opens it from ``data.laion.download.spark_master`` / ``ray_address``. This module imports
nothing heavy, so the child starts fast.
"""

from __future__ import annotations

from typing import Any

APP_NAME = "xlr-img2dataset"


def join_cluster(cluster: dict[str, str]) -> None:
    """Open the Spark session or connect to the Ray cluster named in ``cluster``, if any."""
    if "spark_master" in cluster:
        from pyspark.sql import SparkSession

        SparkSession.builder.master(cluster["spark_master"]).appName(APP_NAME).getOrCreate()
    if "ray_address" in cluster:
        import ray

        ray.init(address=cluster["ray_address"])


def run(arguments: dict[str, Any], cluster: dict[str, str]) -> None:
    """Join the cluster, then ``img2dataset.download(**arguments)``."""
    join_cluster(cluster)
    from img2dataset import download

    download(**arguments)
