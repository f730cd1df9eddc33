"""Image features computed once per base and image set, reused by every arm that trains on them.

Why: the image tower is locked in every arm (:mod:`xlr.train.trainable`), so with no augmentation
each image's features are the same at every step of every arm of a base. With
``train.cache_image_features`` they are encoded once (:func:`xlr.models.encode.encode_images`,
under the training precision) and the steps skip the image tower: the objective reads their rows
(:class:`xlr.train.objective.ContrastiveObjective`).

No augmentation is what caching means: images that would go through the train transform (its
random crop) are encoded through the base's eval transform instead, once; images already decoded
at the tower's resolution take neither transform, so there the loss is the uncached one.

The cache lives in ``<run.cache_dir>/image_features/<key>.safetensors``, the key naming the base
(:func:`xlr.models.bases.base_key`), the image set (its name, image keys and content:
:func:`xlr.data.digest.images_digest`), the transform and the resolved precision: features of
another base, set, image or preprocessing are never served. Rank 0 encodes while the other
ranks wait on the long-timeout gloo group of :func:`xlr.runtime.rank0_first`.

Rank 0 reads and decodes the images in ``train.loader_workers`` DataLoader processes
(:func:`xlr.train.inputs.ordered_items`) while its device encodes the batches before: decoding
900k JPEGs in the main process would leave the GPU waiting about an hour. The batches are those
of :func:`xlr.models.encode.encode_images`, in its order, so the features do not depend on the
worker count (bit for bit on the CPU), and the worker count is no part of the key.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import Dataset

from xlr.config import Params, config_hash
from xlr.data.digest import images_digest
from xlr.data.imagetext import ImageStore, ImageTextSet, Preprocess, model_pixels
from xlr.io import atomic_file
from xlr.models.encode import EMBEDDINGS_FORMAT, encode_image_batches
from xlr.models.factory import ModelBundle
from xlr.paths import resolve_path
from xlr.runtime import DistContext, chunks, rank0_first, resolve_precision
from xlr.train.inputs import ordered_items

FEATURES = "features"  # the tensor's name in the safetensors file


def check_locked_image_tower(model: nn.Module) -> None:
    """Refuse the cache for a model whose image tower trains: its features change every step."""
    trained = [name for name, param in model.visual.named_parameters() if param.requires_grad]
    if trained:
        raise ValueError(
            f"train.cache_image_features is true, but this run trains the image tower "
            f"({len(trained)} tensors, e.g. visual.{trained[0]}), so its features change every "
            "step and a cache would be stale; set train.cache_image_features: false for it"
        )


class ImageBatches(Dataset[torch.Tensor]):
    """Item ``i``: the pixels of the ``i``-th batch of ``batch_size`` images of ``images``
    (:func:`xlr.data.imagetext.model_pixels`, uint8 where the transform allows), the batches of
    :func:`xlr.models.encode.encode_images`. Only the model's image size, mean and std are read
    (in a forked worker too: it touches no CUDA)."""

    def __init__(
        self, images: ImageStore, batch_size: int, model: nn.Module, preprocess: Preprocess
    ) -> None:
        self.images, self.model, self.preprocess = images, model, preprocess
        self.rows = list(chunks(len(images), batch_size))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> torch.Tensor:
        return model_pixels(self.images, self.rows[index], self.model, self.preprocess)


def encode_pool_images(
    model: nn.Module,
    preprocess: Preprocess,
    images: ImageStore,
    params: Params,
    device: torch.device,
) -> torch.Tensor:
    """The features of every image of ``images``, decoded by ``train.loader_workers``
    DataLoader processes in batches of ``eval.batch_size``, encoded here under
    ``train.precision``: those :func:`xlr.models.encode.encode_images` computes in one process."""
    batches = ImageBatches(images, params.eval.batch_size, model, preprocess)
    loaded = ordered_items(batches, range(len(batches)), device, params.train.loader_workers)
    features = encode_image_batches(model, loaded, device, params.train.precision)
    return torch.from_numpy(features)


def image_cache_path(
    base: ModelBundle, pool: ImageTextSet, params: Params, key: str, device: torch.device
) -> Path:
    """Where the features of ``pool``'s images under base ``key`` (its
    :func:`xlr.models.bases.base_key`) are cached for ``params``' cache folder and precision;
    the images' content is part of the name (:func:`xlr.data.digest.images_digest`)."""
    names = hashlib.sha256("\n".join(pool.image_keys).encode()).hexdigest()
    content = images_digest(pool.images)
    precision = resolve_precision(device, params.train.precision)
    name = config_hash(
        key, pool.name, len(pool), names, content, repr(base.preprocess_val), precision,
        EMBEDDINGS_FORMAT,
    )  # fmt: skip
    return resolve_path(params.run.cache_dir) / "image_features" / f"{name}.safetensors"


def cached_image_features(
    base: ModelBundle,
    pool: ImageTextSet,
    params: Params,
    key: str,
    model: nn.Module,
    ctx: DistContext,
) -> torch.Tensor:
    """The normalised float32 features ``[len(pool), D]`` of every image of ``pool`` by
    ``base``'s image tower, encoded on a cache miss (by rank 0 under ``torchrun``) and read back.

    ``model`` is the run's copy of the base after its surgery, on the run's device and not yet
    trained: it encodes (its image tower is the base's) and must not train the image tower
    (:func:`check_locked_image_tower`). ``key`` is the base's :func:`xlr.models.bases.base_key`.
    """
    check_locked_image_tower(model)
    path = image_cache_path(base, pool, params, key, ctx.device)

    def encode() -> None:
        if path.is_file():
            return
        features = encode_pool_images(model, base.preprocess_val, pool.images, params, ctx.device)
        with atomic_file(path) as tmp:
            save_file({FEATURES: features}, str(tmp))

    rank0_first(ctx, encode)  # decoding 900k images outlasts NCCL's barrier timeout
    return load_file(str(path))[FEATURES]
