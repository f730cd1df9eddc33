"""The tiny base model: "pretrained" once on the generated LAION-like mix, cached by config hash.

It stands in for ``xlm-roberta-base-ViT-B-32`` / ``laion5b_s13b_b90k`` on machines without the
hub: both towers trained from scratch with open_clip's ClipLoss on the long-tailed pretraining
pool (one caption per image in one language, as in LAION), so it ends up like the real model
qualitatively: good in English and the frequent languages, poor in the rare ones. The base's
own seed dominates the study's variance, so each ``run.base_seeds`` entry is a separate base.

Pretraining is a driver of the one training loop (:mod:`xlr.train.loop`): no surgery (both
towers train), batches drawn without replacement per (seed, step) (:func:`batch_indices`), and
open_clip's ``ClipLoss`` as its objective. Its recipe settings that params do not hold are the
``PRETRAIN_*`` constants below. Where the tokenizer and the bases are cached:
:mod:`xlr.models.bases`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from open_clip.loss import ClipLoss
from torch import nn

from xlr.config import Params
from xlr.data.imagetext import ImageStore, ImageTextSet, finish_input, model_pixels
from xlr.data.prepare import ensure_corpus
from xlr.data.synthetic import lexicon_words, load_pool
from xlr.io import atomic_write_text
from xlr.models.bases import REPORT_NAME, base_model_dir, is_base_cached, tokenizer_dir
from xlr.models.encode import unit_features
from xlr.models.factory import ModelBundle, load_model, save_model_dir, write_tiny_model_dir
from xlr.models.tokenizer import build_tokenizer
from xlr.runtime import DistContext, resolve_device, seed_everything
from xlr.train.loop import Trainer, fit
from xlr.train.optim import make_optimizer, warmup_cosine
from xlr.train.tokens import cached_tokens, token_cache_dir

# The pretraining recipe beside model.tiny: CLIP's weight decay and clipping (open_clip's
# defaults for training from scratch), in fp32: the bases have always been pretrained without
# autocast, and a cached base is keyed by model.tiny alone, so changing these would need a new key.
PRETRAIN_WEIGHT_DECAY = 0.1
PRETRAIN_GRAD_CLIP = 1.0
PRETRAIN_PRECISION = "fp32"


def ensure_tokenizer(params: Params, corpus: Path) -> Path:
    """Train the XLM-R Unigram tokenizer on every language's captions, once per corpus.

    Captions come from the pools' LAION metadata (TEXT), not their shards: decoding every image
    just to read its caption cost most of a minute on a 100k-image corpus.
    """
    out = tokenizer_dir(params)
    if (out / "tokenizer.json").is_file():
        return out
    texts = [
        text
        for pool in ("finetune", "pretrain")
        for text in pd.read_parquet(corpus / pool / "metadata.parquet", columns=["TEXT"])["TEXT"]
    ]
    words = [w for lang in params.data.synthetic.langs for w in lexicon_words(lang)]
    return build_tokenizer(texts, out, params.model.tiny.vocab_size, seed_words=words)


def batch_indices(n_items: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """The example indices of one step, drawn without replacement from a per-step seed.

    Why per step: the batch of step ``s`` is the same whatever ran before it, with no sampler
    state to keep.
    """
    if batch_size > n_items:
        raise ValueError(f"batch size {batch_size} exceeds the {n_items} examples available")
    return np.random.default_rng([seed, step]).choice(n_items, size=batch_size, replace=False)


@dataclass(frozen=True)
class PairBatch:
    """One pretraining step's image-caption pairs: rows of the one-caption-per-image table."""

    step: int
    rows: np.ndarray  # int64 [B]

    def __len__(self) -> int:
        return len(self.rows)

    def shard(self, rank: int, world_size: int) -> PairBatch:
        """This rank's contiguous slice (pretraining runs in one process: the whole batch)."""
        per = len(self) // world_size
        return PairBatch(self.step, self.rows[rank * per : (rank + 1) * per])


@dataclass
class ClipObjective:
    """Pretraining's :class:`xlr.train.loop.Objective`: both towers forward with gradients,
    open_clip's ``ClipLoss`` between the image and caption of each pair. ``model`` is the one
    trained; ``load`` reads only its image tower's size and normalisation."""

    images: ImageStore
    image_ids: np.ndarray  # image of each caption row
    tokens: torch.Tensor
    preprocess: Callable[[Any], torch.Tensor]
    loss_fn: ClipLoss
    model: nn.Module

    def load(self, batch: PairBatch) -> torch.Tensor:
        """The pixels of the batch's pairs on the CPU (:func:`xlr.data.imagetext.model_pixels`),
        normalised on the device in :meth:`__call__`."""
        return model_pixels(self.images, self.image_ids[batch.rows], self.model, self.preprocess)

    def __call__(
        self, model: nn.Module, batch: PairBatch, device: torch.device, loaded: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image_features = unit_features(model.encode_image(finish_input(loaded, self.model)))
        text_features = unit_features(
            model.encode_text(self.tokens[torch.from_numpy(batch.rows)].to(device))
        )
        loss = self.loss_fn(image_features, text_features, model.logit_scale.exp())
        return loss, {"loss": loss.detach()}


@dataclass(frozen=True)
class PretrainLog:
    """What base pretraining did: per-step losses and its speed."""

    losses: list[float]
    steps_per_s: float
    wall_s: float


def pretrain(
    bundle: ModelBundle,
    pool: ImageTextSet,
    params: Params,
    seed: int,
    *,
    weight_decay: float,
    grad_clip: float | None,
    precision: str,
    progress: bool = True,
) -> PretrainLog:
    """Train both towers of ``bundle.model`` (in place) from scratch with ClipLoss on the
    pretraining pool (one caption per image), ``model.tiny``'s steps, batch size and schedule.

    ``seed`` draws the batches and seeds dropout once, at the start: a base is pretrained in one
    go (an interrupted build is thrown away), so its dropout is one stream, not reseeded per
    step. ``weight_decay``, ``grad_clip`` (None: unclipped) and ``precision`` are the recipe's
    (:data:`PRETRAIN_WEIGHT_DECAY`, :data:`PRETRAIN_GRAD_CLIP`, :data:`PRETRAIN_PRECISION`).
    """
    tiny = params.model.tiny
    captions = pool.captions.sort_values("image_id").reset_index(drop=True)
    if not captions["image_id"].is_unique:
        raise ValueError(f"{pool.name}: the pretraining pool has one caption per image")
    tokens = cached_tokens(bundle.tokenizer, captions["caption"].tolist(), token_cache_dir(params))
    device = resolve_device(params.run.device)
    model = bundle.model.to(device)
    objective = ClipObjective(
        pool.images, captions["image_id"].to_numpy(), tokens, bundle.preprocess_train, ClipLoss(),
        model,
    )  # fmt: skip
    optimizer = make_optimizer(model, tiny.pretrain_lr, weight_decay)
    trainer = Trainer(
        model=model,
        objective=objective,
        optimizer=optimizer,
        scheduler=warmup_cosine(optimizer, tiny.pretrain_warmup, tiny.pretrain_steps),
        ctx=DistContext(0, 1, device),
        precision=precision,
        grad_clip=grad_clip,
    )

    def plan(step: int) -> tuple[PairBatch, None]:
        rows = batch_indices(len(tokens), tiny.pretrain_batch_size, seed, step)
        return PairBatch(step, rows), None

    seed_everything(seed)
    run = fit(
        trainer, plan, tiny.pretrain_steps, desc=f"pretrain base s{seed}", progress=progress,
        workers=params.train.loader_workers,
    )  # fmt: skip
    losses = [metrics["loss"] for metrics in run.history]
    return PretrainLog(losses, tiny.pretrain_steps / run.wall_s, run.wall_s)


def ensure_base_model(params: Params, base_seed: int, progress: bool = True) -> Path:
    """The base model folder for ``base_seed``: built and pretrained on a cache miss.

    The untrained model is written to a scratch folder beside the cache and pretrained from
    there; the pretrained one is saved straight to its place (:func:`save_model_dir` writes
    atomically), so the paths recorded inside it name that place and plain open_clip loads it
    (``local-dir:``). The report is written last: an interrupted build never leaves a folder
    that a later run would take for a finished base.
    """
    out = base_model_dir(params, base_seed)
    if is_base_cached(params, base_seed):
        return out
    corpus = ensure_corpus(params, progress)
    tokenizer = ensure_tokenizer(params, corpus)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.init-", dir=out.parent) as scratch:
        size = params.data.synthetic.image_size
        init = Path(scratch) / "model"
        write_tiny_model_dir(params.model.tiny, tokenizer, size, init, seed=base_seed)
        bundle = load_model(init)
        log = pretrain(
            bundle, load_pool(corpus, "pretrain"), params, base_seed,
            weight_decay=PRETRAIN_WEIGHT_DECAY, grad_clip=PRETRAIN_GRAD_CLIP,
            precision=PRETRAIN_PRECISION, progress=progress,
        )  # fmt: skip
        save_model_dir(bundle, out)  # while the scratch folder still holds the tokenizer's files
    report = {"base_seed": base_seed, "pretrain": asdict(log)}
    atomic_write_text(out / REPORT_NAME, json.dumps(report, indent=2))
    return out
