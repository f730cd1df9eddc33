"""What a fine-tuning step minimises: the arms' and the adapters' contrastive objective.

README ("The arms"): an example is (image, query caption in a, target caption in b); the loss
is CLIP InfoNCE(images, queries) + ``train.lambda_tt`` x InfoNCE(queries, targets), negatives
gathered over ranks (:class:`xlr.train.losses.ContrastiveLoss`). The image tower is locked in
every arm, so its features carry no graph, and with ``train.cache_image_features`` they are
read from a per-base cache (:mod:`xlr.train.image_cache`) instead of encoded each step. The arms
and the adapters differ only in how a batch's captions become text features (the
:data:`TextFeatures` hook): one text tower for the arms, the caption language's adapter for the
adapters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from xlr.config import Params
from xlr.data.imagetext import ImageStore, ImageTextSet, finish_input, model_pixels
from xlr.models.encode import unit_features
from xlr.models.factory import ModelBundle
from xlr.train.batching import Batch
from xlr.train.losses import ContrastiveLoss
from xlr.train.tokens import cached_tokens, token_cache_dir

TextFeatures = Callable[
    [nn.Module, torch.Tensor, Batch, torch.device], tuple[torch.Tensor, torch.Tensor]
]  # (model, token ids, batch, device) -> query and target features, as text_features


def text_features(
    model: nn.Module, tokens: torch.Tensor, batch: Batch, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Query and target features from one text forward; target rows without a target are zero.

    The :data:`TextFeatures` hook of the shared arms, and of an adapter's one-language batch.
    The target tensor always descends from the forward pass, so it requires grad on every rank
    even when this shard has no targets: the gathered loss's backward collectives then match.
    """
    has_target = batch.has_target
    rows = np.concatenate([batch.query_rows, batch.target_rows[has_target]])
    features = unit_features(model.encode_text(tokens[torch.from_numpy(rows)].to(device)))
    query, targets = features[: len(batch)], features[len(batch) :]
    where = torch.from_numpy(np.flatnonzero(has_target)).to(device)
    return query, torch.zeros_like(query).index_copy(0, where, targets)


@dataclass
class ContrastiveObjective:
    """The :class:`xlr.train.loop.Objective` of the arms and the adapters.

    ``tokens`` are the token ids of the captions table the batches index; ``images``,
    ``preprocess`` and ``base_model`` (only its image tower's size and normalisation are read)
    give the image tower its input (:func:`xlr.data.imagetext.model_pixels`, then
    :func:`~xlr.data.imagetext.finish_input` on the device).
    ``image_features``, when given, are the normalised features of every image of ``images``
    (:mod:`xlr.train.image_cache`): the image tower is then not run at all.
    """

    images: ImageStore
    preprocess: Callable[[Any], torch.Tensor]
    tokens: torch.Tensor
    loss_fn: ContrastiveLoss
    base_model: nn.Module
    text_features: TextFeatures = text_features
    image_features: torch.Tensor | None = None

    def load(self, batch: Batch) -> torch.Tensor:
        """The image side of ``batch`` on the CPU: its cached features, or its pixels (uint8
        where the transform allows: :func:`xlr.data.imagetext.model_pixels`), normalised on
        the device in :meth:`__call__`."""
        if self.image_features is not None:
            return self.image_features[torch.from_numpy(batch.image_ids)]
        return model_pixels(self.images, batch.image_ids, self.base_model, self.preprocess)

    def __call__(
        self, model: nn.Module, batch: Batch, device: torch.device, loaded: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mask = torch.from_numpy(batch.has_target).to(device)
        if self.image_features is not None:
            image_features = loaded
        else:
            with torch.no_grad():  # the image tower is locked in every arm
                pixels = finish_input(loaded, self.base_model)
                image_features = unit_features(model.encode_image(pixels))
        query, target = self.text_features(model, self.tokens, batch, device)
        return self.loss_fn(image_features, query, target, mask, model.logit_scale.exp())


def contrastive_objective(
    base: ModelBundle,
    pool: ImageTextSet,
    captions: pd.DataFrame,
    params: Params,
    world_size: int,
    text_features: TextFeatures = text_features,
    image_features: torch.Tensor | None = None,
) -> ContrastiveObjective:
    """The objective over ``captions`` (the rows of ``pool.captions`` a run's batches index),
    with ``base``'s tokenizer (ids cached, :func:`xlr.train.tokens.cached_tokens`) and train
    transform, ``train.lambda_tt``, and the pool's cached ``image_features`` when given."""
    tokens = cached_tokens(base.tokenizer, captions["caption"].tolist(), token_cache_dir(params))
    loss_fn = ContrastiveLoss(params.train.lambda_tt, world_size)
    return ContrastiveObjective(
        pool.images, base.preprocess_train, tokens, loss_fn, base.model, text_features,
        image_features,
    )  # fmt: skip
