"""Language-specific LoRA adapters of notebook 03: one peft LoRA per training language.

DESIGN (Training arms, ``adapters``): the base CLIP stays frozen and every training language gets
its own LoRA on the XLM-R text tower (``text.transformer``), trained on ``mono`` batches of that
language with the loss and loop of :func:`xlr.train.train_arm`. At inference the caption's
language selects its adapter; a language without one falls back to the base (adapters off), to
the adapter of the nearest training language, or to the average of all adapters. The combined
arm ``adapters_hybrid`` trains the same adapters on hybrid batches: a cross step encodes its
queries through the query language's adapter and its targets through the target language's.

The adapters of the ``adapters`` arm are independent by construction: each is initialised,
batched and dropout-seeded from (run seed, language), runs its own learning-rate clock over its
``steps_per_language`` steps, and AdamW skips parameters without gradients. The ``schedule``
(sequential or interleaved) therefore changes the order of steps, never the weights, and adding
a training language leaves every other adapter bit-identical.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch import nn

from xlr.batching import Batch, BatchSampler
from xlr.config import LoraSection, Params, resolve_path
from xlr.data.imagetext import ImageTextSet
from xlr.evaluate import ModelEncoder, encode_texts
from xlr.io import atomic_dir, atomic_write_json
from xlr.langs import canonical_code, nearest_language
from xlr.losses import ContrastiveLoss
from xlr.models import ModelBundle
from xlr.train import (
    CHECKPOINT,
    LOG_CSV,
    ArmSpec,
    DistContext,
    StepPlan,
    _image_loader,
    _resume_point,
    _run_steps,
    _start_outputs,
    _step_seed,
    _text_features,
    _Trainer,
    cached_tokens,
    check_arm_inputs,
    count_trainable,
    init_distributed,
    make_optimizer,
    save_checkpoint,
    token_cache_dir,
    warmup_cosine,
    warmup_cosine_factor,
)

Schedule = Literal["sequential", "interleaved"]
Fallback = Literal["base", "nearest", "average"]
FALLBACKS: tuple[str, ...] = get_args(Fallback)
ADAPTERS_DIR = "adapters"  # peft save_pretrained layout: adapters/<lang>/adapter_model.safetensors
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")  # what one adapter stores
AVERAGE = "average"  # the derived adapter of held-out languages; never a language code
BASE = "base"  # the route with every adapter off


# --- Arms and folders ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AdapterSpec:
    """One adapter model of the study: ``alpha`` None is the ``adapters`` arm (``mono`` batches),
    a value the combined ``adapters_hybrid`` arm (hybrid batches with that share of mono steps)."""

    base_seed: int
    seed: int
    alpha: float | None = None

    def __post_init__(self) -> None:
        if self.alpha is not None and not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha is the share of mono steps, in [0, 1]; got {self.alpha}")

    @property
    def arm(self) -> str:
        """``adapters`` or ``adapters_hybrid``."""
        return "adapters" if self.alpha is None else "adapters_hybrid"

    @property
    def name(self) -> str:
        """The arm's name in folders and results tables: ``adapters``, ``adapters_hybrid-a0.5``."""
        return self.arm if self.alpha is None else f"{self.arm}-a{self.alpha:g}"

    def directory(self, params: Params) -> Path:
        """``<runs_dir>/<run.name>/arms/<name>/base<b>/seed<k>``, as :func:`xlr.train.arm_dir`."""
        arms = resolve_path(params.run.runs_dir) / params.run.name / "arms"
        return arms / self.name / f"base{self.base_seed}" / f"seed{self.seed}"


def adapter_specs_from_params(params: Params) -> list[AdapterSpec]:
    """Every adapter model the params ask for, base by base: ``adapters`` when
    ``adapters.enabled``, and ``adapters_hybrid`` at ``adapters.hybrid_alpha`` unless null
    (one alpha: the combined arm asks whether the two ideas add up, not which alpha is best)."""
    alphas: list[float | None] = [None] if params.adapters.enabled else []
    if params.adapters.hybrid_alpha is not None:
        alphas.append(params.adapters.hybrid_alpha)
    return [
        AdapterSpec(base_seed, seed, alpha)
        for base_seed in params.run.base_seeds
        for alpha in alphas
        for seed in params.run.seeds
    ]


def language_seed(seed: int, lang: str) -> int:
    """The seed of one language's adapter (init, batches, dropout): a function of the run seed
    and the language alone, so no adapter depends on which other languages are trained."""
    return int(np.random.SeedSequence([seed, *lang.encode()]).generate_state(1)[0])


def language_schedule(
    langs: Sequence[str], steps_per_language: int, schedule: Schedule
) -> list[tuple[str, int]]:
    """(language, that language's own step) of every global step: ``sequential`` trains one
    adapter after the other, ``interleaved`` rotates through the languages step by step."""
    if steps_per_language < 1:
        raise ValueError(f"steps_per_language must be positive, got {steps_per_language}")
    if schedule == "sequential":
        return [(lang, k) for lang in langs for k in range(steps_per_language)]
    if schedule == "interleaved":
        return [(lang, k) for k in range(steps_per_language) for lang in langs]
    raise ValueError(f"adapters.schedule must be 'sequential' or 'interleaved', got {schedule!r}")


# --- peft plumbing ------------------------------------------------------------------------------


def _check_rank(transformer: nn.Module, lora: LoraSection) -> None:
    """Refuse a rank above the width of a targeted layer: peft accepts it, but the update
    ``B @ A`` then has more parameters than the full-rank change it approximates."""
    for name, module in transformer.named_modules():
        targeted = any(name == t or name.endswith(f".{t}") for t in lora.target_modules)
        if targeted and isinstance(module, nn.Linear):
            width = min(module.in_features, module.out_features)
            if lora.r > width:
                raise ValueError(
                    f"adapters.lora.r = {lora.r} exceeds the width {width} of "
                    f"text.transformer.{name}; a LoRA rank must be at most the smaller of a "
                    "targeted layer's input and output features: lower adapters.lora.r"
                )


def add_language_adapters(
    model: nn.Module, langs: Sequence[str], lora: LoraSection, seed: int
) -> int:
    """Freeze ``model`` and give its XLM-R text tower one LoRA per language, named by its code.

    Only ``text.transformer`` is wrapped; the image tower, projection and logit scale stay
    locked (peft freezes only what it wraps). Each adapter is initialised under
    :func:`language_seed`. Returns the trainable parameter count of one adapter, the first
    language's adapter being the active one.
    """
    from peft import LoraConfig, get_peft_model

    codes = [canonical_code(lang) for lang in langs]
    if not codes or len(set(codes)) != len(codes):
        raise ValueError(f"adapter languages must be distinct and at least one, got {list(langs)}")
    _check_rank(model.text.transformer, lora)
    for param in model.parameters():
        param.requires_grad_(False)
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
    )
    transformer = model.text.transformer
    for i, lang in enumerate(codes):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(language_seed(seed, lang))
            try:
                if i == 0:
                    transformer = get_peft_model(transformer, config, adapter_name=lang)
                else:
                    transformer.add_adapter(lang, config)
            except ValueError as err:
                raise ValueError(
                    f"adapters.lora.target_modules {lora.target_modules}: {err}"
                ) from err
    model.text.transformer = transformer
    transformer.set_adapter(codes[0])
    return count_trainable(model)


def _use_adapter(transformer: nn.Module, active: str, trainable: Sequence[str]) -> None:
    """Route the forward pass through ``active`` with exactly ``trainable`` receiving gradients.

    peft's ``set_adapter`` marks only the active adapter trainable, and a frozen leaf gets no
    gradient even from a graph recorded while it was trainable; a cross step switches adapters
    between its two forward passes, so both must be marked again after the switch.
    """
    transformer.set_adapter(active)
    transformer.set_requires_grad(list(trainable), True)


def adapter_tensors(transformer: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The parameters of each adapter of a peft-wrapped tower, by adapter name (the name
    follows ``lora_A``/``lora_B`` in peft's parameter names)."""
    tensors: dict[str, list[nn.Parameter]] = {}
    for name, param in transformer.named_parameters():
        parts = name.split(".")
        lora = [i for i, part in enumerate(parts) if part.startswith("lora_")]
        if lora:
            tensors.setdefault(parts[lora[0] + 1], []).append(param)
    return tensors


def lora_deltas(transformer: nn.Module, adapter: str) -> dict[str, torch.Tensor]:
    """The weight update ``B @ A * scaling`` of ``adapter`` in every layer it adapts, by layer.

    What an adapter changes, independent of how its rank is factored: the quantity to compare
    between adapters (the ``average`` adapter is the mean of the languages' updates).
    """
    from peft.tuners.lora import LoraLayer

    deltas = {}
    for name, module in transformer.named_modules():
        if isinstance(module, LoraLayer) and adapter in module.lora_A:
            a, b = module.lora_A[adapter].weight, module.lora_B[adapter].weight
            deltas[name] = (b @ a * module.scaling[adapter]).detach()
    if not deltas:
        raise KeyError(f"no adapter {adapter!r} in this model")
    return deltas


def add_average_adapter(transformer: nn.Module, langs: Sequence[str]) -> None:
    """Add the ``average`` adapter: the exact mean of the languages' LoRA updates.

    peft's ``cat`` combination stacks the scaled factors (rank ``sum r``), so its update is the
    weighted sum of the languages' updates; ``linear`` averages A and B separately, which is not
    the mean update, and ``svd`` truncates it. Idempotent.
    """
    if AVERAGE in transformer.peft_config:
        return
    weights = [1.0 / len(langs)] * len(langs)
    transformer.add_weighted_adapter(list(langs), weights, AVERAGE, combination_type="cat")


# --- Training -----------------------------------------------------------------------------------


def routed_text_features(
    model: nn.Module, tokens: torch.Tensor, batch: Batch, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Query features through the query language's adapter, targets through the target's.

    The :data:`xlr.train.TextFeatures` hook of the adapter arms. A mono batch is one forward
    pass through its language's adapter; a cross batch is two, with the adapter switched
    between them and both adapters trainable, so one backward pass reaches both.
    """
    if batch.kind == "multi":
        raise ValueError("adapters route one language per side: 'multi' batches mix languages")
    query_lang, target_lang = batch.query_langs[0], batch.target_langs[0]
    transformer = model.text.transformer
    pair = list(dict.fromkeys((query_lang, target_lang)))
    _use_adapter(transformer, query_lang, pair)
    if query_lang == target_lang:
        return _text_features(model, tokens, batch, device)
    query = model.encode_text(tokens[torch.from_numpy(batch.query_rows)].to(device), normalize=True)
    _use_adapter(transformer, target_lang, pair)
    # A cross batch pairs every query with its parallel caption: every row has a target.
    target = model.encode_text(
        tokens[torch.from_numpy(batch.target_rows)].to(device), normalize=True
    )
    return query, target


@dataclass(frozen=True)
class TrainedAdapters:
    """A trained adapter arm: the base with its adapters, where its outputs are, its summary."""

    spec: AdapterSpec
    bundle: ModelBundle
    out_dir: Path
    summary: dict[str, Any]

    @property
    def langs(self) -> list[str]:
        """The languages that have an adapter."""
        return list(self.summary["langs"])


@dataclass
class _AdapterRun:
    """One adapter arm, ready to train: its trainer, its step plan, its number of steps."""

    trainer: _Trainer
    plan: StepPlan
    steps: int


def _mono_plan(
    captions: pd.DataFrame, langs: list[str], params: Params, seed: int, ctx: DistContext
) -> tuple[StepPlan, list[int]]:
    """Each global step's batch and dropout seed from its language's own sampler and clock,
    and each step's position on that clock (for the learning rate)."""
    train, adapters = params.train, params.adapters
    clock = language_schedule(langs, adapters.steps_per_language, adapters.schedule)
    seeds = {lang: language_seed(seed, lang) for lang in langs}
    samplers = {
        lang: BatchSampler("mono", captions, [lang], train.batch_size, seeds[lang])
        for lang in langs
    }

    def plan(step: int) -> tuple[Batch, int]:
        lang, local = clock[step]
        batch = dataclasses.replace(samplers[lang].batch(local), step=step)
        return batch, _step_seed(seeds[lang], local, ctx.rank)

    return plan, [local for _, local in clock]


def _prepare(
    base: ModelBundle,
    pool: ImageTextSet,
    params: Params,
    spec: AdapterSpec,
    langs: list[str],
    ctx: DistContext,
) -> _AdapterRun:
    """A copy of the base with one adapter per language, its optimizer over every adapter
    (a cross step updates two), the learning-rate schedule and the step plan."""
    train, adapters = params.train, params.adapters
    model = copy.deepcopy(base.model).cpu()  # adapters initialised on CPU: same on any device
    add_language_adapters(model, langs, adapters.lora, spec.seed)
    model.to(ctx.device)
    model.text.transformer.set_requires_grad(langs, True)
    # LoRA factors are all matrices: decay them all. The name rule would spare Bengali ('bn').
    optimizer = make_optimizer(
        model, adapters.lora.lr, train.weight_decay, no_decay=lambda _, param: param.ndim < 2
    )
    captions = pool.captions[pool.captions["lang"].isin(langs)].reset_index(drop=True)
    steps = len(langs) * adapters.steps_per_language
    scheduler: torch.optim.lr_scheduler.LRScheduler
    if spec.alpha is None:
        plan, local = _mono_plan(captions, langs, params, spec.seed, ctx)
        clock = [*local, adapters.steps_per_language]  # the scheduler looks one step past the end
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: warmup_cosine_factor(
                clock[step], train.warmup, adapters.steps_per_language
            ),
        )
    else:
        sampler = BatchSampler(
            "hybrid", captions, langs, train.batch_size, spec.seed, alpha=spec.alpha, tau=train.tau
        )

        def plan(step: int) -> tuple[Batch, int]:
            return sampler.batch(step), _step_seed(spec.seed, step, ctx.rank)

        scheduler = warmup_cosine(optimizer, train.warmup, steps)
    trainer = _Trainer(
        model=model,
        tokens=cached_tokens(base.tokenizer, captions["caption"].tolist(), token_cache_dir(params)),
        images=_image_loader(pool, model, base.preprocess_train),
        loss_fn=ContrastiveLoss(train.lambda_tt, ctx.world_size),
        optimizer=optimizer,
        scheduler=scheduler,
        ctx=ctx,
        precision=train.precision,
        grad_clip=train.grad_clip,
        text_features=routed_text_features,
    )
    return _AdapterRun(trainer, plan, steps)


def train_adapters(
    base: ModelBundle,
    pool: ImageTextSet,
    params: Params,
    spec: AdapterSpec,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    langs: Sequence[str] | None = None,
    resume: bool = True,
    progress: bool = True,
) -> TrainedAdapters:
    """Train one LoRA per language of ``langs`` (default ``data.train_langs``) on a frozen copy
    of ``base``: arm ``adapters`` (``spec.alpha`` None) or ``adapters_hybrid``.

    ``adapters``: ``adapters.steps_per_language`` mono steps per language, ordered by
    ``adapters.schedule``, each language on its own warmup-cosine clock. ``adapters_hybrid``:
    ``len(langs) * steps_per_language`` hybrid steps (``train.tau``, ``spec.alpha``) on one
    clock. Loss, batch size, learning rate, clipping and checkpointing come from ``train``, the
    LoRA shape from ``adapters.lora``. Outputs in ``out_dir`` (default
    :meth:`AdapterSpec.directory`): ``params.yaml``, ``log.csv``, ``tb/``, ``checkpoint.pt``,
    then ``adapters/<lang>/`` (peft ``save_pretrained``) and ``summary.json`` last. With
    ``resume`` a run continues from its checkpoint to the weights of an uninterrupted run.
    """
    langs = [canonical_code(lang) for lang in (params.data.train_langs if langs is None else langs)]
    ctx = init_distributed(params.run.device)
    strategy = "mono" if spec.alpha is None else "hybrid"
    check = ArmSpec(strategy, spec.base_seed, spec.seed, spec.alpha, "lora")
    check_arm_inputs(pool, params, check, langs, ctx.world_size)
    out = Path(out_dir) if out_dir is not None else spec.directory(params)
    run = _prepare(base, pool, params, spec, langs, ctx)
    trainer = run.trainer
    model = trainer.model
    transformer = model.text.transformer
    identity = {
        "arm": spec.name,
        "base_seed": spec.base_seed,
        "seed": spec.seed,
        "langs": langs,
        "config": params.section_hash("data", "model", "train", "adapters"),
    }
    start, elapsed = _resume_point(trainer, out / CHECKPOINT, identity, resume)
    log = _start_outputs(out, params, start) if ctx.is_main else None

    def save(step: int, elapsed_s: float) -> None:
        transformer.set_requires_grad(langs, True)  # the checkpoint holds every adapter
        save_checkpoint(
            out / CHECKPOINT, model, trainer.optimizer, trainer.scheduler,
            step=step, elapsed_s=elapsed_s, identity=identity,
        )  # fmt: skip

    wall = _run_steps(
        trainer, run.plan, save, start=start, elapsed=elapsed, steps=run.steps,
        checkpoint_every=params.train.checkpoint_every, log=log, desc=spec.name,
        progress=progress,
    )  # fmt: skip
    transformer.set_requires_grad(langs, False)
    model.eval()
    summary = _summary(spec, langs, params, ctx, base, transformer, run.steps, wall)
    if ctx.is_main:
        with atomic_dir(out / ADAPTERS_DIR, overwrite=True) as tmp:
            transformer.save_pretrained(tmp, selected_adapters=langs)
        summary["per_language"] = _per_language(out, langs, transformer, params.train.batch_size)
        summary["bytes_on_disk"] = sum(v["bytes_on_disk"] for v in summary["per_language"].values())
        atomic_write_json(summary, out / "summary.json")
    if ctx.world_size > 1:
        dist.barrier()
    return TrainedAdapters(spec, dataclasses.replace(base, model=model), out, summary)


def _summary(
    spec: AdapterSpec,
    langs: list[str],
    params: Params,
    ctx: DistContext,
    base: ModelBundle,
    transformer: nn.Module,
    steps: int,
    wall_s: float,
) -> dict[str, Any]:
    """What ``summary.json`` records beside the per-language costs: arms are matched on steps,
    not compute, so wall time and trainable parameters go beside every comparison."""
    batch_size = params.train.batch_size
    tensors = [p for lang in langs for p in adapter_tensors(transformer)[lang]]
    trainable = sum(p.numel() for p in tensors)
    return {
        **dataclasses.asdict(spec),
        "arm": spec.arm,
        "name": spec.name,
        "base_model": base.name,
        "langs": langs,
        "schedule": params.adapters.schedule if spec.alpha is None else "hybrid",
        "steps_per_language": params.adapters.steps_per_language,
        "steps": steps,
        "batch_size": batch_size,
        "world_size": ctx.world_size,
        "device": str(ctx.device),
        "wall_s": wall_s,
        "steps_per_s": steps / wall_s,
        "examples_per_s": steps * batch_size / wall_s,
        "trainable_params": trainable,
        "trainable_bytes": sum(p.numel() * p.element_size() for p in tensors),
        "total_params": sum(p.numel() for p in base.model.parameters()) + trainable,
    }


def _per_language(
    out: Path, langs: list[str], transformer: nn.Module, batch_size: int
) -> dict[str, dict[str, Any]]:
    """Each adapter's parameters, bytes on disk, and the steps and seconds it trained in (from
    ``log.csv``, which survives resumes; a cross step counts for both of its languages)."""
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
            "bytes_on_disk": _adapter_bytes(out / ADAPTERS_DIR / lang),
            "steps": int(took_part.sum()),
            "wall_s": float(seconds[took_part].sum()),
        }
    return result


# --- Loading and routing ------------------------------------------------------------------------


def _adapter_bytes(folder: Path) -> int:
    """Bytes one saved LoRA takes on disk: its config and its weights."""
    return sum((folder / name).stat().st_size for name in ADAPTER_FILES)


def saved_adapter_langs(folder: str | os.PathLike[str]) -> list[str]:
    """The languages with a saved adapter under an arm folder's ``adapters/``."""
    root = Path(folder) / ADAPTERS_DIR
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root}: no adapters here; train them first (xlr.adapters.train_adapters, "
            "notebook 03) or point at an adapter arm's folder"
        )
    return sorted(path.parent.name for path in root.glob(f"*/{ADAPTER_FILES[0]}"))


def load_adapters(
    base: ModelBundle, folder: str | os.PathLike[str], langs: Sequence[str] | None = None
) -> ModelBundle:
    """A frozen copy of ``base`` with the adapters saved in ``folder`` (an arm folder), all of
    them or those of ``langs``; outputs match the trained model's exactly."""
    from peft import PeftModel

    root = Path(folder) / ADAPTERS_DIR
    available = saved_adapter_langs(folder)
    wanted = available if langs is None else [canonical_code(lang) for lang in langs]
    missing = [lang for lang in wanted if lang not in available]
    if missing or not wanted:
        raise FileNotFoundError(
            f"{root}: no adapter directory for {missing or 'any language'} (found "
            f"{available}); train those languages or drop them from langs"
        )
    model = copy.deepcopy(base.model)
    for param in model.parameters():
        param.requires_grad_(False)
    transformer = PeftModel.from_pretrained(
        model.text.transformer, root / wanted[0], adapter_name=wanted[0]
    )
    for lang in wanted[1:]:
        transformer.load_adapter(root / lang, adapter_name=lang)
    model.text.transformer = transformer
    return dataclasses.replace(base, model=model.eval())


class AdapterEncoder(ModelEncoder):
    """:class:`xlr.evaluate.Encoder` of the adapter arms: captions through their language's
    adapter, images through the frozen image tower.

    Languages without an adapter take ``fallback``: ``base`` (adapters off: the base model),
    ``nearest`` (the adapter of :func:`xlr.langs.nearest_language` among the trained ones) or
    ``average`` (the mean update of all adapters, see :func:`add_average_adapter`).
    :meth:`route` says which was used, for the results table. The encoder adds the derived
    ``average`` adapter to ``bundle``'s model (whatever the fallback, so the checkpoint hash
    does not depend on which encoders were built first) and freezes it.
    """

    def __init__(
        self,
        bundle: ModelBundle,
        fallback: Fallback = "base",
        device: str | torch.device = "cpu",
        batch_size: int = 256,
    ) -> None:
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
        transformer = bundle.model.text.transformer
        if not hasattr(transformer, "peft_config"):
            raise TypeError("the bundle's text tower has no adapters: use ModelEncoder for it")
        # Sorted: the ``cat`` factors stack in this order, and a reloaded model lists its
        # adapters in folder order, not training order.
        self.langs = sorted(name for name in transformer.peft_config if name != AVERAGE)
        add_average_adapter(transformer, self.langs)
        for param in bundle.model.parameters():
            param.requires_grad_(False)
        super().__init__(bundle, device, batch_size)
        self.fallback = fallback
        bundle.model.eval()

    @classmethod
    def from_folder(
        cls,
        base: ModelBundle,
        folder: str | os.PathLike[str],
        fallback: Fallback = "base",
        langs: Sequence[str] | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 256,
    ) -> AdapterEncoder:
        """The encoder of an adapter arm's folder (see :func:`load_adapters`) on ``base``."""
        return cls(load_adapters(base, folder, langs), fallback, device, batch_size)

    def route(self, lang: str) -> str:
        """Which text weights encode ``lang``: its adapter (``de``), ``base``, ``nearest:es``
        or ``average``."""
        code = canonical_code(lang)
        if code in self.langs:
            return code
        if self.fallback == "nearest":
            return f"nearest:{nearest_language(code, self.langs)}"
        return AVERAGE if self.fallback == "average" else BASE

    @contextlib.contextmanager
    def _routed(self, lang: str) -> Iterator[None]:
        transformer = self.bundle.model.text.transformer
        route = self.route(lang)
        if route == BASE:
            with transformer.disable_adapter():
                yield
            return
        transformer.set_adapter(route.removeprefix("nearest:"), inference_mode=True)
        yield

    @property
    def checkpoint(self) -> str:
        """Hash of the weights and adapters, plus the fallback: held-out languages' embeddings
        differ between fallbacks of the same weights."""
        return f"{super().checkpoint}-{self.fallback}"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "adapters": list(self.langs), "fallback": self.fallback}

    def encode_texts(self, texts: Sequence[str], lang: str) -> np.ndarray:
        """Captions of one language, through the adapter :meth:`route` picks for it."""
        with self._routed(lang):
            return encode_texts(
                self.bundle.model, self.bundle.tokenizer, texts, self.device, self.batch_size
            )


# --- Cost ---------------------------------------------------------------------------------------


def _saved_params(folder: Path) -> int:
    return sum(t.numel() for t in load_file(folder / ADAPTER_FILES[1]).values())


def adapter_costs(
    folder: str | os.PathLike[str],
    base: nn.Module,
    shared_lora_dir: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Trainable parameters and bytes on disk of an adapter arm, per language and in total,
    beside the alternatives of notebook 02 (DESIGN: report storage per language).

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
            "trainable_params": _saved_params(root / lang),
            "bytes_on_disk": _adapter_bytes(root / lang),
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
                "trainable_params": _saved_params(shared),
                "bytes_on_disk": _adapter_bytes(shared),
            }
        )
    table = pd.DataFrame(rows)
    full = int(table.loc[table["kind"] == "full_text_tower", "trainable_params"].iloc[0])
    return table.assign(vs_full=table["trainable_params"] / full)
