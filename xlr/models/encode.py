"""Image embeddings by a CLIP's image tower, for evaluation (:mod:`xlr.eval.encoders`) and for
the training runs' cache of image features (:mod:`xlr.train.image_cache`): one forward routine
over the same batches of :func:`xlr.data.imagetext.model_pixels`, so a cached feature is the
feature evaluation would compute."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from xlr.data.imagetext import ImageStore, finish_input, model_pixels
from xlr.runtime import autocast, chunks

# Bumped when the same model and images or captions would give other embeddings, so the caches
# of evaluation (xlr.eval.encoders) and of training's image features (xlr.train.image_cache)
# written before are not read (2: rows normalised in float32 after autocast, unit_features).
EMBEDDINGS_FORMAT = 2


def unit_features(features: torch.Tensor) -> torch.Tensor:
    """``features`` normalised to unit rows in float32, in or out of autocast: CPU autocast
    keeps ``F.normalize`` of bf16 features in bf16, whose rows missed unit length by up to
    0.4% (scores then no cosines); CUDA's normalises in float32 already, so there this is the
    same. Training and evaluation normalise through this one function."""
    return F.normalize(features.float(), dim=-1)


@torch.no_grad()
def encode_images(
    model: torch.nn.Module,
    preprocess,
    images: ImageStore,
    device: torch.device,
    batch_size: int = 256,
    progress: bool = False,
    precision: str = "auto",
) -> np.ndarray:
    """L2-normalised float32 image embeddings ``[N, D]``, the forward pass under
    :func:`xlr.runtime.autocast` for ``precision``, the images decoded here batch by batch.

    Images already decoded at the model's resolution skip the PIL transform (17-21 ms a batch
    on this machine's CPU, more than the tiny model's forward pass).
    """
    rows = tqdm(list(chunks(len(images), batch_size)), desc="images", disable=not progress)
    batches = (model_pixels(images, ids, model, preprocess) for ids in rows)
    return encode_image_batches(model, batches, device, precision)


@torch.no_grad()
def encode_image_batches(
    model: torch.nn.Module,
    batches: Iterable[torch.Tensor],
    device: torch.device,
    precision: str = "auto",
) -> np.ndarray:
    """L2-normalised float32 embeddings ``[N, D]`` of the image batches ``batches`` (each a
    :func:`xlr.data.imagetext.model_pixels`, normalised on the device), in their order.

    Why apart from :func:`encode_images`: the batches may come decoded ahead by DataLoader
    workers (:mod:`xlr.train.image_cache`); from pinned memory the copy to the device does not
    block, and the features' copy back waits for the forward pass.
    """
    model.eval()
    out = []
    for batch in batches:
        pixels = finish_input(batch.to(device, non_blocking=True), model)
        with autocast(device, precision):
            features = model.encode_image(pixels)
        out.append(unit_features(features).cpu())
    if not out:
        raise ValueError("no images to encode")
    return torch.cat(out).numpy()
