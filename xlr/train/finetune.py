"""The arms of notebook 02: a base CLIP fine-tuned with one batch strategy (README, "The arms").

:func:`train_arm` is the shared arms' driver of the one training loop (:mod:`xlr.train.loop`):
a copy of the base with its full text tower or one shared LoRA unlocked
(:mod:`xlr.train.trainable`), batches from :class:`xlr.train.batching.BatchSampler`, and the
contrastive objective (:mod:`xlr.train.objective`). Under ``torchrun`` every rank builds the same
global batch and trains on its shard, with negatives gathered over ranks.

What every fine-tuned arm shares with the adapters (:mod:`xlr.train.adapters`) is here too and
public for them: the checks before any work, the run folder's identity, the summary.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from xlr.arms import LORA_DIR, MODEL_DIR, Arm
from xlr.config import Params
from xlr.data.digest import pool_digest
from xlr.data.imagetext import ImageTextSet
from xlr.io import atomic_dir
from xlr.models.bases import base_key
from xlr.models.factory import ModelBundle, load_model, save_model_dir
from xlr.runtime import (
    DistContext,
    init_distributed,
    resolve_device,
    resolve_precision,
    seed_everything,
)
from xlr.train.batching import BatchSampler
from xlr.train.image_cache import cached_image_features
from xlr.train.loop import RunFolder, Trainer, check_train_precision, fit, step_seed
from xlr.train.objective import contrastive_objective
from xlr.train.optim import make_optimizer, warmup_cosine
from xlr.train.pairs import PairGraphError
from xlr.train.trainable import add_shared_lora, unlock_text_tower


@dataclass(frozen=True)
class TrainedArm:
    """A fine-tuned arm: where its outputs are, its summary, and the trained copy of the base.

    An arm that an earlier call finished comes back without its model in memory (``loaded``
    None): :attr:`bundle` reads ``model/`` on first use, so a caller that keeps only the folder
    reads no 1.4 GB model per arm and rank."""

    arm: Arm
    out_dir: Path
    summary: dict[str, Any]
    loaded: ModelBundle | None = None
    device: str = "cpu"  # where a finished arm's model is loaded

    @cached_property
    def bundle(self) -> ModelBundle:
        """The trained model: as trained here, or loaded from ``model/`` (a LoRA arm merged),
        in eval mode either way."""
        if self.loaded is not None:
            return self.loaded
        bundle = load_model(self.out_dir / MODEL_DIR, self.device)
        bundle.model.eval()
        return bundle


def check_arm_inputs(
    pool: ImageTextSet, params: Params, arm: Arm, langs: Sequence[str], world_size: int = 1
) -> None:
    """Refuse, before any work, an arm that cannot train or would break the study's protocol."""
    train = params.train
    if not arm.is_trained:
        raise ValueError("the 'zeroshot' arm is the base model itself: evaluate it, not train it")
    if train.steps < 1:
        raise ValueError(
            f"train.steps is {train.steps}; an arm needs at least one step (the untrained model "
            "is the 'zeroshot' arm)"
        )
    if not langs:
        raise ValueError("no training languages: set data.train_langs")
    heldout = [lang for lang in langs if lang in params.data.heldout_langs]
    if heldout:
        every = "every training language is held out: " if len(heldout) == len(langs) else ""
        raise ValueError(
            f"{every}{heldout} are in data.heldout_langs; training on them breaks the zero-shot "
            "protocol. Move them to data.train_langs or train other languages"
        )
    present = set(pool.captions["lang"])
    missing = [lang for lang in langs if lang not in present]
    if missing:
        raise ValueError(
            f"{pool.name}: no captions in training languages {missing} (the pool has "
            f"{sorted(present)}); fix data.train_langs or regenerate the pool"
        )
    if arm.strategy != "mono" and len(langs) < 2:
        raise ValueError(
            f"arm {arm.name!r} pairs two distinct languages and needs at least two training "
            f"languages, got {list(langs)}; add one to data.train_langs or train 'mono'"
        )
    if train.batch_size % world_size:
        raise ValueError(
            f"train.batch_size {train.batch_size} does not split over {world_size} processes"
        )


def arm_sampler(
    arm: Arm, captions: pd.DataFrame, langs: Sequence[str], params: Params
) -> BatchSampler:
    """The batches of ``arm`` over ``captions`` (``arm.strategy``, ``train.batch_size``,
    ``train.tau``, the arm's alpha and :attr:`~xlr.arms.Arm.stream_seed`). A pool whose
    parallel captions leave a training language in no pair (:class:`xlr.train.pairs.PairGraph`)
    is refused naming the arm."""
    try:
        return BatchSampler(
            arm.strategy, captions, langs, params.train.batch_size, arm.stream_seed,
            alpha=0.0 if arm.alpha is None else arm.alpha, tau=params.train.tau,
        )  # fmt: skip
    except PairGraphError as err:
        raise PairGraphError(f"arm {arm.name!r}: {err}") from None


def image_features(
    base: ModelBundle, pool: ImageTextSet, params: Params, arm: Arm, model: nn.Module,
    ctx: DistContext,
) -> torch.Tensor | None:  # fmt: skip
    """The pool's cached image features for ``arm`` when ``train.cache_image_features`` (shared
    by every arm of its base, :mod:`xlr.train.image_cache`), else None. A precision the device
    cannot train in is refused first: the :class:`Trainer` would refuse it only after the
    features are encoded and written, the longest step of a LAION run."""
    check_train_precision(params.train.precision, ctx.device)
    if not params.train.cache_image_features:
        return None
    key = base_key(params, arm.base_seed)
    return cached_image_features(base, pool, params, key, model, ctx)


def pair_summary(sampler: BatchSampler) -> dict[str, list[str]]:
    """The language pairs a pair strategy drew from and those it dropped (too few images with
    parallel captions for a batch), as ``a-b`` names for ``summary.json``; empty for mono."""
    if sampler.graph is None:
        return {}
    graph = sampler.graph
    return {
        "pairs": [f"{a}-{b}" for a, b in graph.drawn],
        "dropped_pairs": [f"{a}-{b}" for a, b in graph.dropped],
    }


def arm_folder(
    arm: Arm, pool: ImageTextSet, langs: Sequence[str], params: Params, out: Path, resume: bool
) -> RunFolder:
    """The run folder of a fine-tuned arm or an adapter arm: its checkpoint belongs to this arm,
    base, seed, languages, the params sections that shape its weights (``adapters`` too for an
    adapter arm) and the content of ``pool`` (:func:`xlr.data.digest.pool_digest`), and no
    other. The content, because the params do not fix the data: a LAION pool re-downloaded
    (other dead URLs), split or translated again under the same params must not resume, or pass
    as finished, on a checkpoint of the old one."""
    sections = ("data", "model", "train", *(("adapters",) if arm.is_adapters else ()))
    identity = {
        "arm": arm.name,
        "base_seed": arm.base_seed,
        "seed": arm.seed,
        "stream_seed": arm.stream_seed,  # runs seeded by seed alone (crossed with bases) differ
        "langs": list(langs),
        "config": params.weights_hash(*sections),
        "base": base_key(params, arm.base_seed),
        "data": pool_digest(pool),
    }
    # ``train.precision: auto`` is fp32 on the CPU and bf16 on CUDA: a checkpoint of one must
    # not resume (or pass as finished) as the other. An explicit setting is in ``config``
    # already, and fp32 stays implicit, so that arms trained before this key keep their identity.
    precision = resolve_precision(resolve_device(params.run.device), params.train.precision)
    if params.train.precision == "auto" and precision != "fp32":
        identity["precision"] = precision
    # a tuned rate (train.rates, out of ``config``): the arm's own, so that retuning another
    # family leaves this run alone; a configured one is in ``config`` already
    if arm.rate_key in params.train.rates:
        identity["lr"] = arm.lr(params)
    return RunFolder(out, params, identity, params.train.checkpoint_every, resume)


def finished_summary(
    arm: Arm, pool: ImageTextSet, params: Params, out_dir: Path | None = None
) -> dict[str, Any] | None:
    """The summary of ``arm`` in ``out_dir`` (default :meth:`Arm.directory`) when it has
    finished on ``pool`` with ``params`` (as :func:`train_arm` or
    :func:`xlr.train.adapters.train_adapters` would find it), else None: asked before a base
    is loaded, which for the real study is a 1.4 GB model read for nothing when the arm is
    done."""
    langs = params.data.train_langs  # canonical codes: the params validate them
    out = arm.directory(params) if out_dir is None else out_dir
    folder = arm_folder(arm, pool, langs, params, out, resume=True)
    return folder.finished(init_distributed(params.run.device))


def run_summary(
    arm: Arm,
    langs: Sequence[str],
    params: Params,
    ctx: DistContext,
    steps: int,
    wall_s: float,
    trained: Sequence[torch.Tensor],
    total_params: int,
    **extra: Any,
) -> dict[str, Any]:
    """What ``summary.json`` records of a fine-tuned arm (``extra`` after its languages): arms
    are matched on steps, not compute, so the wall time and the trainable parameters go beside
    every comparison."""
    batch_size = params.train.batch_size
    return {
        **dataclasses.asdict(arm),
        "name": arm.name,
        "langs": list(langs),
        **extra,
        "steps": steps,
        "batch_size": batch_size,
        "examples": steps * batch_size,  # the training budget, equal for every arm
        "world_size": ctx.world_size,
        "device": str(ctx.device),
        "wall_s": wall_s,
        "steps_per_s": steps / wall_s,
        "examples_per_s": steps * batch_size / wall_s,
        "trainable_params": sum(p.numel() for p in trained),
        "trainable_bytes": sum(p.numel() * p.element_size() for p in trained),
        "total_params": total_params,
    }


def _merged(model: nn.Module) -> nn.Module:
    """A copy of a LoRA-wrapped model with the LoRA folded into the base weights."""
    merged = copy.deepcopy(model)
    merged.text = merged.text.merge_and_unload()
    return merged


def _write_outputs(model: nn.Module, bundle: ModelBundle, out_dir: Path, lora: bool) -> None:
    """The model folder (LoRA merged) and the LoRA alone; the summary comes after them
    (:meth:`RunFolder.finish`)."""
    final = _merged(model) if lora else model
    save_model_dir(dataclasses.replace(bundle, model=final), out_dir / MODEL_DIR)
    if lora:
        with atomic_dir(out_dir / LORA_DIR, overwrite=True) as tmp:
            model.text.save_pretrained(tmp)


def train_arm(
    base: ModelBundle,
    pool: ImageTextSet,
    params: Params,
    arm: Arm,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    langs: Sequence[str] | None = None,
    resume: bool = True,
    progress: bool = True,
) -> TrainedArm:
    """Fine-tune a copy of ``base`` as arm ``arm`` on ``pool`` (the fine-tuning pool).

    ``langs`` (default ``data.train_langs``) are the languages batches draw from. Batches follow
    ``arm.strategy`` with ``train.tau`` (and ``arm.alpha`` for hybrid); the loss is image-text
    plus ``train.lambda_tt`` times text-text InfoNCE; ``arm.trained`` picks the full text
    tower or one shared LoRA. ``train.loader_workers`` processes prepare the batches ahead and
    ``train.cache_image_features`` reads the images' features from a per-base cache. Outputs go
    to ``out_dir`` (default :meth:`Arm.directory`):
    ``params.yaml``, ``log.csv``, ``tb/``, ``checkpoint.pt`` (every ``train.checkpoint_every``
    steps and at the end, dropped once the arm is finished), then ``model/``, ``lora/`` and
    ``summary.json``. With ``resume`` a run continues from its checkpoint and ends, on CPU, with
    the weights of an uninterrupted run, and a finished run (a summary of this identity) trains
    nothing: its model is read from ``model/`` (a LoRA arm merged) when first used. Under
    ``torchrun`` each rank trains its shard of the global batch; rank 0 writes.
    """
    train = params.train
    langs = list(params.data.train_langs if langs is None else langs)
    ctx = init_distributed(params.run.device)
    check_arm_inputs(pool, params, arm, langs, ctx.world_size)
    out = Path(out_dir) if out_dir is not None else arm.directory(params)
    folder = arm_folder(arm, pool, langs, params, out, resume)
    if (done := folder.finished(ctx)) is not None:
        return TrainedArm(arm, out, done, device=str(ctx.device))
    seed_everything(arm.stream_seed)  # LoRA initialisation
    model = copy.deepcopy(base.model).to(ctx.device)
    lora = arm.trained == "lora"
    if lora:
        add_shared_lora(model, train.lora, train.logit_scale)
    else:
        unlock_text_tower(model, train.logit_scale)
    captions = pool.captions[pool.captions["lang"].isin(langs)].reset_index(drop=True)
    sampler = arm_sampler(arm, captions, langs, params)
    optimizer = make_optimizer(model, arm.lr(params), train.weight_decay, scale_lr=train.lr)
    features = image_features(base, pool, params, arm, model, ctx)
    trainer = Trainer(
        model=model,
        objective=contrastive_objective(
            base, pool, captions, params, ctx.world_size, image_features=features
        ),
        optimizer=optimizer,
        scheduler=warmup_cosine(optimizer, train.warmup, train.steps),
        ctx=ctx,
        precision=train.precision,
        grad_clip=train.grad_clip,
    )
    run = fit(
        trainer, lambda step: (sampler.batch(step), step_seed(arm.stream_seed, step, ctx.rank)),
        train.steps, folder=folder, desc=arm.name,
        progress=progress, workers=train.loader_workers,
    )  # fmt: skip
    trained = [p for p in model.parameters() if p.requires_grad]
    total = sum(p.numel() for p in model.parameters())
    summary = run_summary(
        arm, langs, params, ctx, train.steps, run.wall_s, trained, total, **pair_summary(sampler)
    )
    folder.finish(summary, ctx, lambda: _write_outputs(model, base, out, lora=lora))
    model.eval()
    return TrainedArm(arm, out, summary, loaded=dataclasses.replace(base, model=model))
