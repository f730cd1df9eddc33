"""The training loop: pieces shared by base pretraining and the adapters, and the arms of 02.

Kept here so every loop in the study makes the same choices: AdamW without decay on gains,
biases and the logit scale (open_clip's convention), linear warmup then cosine decay, bf16
autocast on GPU only, one seed for every random draw.

:func:`train_arm` fine-tunes one arm of notebook 02 (DESIGN, Training arms): a copy of a base
CLIP, trained with one batch strategy and the contrastive loss, either in its whole text tower or
in one shared LoRA, with resumable checkpoints and per-step logs. Under ``torchrun`` every rank
builds the same global batch and trains on its shard, with negatives gathered over ranks.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from xlr.arms import LOG_CSV, LORA_DIR, MODEL_DIR, SUMMARY_FILE, Arm
from xlr.config import LoraSection, Params, resolve_path
from xlr.data.imagetext import ArrayImages, ImageTextSet
from xlr.io import atomic_dir, atomic_file, atomic_write_json, atomic_write_text
from xlr.models.factory import ModelBundle, save_model_dir
from xlr.runtime import (
    DistContext,
    all_reduce_gradients,
    autocast,
    init_distributed,
    normalise_pixels,
    seed_everything,
)
from xlr.train.batching import Batch, BatchSampler
from xlr.train.losses import ContrastiveLoss


def _no_decay(name: str, param: nn.Parameter) -> bool:
    return param.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name


def make_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    no_decay: Callable[[str, nn.Parameter], bool] = _no_decay,
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, without decay on gains, biases and the logit scale.

    ``no_decay(name, param)`` picks the parameters without decay; the default goes by name and
    shape (open_clip's rule), which language adapters cannot use: Bengali's is named ``bn``.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no trainable parameters")
    groups = [
        {"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0},
        {"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": weight_decay},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6)


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup: int, total: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over ``warmup`` steps, then cosine decay to zero at ``total`` steps."""
    if total <= 0:
        raise ValueError(f"the number of training steps must be positive, got {total}")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine_factor(step, warmup, total)
    )


def warmup_cosine_factor(step: int, warmup: int, total: int) -> float:
    """The learning-rate multiplier of :func:`warmup_cosine` at ``step`` (0-based), alone, for
    schedules that advance one clock per adapter (:mod:`xlr.train.adapters`)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def batch_indices(n_items: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """The example indices of one step, drawn without replacement from a per-step seed.

    Why per step: a run resumed at step ``s`` draws exactly the batches an uninterrupted run
    draws, with no sampler state to save.
    """
    if batch_size > n_items:
        raise ValueError(f"batch size {batch_size} exceeds the {n_items} examples available")
    return np.random.default_rng([seed, step]).choice(n_items, size=batch_size, replace=False)


# --- The arms of notebook 02 -------------------------------------------------------------------

CHECKPOINT = "checkpoint.pt"
TENSORBOARD_DIR = "tb"
PARAMS_FILE = "params.yaml"
LOG_COLUMNS: tuple[str, ...] = (
    "step", "kind", "query_langs", "target_langs", "loss", "loss_image_text", "loss_text_text",
    "text_pairs", "logit_scale", "lr", "grad_norm", "examples_per_s",
)  # fmt: skip


def count_trainable(model: nn.Module) -> int:
    """Number of parameters that receive gradients."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def unlock_text_tower(model: nn.Module) -> int:
    """The ``full`` setting: the text tower (transformer and projection) and the logit scale
    train; the image tower and anything else stay locked (open_clip's ``lock_image``).

    Returns the trainable parameter count.
    """
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith("text.") or name == "logit_scale")
    return count_trainable(model)


def add_shared_lora(model: nn.Module, lora: LoraSection) -> int:
    """The ``lora`` setting: one peft LoRA on the XLM-R text tower, plus the logit scale.

    peft freezes only the module it wraps (``text.transformer``), so the image tower and the
    text projection are locked here first. The logit scale (the loss temperature) trains, as
    in the ``full`` setting: it changes no embedding, and with it locked a LoRA step large
    enough to move the tower degrades retrieval instead (measured on the synthetic study). So
    ``full`` and ``lora`` differ only in how the text tower may change. Returns the trainable
    parameter count: ``r * (in + out)`` per targeted linear layer, plus one. peft is imported
    here: it takes seconds to import, and only LoRA arms need it.
    """
    from peft import LoraConfig, get_peft_model

    for param in model.parameters():
        param.requires_grad_(False)
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
    )
    try:
        model.text.transformer = get_peft_model(model.text.transformer, config)
    except ValueError as err:
        raise ValueError(f"train.lora.target_modules {lora.target_modules}: {err}") from err
    model.logit_scale.requires_grad_(True)
    return count_trainable(model)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the trainable parameters: what a checkpoint must hold to resume."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def tokenize_texts(tokenizer: Any, texts: Sequence[str], chunk: int = 4096) -> torch.Tensor:
    """Token ids ``[N, context_length]`` of every caption, once, so steps only index them."""
    if not texts:
        raise ValueError("no captions to tokenise")
    return torch.cat([tokenizer(list(texts[i : i + chunk])) for i in range(0, len(texts), chunk)])


def tokenizer_fingerprint(tokenizer: Any) -> str | None:
    """Content hash of an open_clip ``HFTokenizer``: its fast tokenizer's JSON (less the
    truncation and padding state each call sets) and the wrapper's settings (context length,
    cleaning, SEP stripping). None for other tokenizers, whose output is never cached."""
    backend = getattr(getattr(tokenizer, "tokenizer", None), "backend_tokenizer", None)
    if backend is None:
        return None
    clean = getattr(tokenizer, "clean_fn", None)
    clean = getattr(clean, "func", clean)  # a partial names its function
    settings = [
        type(tokenizer).__qualname__,
        getattr(tokenizer, "context_length", None),
        getattr(tokenizer, "strip_sep_token", None),
        getattr(tokenizer, "tokenizer_mode", None),
        getattr(clean, "__qualname__", repr(clean)),
    ]
    spec = json.loads(backend.to_str())
    for state in ("truncation", "padding"):  # set by each call from its arguments
        spec.pop(state, None)
    blob = json.dumps([settings, spec], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def cached_tokens(
    tokenizer: Any, texts: Sequence[str], cache_dir: str | os.PathLike[str] | None
) -> torch.Tensor:
    """:func:`tokenize_texts`, kept in ``cache_dir`` by tokenizer content and captions.

    Why: every arm of a study tokenises the same fine-tuning pool, and open_clip's ftfy
    cleaning makes that about a fifth of a 150-step tiny arm's time. The file is a plain
    ``.npy`` (read without pickle) written atomically; one with the wrong shape is replaced.
    """
    fingerprint = tokenizer_fingerprint(tokenizer)
    if cache_dir is None or fingerprint is None or not texts:
        return tokenize_texts(tokenizer, texts)
    digest = hashlib.sha256(fingerprint.encode())
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    path = Path(cache_dir) / f"{digest.hexdigest()[:24]}.npy"
    if path.is_file():
        ids = np.load(path, allow_pickle=False)
        if ids.ndim == 2 and len(ids) == len(texts):
            return torch.from_numpy(ids.astype(np.int64))
    tokens = tokenize_texts(tokenizer, texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, tokens.numpy().astype(np.int32))
    return tokens


def token_cache_dir(params: Params) -> Path:
    """``<run.cache_dir>/tokens``: token ids shared by every arm and base of every run."""
    return resolve_path(params.run.cache_dir) / "tokens"


ImageLoader = Callable[[np.ndarray], torch.Tensor]  # image ids -> [B, 3, H, W] model input


def _image_loader(pool: ImageTextSet, model: nn.Module, preprocess: Any) -> ImageLoader:
    """How a step gets its images.

    Pixels pre-decoded at the model's resolution skip PIL (17-21 ms a batch on 2 cores, more than
    a tiny model's step); other stores go through the model's train transform image by image.
    """
    size = model.visual.image_size
    size = size[0] if isinstance(size, tuple) else size
    mean, std = model.visual.image_mean, model.visual.image_std
    if isinstance(pool.images, ArrayImages) and pool.images.pixels.shape[1:3] == (size, size):
        pixels = torch.from_numpy(pool.images.pixels)
        return lambda ids: normalise_pixels(pixels[torch.from_numpy(ids)], mean, std)
    return lambda ids: torch.stack([preprocess(pool.images[int(i)]) for i in ids])


TextFeatures = Callable[
    [nn.Module, torch.Tensor, Batch, torch.device], tuple[torch.Tensor, torch.Tensor]
]  # (model, token ids, batch, device) -> query and target features, as _text_features


def _text_features(
    model: nn.Module, tokens: torch.Tensor, batch: Batch, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Query and target features from one text forward; target rows without a target are zero.

    The target tensor always descends from the forward pass, so it requires grad on every rank
    even when this shard has no targets: the gathered loss's backward collectives then match.
    """
    has_target = batch.has_target
    rows = np.concatenate([batch.query_rows, batch.target_rows[has_target]])
    features = model.encode_text(tokens[torch.from_numpy(rows)].to(device), normalize=True)
    query, targets = features[: len(batch)], features[len(batch) :]
    where = torch.from_numpy(np.flatnonzero(has_target)).to(device)
    return query, torch.zeros_like(query).index_copy(0, where, targets)


def _step_seed(seed: int, step: int, rank: int) -> int:
    """Torch seed of one step on one rank: dropout is a pure function of (seed, step, rank), so
    a resumed run needs no saved RNG state and ranks draw independent masks."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


@dataclass
class _Trainer:
    """What one optimisation step needs, built once per arm."""

    model: nn.Module
    tokens: torch.Tensor
    images: ImageLoader
    loss_fn: ContrastiveLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ctx: DistContext
    precision: str
    grad_clip: float | None
    text_features: TextFeatures = _text_features  # the adapters route each side to its LoRA

    def step(self, batch: Batch) -> dict[str, float]:
        """Forward on this rank's shard, loss over the global batch, one AdamW step."""
        model, device = self.model, self.ctx.device
        images = self.images(batch.image_ids).to(device)
        mask = torch.from_numpy(batch.has_target).to(device)
        with autocast(device, self.precision):
            with torch.no_grad():  # the image tower is locked in every arm
                image_features = model.encode_image(images, normalize=True)
            query, target = self.text_features(model, self.tokens, batch, device)
            loss, parts = self.loss_fn(image_features, query, target, mask, model.logit_scale.exp())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in model.parameters() if p.requires_grad]
        if self.ctx.world_size > 1:
            all_reduce_gradients(params, self.ctx.world_size)
        grad_norm = nn.utils.clip_grad_norm_(params, self.grad_clip or math.inf)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        with torch.no_grad():  # open_clip clamps the learnable temperature at 100
            model.logit_scale.clamp_(0, math.log(100))
        metrics = {name: float(value) for name, value in parts.items()}
        return metrics | {
            "logit_scale": float(model.logit_scale.detach().exp()),
            "lr": lr,
            "grad_norm": float(grad_norm),
        }


def save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    step: int,
    elapsed_s: float,
    identity: dict[str, Any],
) -> None:
    """Trainable weights, optimizer, schedule and the next step, written atomically.

    Only plain containers, numbers, strings and tensors, so ``torch.load(weights_only=True)``
    reads it back without unpickling code. No RNG state: batches are a pure function of
    (seed, step) and dropout is reseeded per step (:func:`_step_seed`).
    """
    state = {
        "step": step,
        "elapsed_s": elapsed_s,
        "identity": identity,
        "model": trainable_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
    }
    with atomic_file(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint`, tensors on the CPU."""
    return torch.load(path, map_location="cpu", weights_only=True)


def restore_checkpoint(
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    path: Path,
) -> None:
    """Put a loaded checkpoint's weights, optimizer and schedule back (``path`` for errors)."""
    params = dict(model.named_parameters())
    expected = {name for name, p in params.items() if p.requires_grad}
    if expected != set(state["model"]):
        raise ValueError(f"{path}: holds other trainable parameters than this arm trains")
    with torch.no_grad():
        for name, value in state["model"].items():
            params[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])


class StepLog:
    """Per-step rows in ``log.csv`` and TensorBoard scalars in ``tb/``.

    Resuming at step ``s`` keeps the complete rows of steps before ``s`` (a killed run may have
    logged past its last checkpoint, or died mid-line) and has TensorBoard purge the rest.
    """

    def __init__(self, out_dir: Path, start: int) -> None:
        path, tb_dir = out_dir / LOG_CSV, out_dir / TENSORBOARD_DIR
        if start == 0:
            path.unlink(missing_ok=True)
            shutil.rmtree(tb_dir, ignore_errors=True)
        elif path.is_file():
            _truncate_log(path, start)
        self._file = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._csv = csv.DictWriter(self._file, LOG_COLUMNS)
        if self._file.tell() == 0:
            self._csv.writeheader()
        self._tb = SummaryWriter(str(tb_dir), purge_step=start or None)

    def write(self, row: dict[str, Any]) -> None:
        """Append one step's row (flushed: a killed run keeps every finished step)."""
        self._csv.writerow(row)
        self._file.flush()
        for key, value in row.items():
            if isinstance(value, float):
                self._tb.add_scalar(f"train/{key}", value, row["step"])
        batch = f"{row['kind']}: {row['query_langs']} -> {row['target_langs']}"
        self._tb.add_text("train/batch", batch, row["step"])

    def close(self) -> None:
        self._file.close()
        self._tb.close()


def _truncate_log(path: Path, start: int) -> None:
    """Rewrite ``path`` atomically with its complete rows of steps before ``start``."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [
            row
            for row in csv.DictReader(handle)
            if None not in row.values() and row["step"].isdigit() and int(row["step"]) < start
        ]
    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _languages(langs: Sequence[str]) -> str:
    return "+".join(sorted(set(langs)))


@dataclass(frozen=True)
class TrainedArm:
    """A fine-tuned arm: the trained copy of the base, where its outputs are, its summary."""

    arm: Arm
    bundle: ModelBundle
    out_dir: Path
    summary: dict[str, Any]


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


def _merged(model: nn.Module) -> nn.Module:
    """A copy of a LoRA-wrapped model with the LoRA folded into the base weights."""
    merged = copy.deepcopy(model)
    merged.text.transformer = merged.text.transformer.merge_and_unload()
    return merged


def _write_outputs(
    model: nn.Module, bundle: ModelBundle, out_dir: Path, summary: dict[str, Any], lora: bool
) -> None:
    """The model folder (LoRA merged), the LoRA alone, and the summary last: a summary means
    the arm is complete."""
    final = _merged(model) if lora else model
    save_model_dir(dataclasses.replace(bundle, model=final), out_dir / MODEL_DIR)
    if lora:
        with atomic_dir(out_dir / LORA_DIR, overwrite=True) as tmp:
            model.text.transformer.save_pretrained(tmp)
    atomic_write_json(summary, out_dir / SUMMARY_FILE)


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
    tower or one shared LoRA. Outputs go to ``out_dir`` (default :meth:`Arm.directory`):
    ``params.yaml``, ``log.csv``, ``tb/``, ``checkpoint.pt`` (every ``train.checkpoint_every``
    steps and at the end), then ``model/``, ``lora/`` and ``summary.json``. With ``resume`` a
    run continues from its checkpoint and ends, on CPU, with the weights of an uninterrupted
    run. Under ``torchrun`` each rank trains its shard of the global batch; rank 0 writes.
    """
    train = params.train
    langs = list(params.data.train_langs if langs is None else langs)
    ctx = init_distributed(params.run.device)
    check_arm_inputs(pool, params, arm, langs, ctx.world_size)
    out = Path(out_dir) if out_dir is not None else arm.directory(params)
    seed_everything(arm.seed)  # LoRA initialisation
    model = copy.deepcopy(base.model).to(ctx.device)
    if arm.trained == "lora":
        add_shared_lora(model, train.lora)
    else:
        unlock_text_tower(model)
    captions = pool.captions[pool.captions["lang"].isin(langs)].reset_index(drop=True)
    sampler = BatchSampler(
        arm.strategy, captions, langs, train.batch_size, arm.seed,
        alpha=0.0 if arm.alpha is None else arm.alpha, tau=train.tau,
    )  # fmt: skip
    lr = train.lora.lr if arm.trained == "lora" else train.lr
    optimizer = make_optimizer(model, lr, train.weight_decay)
    trainer = _Trainer(
        model=model,
        tokens=cached_tokens(base.tokenizer, captions["caption"].tolist(), token_cache_dir(params)),
        images=_image_loader(pool, model, base.preprocess_train),
        loss_fn=ContrastiveLoss(train.lambda_tt, ctx.world_size),
        optimizer=optimizer,
        scheduler=warmup_cosine(optimizer, train.warmup, train.steps),
        ctx=ctx,
        precision=train.precision,
        grad_clip=train.grad_clip,
    )
    identity = {
        "arm": arm.name,
        "base_seed": arm.base_seed,
        "seed": arm.seed,
        "langs": langs,
        "config": params.section_hash("data", "model", "train"),
    }
    start, elapsed = _resume_point(trainer, out / CHECKPOINT, identity, resume)
    log = _start_outputs(out, params, start) if ctx.is_main else None

    def save(step: int, elapsed_s: float) -> None:
        save_checkpoint(
            out / CHECKPOINT, model, trainer.optimizer, trainer.scheduler,
            step=step, elapsed_s=elapsed_s, identity=identity,
        )  # fmt: skip

    wall = _run_steps(
        trainer, lambda step: (sampler.batch(step), _step_seed(arm.seed, step, ctx.rank)), save,
        start=start, elapsed=elapsed, steps=train.steps, checkpoint_every=train.checkpoint_every,
        log=log, desc=arm.name, progress=progress,
    )  # fmt: skip
    summary = _summary(arm, langs, params, ctx, model, wall)
    if ctx.is_main:
        _write_outputs(model, base, out, summary, lora=arm.trained == "lora")
    if ctx.world_size > 1:
        dist.barrier()
    model.eval()
    return TrainedArm(arm, dataclasses.replace(base, model=model), out, summary)


StepPlan = Callable[[int], tuple[Batch, int]]  # global step -> (global batch, torch seed)


def _run_steps(
    trainer: _Trainer,
    plan: StepPlan,
    save: Callable[[int, float], None],
    *,
    start: int,
    elapsed: float,
    steps: int,
    checkpoint_every: int,
    log: StepLog | None,
    desc: str,
    progress: bool,
) -> float:
    """Steps ``start .. steps - 1`` of one run: seed, train this rank's shard, log, checkpoint.

    Shared by :func:`train_arm` and the adapters (:mod:`xlr.train.adapters`), which differ only in
    ``plan`` (which batch and dropout seed a step gets) and ``save`` (``save(next_step,
    seconds)`` writes the checkpoint; rank 0 only, like ``log``). Returns the training seconds
    of the whole run, the part before a resume (``elapsed``) included.
    """
    ctx, model = trainer.ctx, trainer.model
    model.train()
    model.visual.eval()  # locked: no dropout or norm statistics to update
    loop_start = time.perf_counter()
    bar = tqdm(
        range(start, steps), desc=desc, initial=start, total=steps,
        disable=not (progress and ctx.is_main),
    )  # fmt: skip
    try:
        with torch.random.fork_rng(devices=[ctx.device] if ctx.device.type == "cuda" else []):
            for step in bar:
                tic = time.perf_counter()
                batch, seed = plan(step)
                torch.manual_seed(seed)
                metrics = trainer.step(batch.shard(ctx.rank, ctx.world_size))
                if log is None:
                    continue
                log.write(_log_row(batch, metrics, time.perf_counter() - tic))
                if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
                    save(step + 1, elapsed + time.perf_counter() - loop_start)
    finally:
        if log is not None:
            log.close()
    return elapsed + time.perf_counter() - loop_start


def _log_row(batch: Batch, metrics: dict[str, float], seconds: float) -> dict[str, Any]:
    """One ``log.csv`` row: the global batch's kind and languages, loss parts, speed."""
    return {
        "step": batch.step,
        "kind": batch.kind,
        "query_langs": _languages(batch.query_langs),
        "target_langs": _languages(batch.target_langs),
        **metrics,
        "text_pairs": int(metrics["text_pairs"]),
        "examples_per_s": len(batch) / seconds,
    }


def _summary(
    arm: Arm,
    langs: list[str],
    params: Params,
    ctx: DistContext,
    model: nn.Module,
    wall_s: float,
) -> dict[str, Any]:
    """What ``summary.json`` records: arms are matched on steps, not compute, so the wall time
    and the trainable parameters go beside every comparison."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    steps, batch_size = params.train.steps, params.train.batch_size
    return {
        **dataclasses.asdict(arm),
        "name": arm.name,
        "langs": langs,
        "steps": steps,
        "batch_size": batch_size,
        "world_size": ctx.world_size,
        "device": str(ctx.device),
        "wall_s": wall_s,
        "steps_per_s": steps / wall_s,
        "examples_per_s": steps * batch_size / wall_s,
        "trainable_params": sum(p.numel() for p in trainable),
        "trainable_bytes": sum(p.numel() * p.element_size() for p in trainable),
        "total_params": sum(p.numel() for p in model.parameters()),
    }


def _resume_point(
    trainer: _Trainer, path: Path, identity: dict[str, Any], resume: bool
) -> tuple[int, float]:
    """(next step, training seconds so far): from the checkpoint when resuming, else (0, 0)."""
    if not (resume and path.is_file()):
        return 0, 0.0
    state = load_checkpoint(path)
    if state["identity"] != identity:
        raise ValueError(
            f"{path}: written for {state['identity']}, not {identity}; pass resume=False to "
            "start this arm again, or point out_dir elsewhere"
        )
    restore_checkpoint(state, trainer.model, trainer.optimizer, trainer.scheduler, path)
    return int(state["step"]), float(state["elapsed_s"])


def _start_outputs(out: Path, params: Params, start: int) -> StepLog:
    """Create the arm folder with its resolved params; a fresh start drops stale outputs."""
    out.mkdir(parents=True, exist_ok=True)
    if start == 0:
        for stale in (CHECKPOINT, SUMMARY_FILE):
            (out / stale).unlink(missing_ok=True)
    resolved = yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    atomic_write_text(out / PARAMS_FILE, resolved)
    return StepLog(out, start)
