"""Content digests of image-text sets: what names a set's images and captions, not its name.

Why content: img2dataset's keys are positions (shard, index) and a pool's name is its source,
so two LAION downloads whose dead URLs differ, two validation splits or two rounds of machine
translation share names but not data. Whatever is cached or resumed on a set (the image-feature
cache of :mod:`xlr.train.image_cache`, an arm's checkpoint in :mod:`xlr.train.finetune`) is
keyed on these digests, so it is never served for other data.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from xlr.data.imagetext import ArrayImages, ImageStore, ImageTextSet
from xlr.data.shards import ShardImages
from xlr.io import file_sha256


def images_digest(images: ImageStore) -> str:
    """sha256 naming the content of ``images``, computed without encoding them.

    Per store, the cheapest sound witness:

    - :class:`ShardImages`: the parquet file img2dataset wrote beside each tar (per image its URL,
      key, status, size and, by img2dataset's default ``compute_hash``, the sha256 of its bytes,
      so another sample or another resize gives another digest) plus where each image lies in
      its tar; hashing a few hundred MB of parquet beats reading the 20-35 GB of images, and the
      digest survives moving the folder. A tar without its parquet falls back to the images'
      bytes.
    - :class:`ArrayImages`: the pixels, already in memory.
    - any other store: every image decoded (small benchmark sets).
    """
    digest = hashlib.sha256(type(images).__name__.encode())
    if isinstance(images, ShardImages):
        for array in (images.tar_ids, images.offsets, images.sizes):
            digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
        parquets = [Path(tar).with_suffix(".parquet") for tar in images.tars]
        if all(parquet.is_file() for parquet in parquets):
            digest.update("".join(file_sha256(parquet) for parquet in parquets).encode())
        else:
            for index in range(len(images)):
                digest.update(images.read(index))
    elif isinstance(images, ArrayImages):
        digest.update(repr(images.pixels.shape).encode())
        digest.update(np.ascontiguousarray(images.pixels).data)
    else:
        for index in range(len(images)):
            image = images[index]
            digest.update(repr(image.size).encode())
            digest.update(image.tobytes())
    return digest.hexdigest()


def pool_digest(pool: ImageTextSet) -> str:
    """sha256 naming everything a model trained on ``pool`` sees: its image keys, its images
    (:func:`images_digest`) and every caption row (text, language, image, index, translator).

    A LAION pool re-downloaded with other dead URLs, split with another validation draw or
    translated by another model gives another digest; the same prepared data gives the same one.
    """
    digest = hashlib.sha256("\n".join(pool.image_keys).encode())
    digest.update(images_digest(pool.images).encode())
    captions = pool.captions[sorted(pool.captions.columns)]
    digest.update(",".join(captions.columns).encode())
    digest.update(pd.util.hash_pandas_object(captions, index=False).to_numpy().tobytes())
    return digest.hexdigest()
