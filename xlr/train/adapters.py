"""Language-specific LoRA adapters of notebook 03: one peft LoRA per training language.

README ("The arms", ``adapters``): the base CLIP stays frozen and every training language gets
its own LoRA on the text tower (``model.text``), trained on ``mono`` batches of that
language with the objective of the shared arms (:mod:`xlr.train.objective`) and the one training
loop (:mod:`xlr.train.loop`). At inference the caption's
language selects its adapter; a language without one falls back to the base (adapters off), to
the adapter of the nearest training language, or to the average of all adapters. The combined
arm ``adapters_hybrid`` trains the same adapters on hybrid batches: a cross step encodes its
queries through the query language's adapter and its targets through the target language's.

Every arm trains on the same budget, ``train.steps`` batches of ``train.batch_size`` examples:
``adapters`` splits it across its languages in the shared arms' mix (:func:`language_steps`:
p(l) proportional to n_l ** ``train.tau``, equal at 0), ``adapters_hybrid`` runs
``train.steps`` hybrid steps. With the logit scale locked (``train.logit_scale: lock``) the
adapters of the ``adapters`` arm are independent by construction: each is initialised, batched
and dropout-seeded from (run seed, language), runs its own learning-rate clock over its own
steps, and AdamW skips parameters without gradients, so the ``schedule`` (sequential or
interleaved) changes the order of steps, never the weights. A trained logit scale is shared by
all adapters, as it is by every other arm (on the whole run's clock, as there), and so is
fp16's loss scale (``train.precision: fp16``): an overflow in one language's step halves it for
all, so under fp16 the adapters are not independent (one scaler per language would make them
so; fp16 is for pre-Ampere cards).
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from xlr.arms import ADAPTERS_DIR, LOG_CSV, Arm
from xlr.config import Params
from xlr.data.imagetext import ImageTextSet
from xlr.io import atomic_dir
from xlr.langs import canonical_code
from xlr.models.adapters import (
    adapter_bytes,
    adapter_tensors,
    load_adapters,
    saved_adapter_langs,
    saved_params,
)
from xlr.models.encode import unit_features
from xlr.models.factory import ModelBundle
from xlr.runtime import DistContext, init_distributed
from xlr.train.batching import Batch, BatchSampler
from xlr.train.finetune import (
    arm_folder,
    arm_sampler,
    check_arm_inputs,
    image_features,
    pair_summary,
    run_summary,
)
from xlr.train.inputs import StepPlan
from xlr.train.loop import Trainer, fit, step_seed
from xlr.train.objective import contrastive_objective, text_features
from xlr.train.optim import clocked_warmup_cosine, make_optimizer, warmup_cosine
from xlr.train.trainable import add_language_adapters, language_seed, set_logit_scale

Schedule = Literal["sequential", "interleaved"]


def language_steps(steps: int, shares: Mapping[str, float]) -> dict[str, int]:
    """The arm's budget of ``steps`` split across the languages of ``shares`` in proportion to
    them (largest remainders; a tie to the earlier language), so that the adapters together see
    as many examples as any arm, in the language mix of the shared arms' mono batches: the
    shares are their p(l), proportional to n_l ** ``train.tau`` (:func:`_mono_shares`), equal
    at ``tau`` 0, where the remainder goes one step each to the first languages."""
    langs = list(shares)
    weights = np.array([shares[lang] for lang in langs], dtype=np.float64)
    if not langs or not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"language shares must be finite, >= 0 and not all 0, got {shares}")
    quotas = steps * weights / weights.sum()
    counts = np.floor(quotas).astype(np.int64)
    order = np.argsort(-(quotas - counts), kind="stable")  # largest remainder first
    counts[order[: steps - counts.sum()]] += 1
    if counts.min() < 1:
        raise ValueError(
            f"{steps} steps cannot give each of the {len(langs)} adapters a step at shares "
            f"{dict(zip(langs, np.round(weights / weights.sum(), 4).tolist(), strict=True))}; "
            "raise train.steps or lower train.tau"
        )
    return dict(zip(langs, counts.tolist(), strict=True))


def _mono_shares(captions: pd.DataFrame, langs: list[str], params: Params) -> dict[str, float]:
    """p(l) of the shared arms' mono batches over ``langs`` (the sampler's own counts and
    ``train.tau``), which :func:`language_steps` splits the adapters' budget by."""
    sampler = BatchSampler(
        "mono", captions, langs, params.train.batch_size, 0, tau=params.train.tau
    )
    return dict(zip(sampler.sampler.langs, sampler.sampler.probs.tolist(), strict=True))


def language_schedule(steps: Mapping[str, int], schedule: Schedule) -> list[tuple[str, int]]:
    """(language, that language's own step) of every global step, for ``steps`` per language:
    ``sequential`` trains one adapter after the other, ``interleaved`` rotates through the
    languages step by step (a language leaves the rotation when its steps are done)."""
    if min(steps.values(), default=0) < 1:
        raise ValueError(f"every language needs at least one step, got {dict(steps)}")
    if schedule == "sequential":
        return [(lang, k) for lang, n in steps.items() for k in range(n)]
    if schedule == "interleaved":
        longest = max(steps.values())
        return [(lang, k) for k in range(longest) for lang, n in steps.items() if k < n]
    raise ValueError(f"adapters.schedule must be 'sequential' or 'interleaved', got {schedule!r}")


def _use_adapter(transformer: nn.Module, active: str, trainable: Sequence[str]) -> None:
    """Route the forward pass through ``active`` with exactly ``trainable`` receiving gradients.

    peft's ``set_adapter`` marks only the active adapter trainable, and a frozen leaf gets no
    gradient even from a graph recorded while it was trainable; a cross step switches adapters
    between its two forward passes, so both must be marked again after the switch.
    """
    transformer.set_adapter(active)
    transformer.set_requires_grad(list(trainable), True)


def routed_text_features(
    model: nn.Module, tokens: torch.Tensor, batch: Batch, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Query features through the query language's adapter, targets through the target's.

    The :data:`xlr.train.objective.TextFeatures` hook of the adapter arms. A mono batch is one
    forward pass through its language's adapter; a cross batch is two, with the adapter
    switched between them and both adapters trainable, so one backward pass reaches both.
    """
    if batch.kind == "multi":
        raise ValueError("adapters route one language per side: 'multi' batches mix languages")
    query_lang, target_lang = batch.query_langs[0], batch.target_langs[0]
    transformer = model.text
    pair = list(dict.fromkeys((query_lang, target_lang)))
    _use_adapter(transformer, query_lang, pair)
    if query_lang == target_lang:
        return text_features(model, tokens, batch, device)
    query = unit_features(model.encode_text(tokens[torch.from_numpy(batch.query_rows)].to(device)))
    _use_adapter(transformer, target_lang, pair)
    # A cross batch pairs every query with its parallel caption: every row has a target.
    target = unit_features(
        model.encode_text(tokens[torch.from_numpy(batch.target_rows)].to(device))
    )
    return query, target


@dataclass(frozen=True)
class TrainedAdapters:
    """A trained adapter arm: the base with its adapters, where its outputs are, its summary."""

    arm: Arm
    bundle: ModelBundle
    out_dir: Path
    summary: dict[str, Any]

    @property
    def langs(self) -> list[str]:
        """The languages that have an adapter."""
        return list(self.summary["langs"])


@dataclass(frozen=True)
class AdapterRun:
    """One adapter arm, ready to train: its trainer, its step plan, its number of steps, and
    the language pairs its hybrid batches draw and drop (:func:`pair_summary`)."""

    trainer: Trainer
    plan: StepPlan
    steps: int
    pairs: dict[str, list[str]]
    steps_per_language: dict[str, int] | None  # the ``adapters`` arm's split, else None


def _mono_plan(
    captions: pd.DataFrame, langs: list[str], params: Params, seed: int, ctx: DistContext
) -> tuple[StepPlan, list[tuple[int, int]], dict[str, int]]:
    """Each global step's batch and dropout seed from its language's own sampler and clock,
    each step's position on that clock with the clock's length (for the learning rate), and
    the steps of each language."""
    train = params.train
    steps = language_steps(train.steps, _mono_shares(captions, langs, params))
    clock = language_schedule(steps, params.adapters.schedule)
    seeds = {lang: language_seed(seed, lang) for lang in langs}
    samplers = {
        lang: BatchSampler("mono", captions, [lang], train.batch_size, seeds[lang])
        for lang in langs
    }

    def plan(step: int) -> tuple[Batch, int]:
        lang, local = clock[step]
        batch = dataclasses.replace(samplers[lang].batch(local), step=step)
        return batch, step_seed(seeds[lang], local, ctx.rank)

    return plan, [(local, steps[lang]) for lang, local in clock], steps


def adapter_run(
    base: ModelBundle,
    pool: ImageTextSet,
    params: Params,
    arm: Arm,
    langs: list[str],
    ctx: DistContext,
) -> AdapterRun:
    """A copy of the base with one adapter per language, its optimizer over every adapter
    (a cross step updates two), the learning-rate schedule and the step plan.

    Public apart from :func:`train_adapters` so that a test or a notebook can take one step
    of an adapter arm and look at what it changed.
    """
    train, adapters = params.train, params.adapters
    model = copy.deepcopy(base.model).cpu()  # adapters initialised on CPU: same on any device
    add_language_adapters(model, langs, adapters.lora, arm.stream_seed)
    model.to(ctx.device)
    model.text.set_requires_grad(langs, True)
    set_logit_scale(model, train.logit_scale)
    # LoRA factors are all matrices: decay them all. The name rule would spare Bengali ('bn').
    optimizer = make_optimizer(
        model, arm.lr(params), train.weight_decay, no_decay=lambda _, param: param.ndim < 2,
        scale_lr=train.lr,
    )  # fmt: skip
    captions = pool.captions[pool.captions["lang"].isin(langs)].reset_index(drop=True)
    steps = train.steps
    scheduler: torch.optim.lr_scheduler.LRScheduler
    pairs: dict[str, list[str]] = {}
    per_language = None
    if arm.alpha is None:
        plan, clock, per_language = _mono_plan(captions, langs, params, arm.stream_seed, ctx)
        scheduler = clocked_warmup_cosine(optimizer, clock, train.warmup / train.steps)
    else:
        sampler = arm_sampler(arm, captions, langs, params)
        pairs = pair_summary(sampler)

        def plan(step: int) -> tuple[Batch, int]:
            return sampler.batch(step), step_seed(arm.stream_seed, step, ctx.rank)

        scheduler = warmup_cosine(optimizer, train.warmup, steps)
    objective = contrastive_objective(
        base, pool, captions, params, ctx.world_size, text_features=routed_text_features,
        image_features=image_features(base, pool, params, arm, model, ctx),
    )  # fmt: skip
    trainer = Trainer(
        model=model,
        objective=objective,
        optimizer=optimizer,
        scheduler=scheduler,
        ctx=ctx,
        precision=train.precision,
        grad_clip=train.grad_clip,
    )
    return AdapterRun(trainer, plan, steps, pairs, per_language)


def train_adapters(
    base: ModelBundle,
    pool: ImageTextSet,
    params: Params,
    arm: Arm,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    langs: Sequence[str] | None = None,
    resume: bool = True,
    progress: bool = True,
) -> TrainedAdapters:
    """Train one LoRA per language of ``langs`` (default ``data.train_langs``) on a frozen copy
    of ``base``: arm ``adapters`` (``arm.alpha`` None) or ``adapters_hybrid``.

    ``adapters``: the ``train.steps`` budget split into mono steps per language in the shared
    arms' mix (:func:`language_steps`), ordered by ``adapters.schedule``, each language on its own
    warmup-cosine clock with the shared arms' warmup share. ``adapters_hybrid``:
    ``train.steps`` hybrid steps (``train.tau``, ``arm.alpha``) on one clock. Loss, batch size,
    logit-scale policy, clipping and checkpointing come from ``train``, the LoRA shape from
    ``adapters.lora``, the learning rate from :meth:`Arm.lr`. Outputs in ``out_dir`` (default
    :meth:`Arm.directory`): ``params.yaml``, ``log.csv``, ``tb/``, ``checkpoint.pt`` (dropped
    once finished), then ``adapters/<lang>/`` (peft ``save_pretrained``) and ``summary.json``
    last. With ``resume`` a run continues from its checkpoint to the weights of an
    uninterrupted run, and a finished run (a summary of this identity) trains nothing: its
    adapters are loaded from ``adapters/``.
    """
    langs = [canonical_code(lang) for lang in (params.data.train_langs if langs is None else langs)]
    ctx = init_distributed(params.run.device)
    check_arm_inputs(pool, params, arm, langs, ctx.world_size)
    out = Path(out_dir) if out_dir is not None else arm.directory(params)
    folder = arm_folder(arm, pool, langs, params, out, resume)
    if (done := folder.finished(ctx)) is not None:
        bundle = load_adapters(base, out, langs)
        bundle.model.to(ctx.device)
        return TrainedAdapters(arm, bundle, out, done)
    run = adapter_run(base, pool, params, arm, langs, ctx)
    wall = fit(
        run.trainer, run.plan, run.steps, folder=folder, desc=arm.name, progress=progress,
        workers=params.train.loader_workers,
    ).wall_s  # fmt: skip
    model = run.trainer.model
    transformer = model.text
    transformer.set_requires_grad(langs, False)
    model.eval()
    trained = [p for lang in langs for p in adapter_tensors(transformer)[lang]]
    summary = run_summary(
        arm, langs, params, ctx, run.steps, wall, trained,
        sum(p.numel() for p in base.model.parameters()) + sum(p.numel() for p in trained),
        base_model=base.name,
        schedule=params.adapters.schedule if arm.alpha is None else "hybrid",
        steps_per_language=run.steps_per_language,
        **run.pairs,
    )  # fmt: skip

    def outputs() -> None:  # rank 0's, as RunFolder.finish runs it
        with atomic_dir(out / ADAPTERS_DIR, overwrite=True) as tmp:
            transformer.save_pretrained(tmp, selected_adapters=langs)
        summary["per_language"] = _per_language(out, langs, transformer, params.train.batch_size)
        summary["bytes_on_disk"] = sum(v["bytes_on_disk"] for v in summary["per_language"].values())

    folder.finish(summary, ctx, outputs)
    return TrainedAdapters(arm, dataclasses.replace(base, model=model), out, summary)


def _per_language(
    out: Path, langs: list[str], transformer: nn.Module, batch_size: int
) -> dict[str, dict[str, Any]]:
    """Each adapter's parameters, bytes on disk, and the steps and seconds it trained in (from
    ``log.csv``, which survives resumes; a cross step counts for both of its languages). A
    step's seconds include the log and checkpoint written after the step before
    (:func:`xlr.train.loop.fit`), so under the sequential schedule a language's last checkpoint
    counts for the next language; the final one is in the summary's ``wall_s`` alone."""
    log = pd.read_csv(
        out / LOG_CSV, dtype={"query_langs": str, "target_langs": str}, keep_default_na=False
    )
    seconds = batch_size / log["examples_per_s"]
    tensors = adapter_tensors(transformer)
    result = {}
    for lang in langs:
        took_part = (log["query_langs"] == lang) | (log["target_langs"] == lang)
        result[lang] = {
            "trainable_params": sum(p.numel() for p in tensors[lang]),
            "bytes_on_disk": adapter_bytes(out / ADAPTERS_DIR / lang),
            "steps": int(took_part.sum()),
            "wall_s": float(seconds[took_part].sum()),
        }
    return result


def adapter_costs(
    folder: str | os.PathLike[str],
    base: nn.Module,
    shared_lora_dir: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Trainable parameters and bytes on disk of an adapter arm, per language and in total,
    beside the alternatives of notebook 02 (the study reports storage per language).

    Rows (``kind``): ``adapter`` per language, ``adapters`` (their sum), ``full_text_tower``
    (what the ``full`` setting trains: ``text.*`` and the logit scale, at its parameter bytes)
    and, given ``shared_lora_dir`` (a 02 arm's ``lora/``), ``shared_lora``. ``vs_full`` is the
    share of the full text tower's parameters.
    """
    root = Path(folder) / ADAPTERS_DIR
    rows = [
        {
            "kind": "adapter",
            "lang": lang,
            "trainable_params": saved_params(root / lang),
            "bytes_on_disk": adapter_bytes(root / lang),
        }
        for lang in saved_adapter_langs(folder)
    ]
    if not rows:
        raise FileNotFoundError(f"{root}: no saved adapters")
    rows.append(
        {
            "kind": "adapters",
            "lang": "all",
            "trainable_params": sum(r["trainable_params"] for r in rows),
            "bytes_on_disk": sum(r["bytes_on_disk"] for r in rows),
        }
    )
    text = [p for n, p in base.named_parameters() if n.startswith("text.") or n == "logit_scale"]
    rows.append(
        {
            "kind": "full_text_tower",
            "lang": "all",
            "trainable_params": sum(p.numel() for p in text),
            "bytes_on_disk": sum(p.numel() * p.element_size() for p in text),
        }
    )
    if shared_lora_dir is not None:
        shared = Path(shared_lora_dir)
        rows.append(
            {
                "kind": "shared_lora",
                "lang": "all",
                "trainable_params": saved_params(shared),
                "bytes_on_disk": adapter_bytes(shared),
            }
        )
    table = pd.DataFrame(rows)
    full = int(table.loc[table["kind"] == "full_text_tower", "trainable_params"].iloc[0])
    return table.assign(vs_full=table["trainable_params"] / full)
