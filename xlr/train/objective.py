"""What a fine-tuning step minimises: the arms' and the adapters' contrastive objective.

DESIGN (Training arms): an example is (image, query caption in a, target caption in b); the loss
is CLIP InfoNCE(images, queries) + ``train.lambda_tt`` x InfoNCE(queries, targets), negatives
gathered over ranks (:class:`xlr.train.losses.ContrastiveLoss`). The image tower is locked in
every arm, so its features carry no graph. The arms and the adapters differ only in how a batch's
captions become text features (the :data:`TextFeatures` hook): one text tower for the arms, the
caption language's adapter for the adapters.
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
from xlr.data.imagetext import ImageStore, ImageTextSet, model_input
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
    features = model.encode_text(tokens[torch.from_numpy(rows)].to(device), normalize=True)
    query, targets = features[: len(batch)], features[len(batch) :]
    where = torch.from_numpy(np.flatnonzero(has_target)).to(device)
    return query, torch.zeros_like(query).index_copy(0, where, targets)


@dataclass
class ContrastiveObjective:
    """The :class:`xlr.train.loop.Objective` of the arms and the adapters.

    ``tokens`` are the token ids of the captions table the batches index; ``images`` and
    ``preprocess`` give the image tower its input (:func:`xlr.data.imagetext.model_input`).
    """

    images: ImageStore
    preprocess: Callable[[Any], torch.Tensor]
    tokens: torch.Tensor
    loss_fn: ContrastiveLoss
    text_features: TextFeatures = text_features

    def __call__(
        self, model: nn.Module, batch: Batch, device: torch.device
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images = model_input(self.images, batch.image_ids, model, self.preprocess).to(device)
        mask = torch.from_numpy(batch.has_target).to(device)
        with torch.no_grad():  # the image tower is locked in every arm
            image_features = model.encode_image(images, normalize=True)
        query, target = self.text_features(model, self.tokens, batch, device)
        return self.loss_fn(image_features, query, target, mask, model.logit_scale.exp())


def contrastive_objective(
    base: ModelBundle,
    pool: ImageTextSet,
    captions: pd.DataFrame,
    params: Params,
    world_size: int,
    text_features: TextFeatures = text_features,
) -> ContrastiveObjective:
    """The objective over ``captions`` (the rows of ``pool.captions`` a run's batches index),
    with ``base``'s tokenizer (ids cached, :func:`xlr.train.tokens.cached_tokens`) and train
    transform, and ``train.lambda_tt``."""
    tokens = cached_tokens(base.tokenizer, captions["caption"].tolist(), token_cache_dir(params))
    loss_fn = ContrastiveLoss(params.train.lambda_tt, world_size)
    return ContrastiveObjective(pool.images, base.preprocess_train, tokens, loss_fn, text_features)
