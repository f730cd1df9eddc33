"""The params YAML schema: one pydantic model per section, one loader.

Every notebook and the CLI validate their parameters here, so a typo in a params file fails at
the first cell with the file, the key and what is allowed, instead of an hour into training.
Sections: ``run``, ``data``, ``model``, ``train``, ``adapters``, ``eval``, ``report``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from xlr.data.laion_settings import LaionSection
from xlr.langs import UnknownLanguageError, canonical_code
from xlr.params_yaml import read_yaml

SYNTHETIC_LANGS: tuple[str, ...] = (
    "en", "de", "nl", "fr", "es", "it", "pt", "pl", "ru", "tr", "zh", "ja", "ar", "hi",
)  # fmt: skip

Unit = Annotated[float, Field(ge=0.0, le=1.0)]
OpenFraction = Annotated[float, Field(gt=0.0, lt=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]


class ParamsError(ValueError):
    """A params file (or mapping) that does not fit the schema; the message says where and how."""


class Section(BaseModel):
    """Base of every section: unknown keys and silent type coercion are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _named_alpha(alpha: float | None) -> float | None:
    """An alpha that an arm's name (``hybrid-a0.25-full``, six significant digits) keeps exactly,
    so two alphas never share a name and a folder."""
    if alpha is not None and float(f"{alpha:g}") != alpha:
        raise ValueError(f"alpha {alpha!r} needs more than six significant digits; round it")
    return alpha


def _language_list(codes: list[str]) -> list[str]:
    try:
        canonical = [canonical_code(c) for c in codes]
    except UnknownLanguageError as err:
        raise ValueError(str(err)) from None
    duplicates = sorted({c for c in canonical if canonical.count(c) > 1})
    if duplicates:
        raise ValueError(f"languages listed twice: {', '.join(duplicates)}")
    return canonical


class RunSection(Section):
    """Identity and bookkeeping of one study run."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    seeds: Annotated[list[int], Field(min_length=1)] = [0]
    base_seeds: Annotated[list[int], Field(min_length=1)] = [0]
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: PositiveInt | None = None
    # processes that pretrain bases and train arms side by side (xlr.workers); 2 on 2 CPU cores
    # trains about 1.5x faster than 1. Changing it changes results in the last digits.
    workers: PositiveInt = 1
    runs_dir: str = "runs"
    reports_dir: str = "reports"
    cache_dir: str = "runs/cache"


class NoiseSection(Section):
    """Web-like alt-text noise in the generated corpus."""

    mismatch: Unit = 0.05  # caption of another image
    truncate: Unit = 0.05  # alt-text cut short mid-phrase
    boilerplate: Unit = 0.05  # file names, "stock photo", shouting case


class SyntheticSection(Section):
    """The embedded default: a generated multilingual corpus in LAION's formats.

    ``eval_images`` and ``val_images`` (default: as many as ``eval_images``) are held-out
    compositions, one image each; ``pretrain_langs`` (default: every language of ``langs``) are
    the languages of the image-text pretraining pool, so a language can be absent from it and
    still be captioned in fine-tuning, validation and evaluation.
    """

    seed: int = 0
    langs: list[str] = list(SYNTHETIC_LANGS)
    pretrain_langs: list[str] | None = None
    image_size: Annotated[int, Field(ge=16, le=128)] = 32
    pretrain_images: PositiveInt = 20000
    finetune_images: PositiveInt = 2000
    eval_images: PositiveInt = 300
    val_images: PositiveInt | None = None
    captions_per_image: Annotated[int, Field(ge=1, le=4)] = 2  # one per caption template
    shard_size: PositiveInt = 1000
    mix: Literal["laion", "uniform"] = "laion"
    noise: NoiseSection = NoiseSection()

    _langs = field_validator("langs", "pretrain_langs")(
        classmethod(lambda cls, v: v if v is None else _language_list(v))
    )

    @model_validator(mode="after")
    def _pretrain_langs_in_corpus(self) -> SyntheticSection:
        if self.pretrain_langs is not None:
            if not self.pretrain_langs:
                raise ValueError(
                    "data.synthetic.pretrain_langs is empty; list at least one language (or "
                    "leave it out to pretrain on every language of data.synthetic.langs)"
                )
            missing = sorted(set(self.pretrain_langs) - set(self.langs))
            if missing:
                raise ValueError(
                    f"data.synthetic.pretrain_langs has {', '.join(missing)}, not in "
                    f"data.synthetic.langs ({', '.join(self.langs)}); add them there or drop them"
                )
        return self

    @property
    def pretraining_langs(self) -> list[str]:
        """The languages of the image-text pretraining pool, in ``langs`` order."""
        chosen = self.langs if self.pretrain_langs is None else self.pretrain_langs
        return [lang for lang in self.langs if lang in chosen]

    @property
    def validation_images(self) -> int:
        """Images in the validation pool: ``val_images``, else as many as ``eval_images``."""
        return self.eval_images if self.val_images is None else self.val_images


class DataSection(Section):
    """Where training pairs and evaluation sets come from, and which languages are seen."""

    source: Literal["synthetic", "laion"] = "synthetic"
    train_langs: Annotated[list[str], Field(min_length=1)]
    heldout_langs: list[str] = []
    synthetic: SyntheticSection = SyntheticSection()
    laion: LaionSection | None = None
    benchmark_root: str = "data/benchmarks"  # holds xtd10/, xm3600/, multi30k/ as published
    # image folders not in <benchmark_root>/<name>/images; left out of dumps (and hashes) if empty
    benchmark_images: dict[Literal["xtd10", "xm3600", "multi30k"], str] = Field(
        default={}, exclude_if=lambda folders: not folders
    )

    _langs = field_validator("train_langs", "heldout_langs")(
        classmethod(lambda cls, v: _language_list(v))
    )

    @model_validator(mode="after")
    def _groups_disjoint_and_available(self) -> DataSection:
        both = sorted(set(self.train_langs) & set(self.heldout_langs))
        if both:
            raise ValueError(
                f"languages both seen and held out: {', '.join(both)}; "
                "remove each from data.train_langs or data.heldout_langs"
            )
        if self.source == "laion" and self.laion is None:
            raise ValueError("data.source 'laion' needs a data.laion section naming the metadata")
        quotas = self.laion.quotas if self.laion is not None else None
        sampled = (quotas.counts or quotas.shares or {}) if quotas is not None else {}
        unseen = sorted(set(sampled) - set(self.train_langs))
        if unseen:  # the pool keeps seen languages' images only (img2dataset_shards.pool_language)
            raise ValueError(
                f"data.laion.quotas samples {', '.join(unseen)}, not in data.train_langs: "
                "the pool keeps the seen languages' images only, so those downloads would be "
                "wasted; add them to data.train_langs or remove their quotas"
            )
        if self.source == "synthetic":
            missing = sorted(set(self.train_langs + self.heldout_langs) - set(self.synthetic.langs))
            if missing:
                raise ValueError(
                    f"languages not in the generated corpus: {', '.join(missing)}; "
                    f"data.synthetic.langs has {', '.join(self.synthetic.langs)}"
                )
        return self


class TinyModelSection(Section):
    """The offline stand-in for xlm-roberta-base-ViT-B-32: same architecture family, tiny."""

    embed_dim: PositiveInt = 64
    vision_width: PositiveInt = 64
    vision_layers: PositiveInt = 2
    vision_heads: PositiveInt = 2
    patch_size: PositiveInt = 8
    text_hidden: PositiveInt = 64
    text_layers: PositiveInt = 2
    text_heads: PositiveInt = 2
    text_intermediate: PositiveInt = 128
    context_length: Annotated[int, Field(ge=8, le=512)] = 32
    vocab_size: Annotated[int, Field(ge=256)] = 4000
    pretrain_steps: PositiveInt = 1500
    pretrain_batch_size: PositiveInt = 128
    pretrain_lr: Annotated[float, Field(gt=0)] = 2e-3
    pretrain_warmup: Annotated[int, Field(ge=0)] = 100

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyModelSection:
        for width, heads, key in (
            (self.vision_width, self.vision_heads, "vision"),
            (self.text_hidden, self.text_heads, "text"),
        ):
            if width % heads:
                raise ValueError(
                    f"model.tiny.{key} width {width} is not divisible by {heads} heads"
                )
        return self


class ModelSection(Section):
    """Which CLIP: a real open_clip model and pretrained tag, or the tiny offline stand-in."""

    kind: Literal["tiny", "open_clip"] = "tiny"
    name: str = "xlm-roberta-base-ViT-B-32"
    pretrained: str | None = "laion5b_s13b_b90k"
    tiny: TinyModelSection = TinyModelSection()


ArmName = Literal["zeroshot", "mono", "cross", "multi", "hybrid"]  # the arms of train.arms
Trainable = Literal["full", "lora"]  # what a shared arm trains: the text tower or one LoRA
Fallback = Literal["base", "nearest", "average"]  # held-out languages' route in 03
RateKey = Literal[  # an arm family that trains, as train.rates names it (xlr.arms.Arm.rate_key)
    "mono-full", "cross-full", "multi-full", "hybrid-full", "mono-lora", "cross-lora",
    "multi-lora", "hybrid-lora", "adapters", "adapters_hybrid",
]  # fmt: skip


class LoraSection(Section):
    """A LoRA on the text tower (shared in 02, one per language in 03).

    ``target_modules`` name linear layers inside the XLM-R transformer (peft's suffix match:
    ``query``, ``value``, ``key``, ``dense``...); ``ffn`` adds every layer's feed-forward pair
    (``intermediate.dense``, ``output.dense``) and ``projection`` the text projection's linear
    layers (``text.proj``), the part of the text tower open_clip adds on top of XLM-R.
    """

    r: PositiveInt = 8
    alpha: Annotated[float, Field(gt=0)] = 16.0
    dropout: Unit = 0.0
    target_modules: Annotated[list[str], Field(min_length=1)] = ["query", "value"]
    ffn: bool = False
    projection: bool = False
    # LoRA's B factor starts at zero, so it needs a larger step than full fine-tuning to move
    # in the same number of steps; LoRA arms use this instead of train.lr
    lr: Annotated[float, Field(gt=0)] = 1e-3


class TuneSection(Section):
    """Learning rates tried on the validation split before the arms train (``xlr tune``,
    notebook 02): one list per kind of training (full, shared LoRA, adapters), empty to keep the
    configured rate. Every arm family of that kind (mono, cross, multi, hybrid at the headline
    alpha; adapters, adapters_hybrid) is tuned on its own, at the first base and at ``seed``, and
    the rate with the best ``measure`` on validation becomes its ``train.rates`` entry: a rate
    tuned for one family alone would favour it in the claims. The test split is never read.

    ``seed`` is a fine-tuning seed of the trials' own, none of ``run.seeds``: a trial at a study
    seed would share its batches, initialisation and dropout with that seed's arm, so the rate
    chosen for its luck on validation would carry that luck into its test results."""

    full: list[Annotated[float, Field(gt=0)]] = []
    lora: list[Annotated[float, Field(gt=0)]] = []
    adapters: list[Annotated[float, Field(gt=0)]] = []
    measure: Literal["multilingual mAP", "t2i R@1"] = "multilingual mAP"
    seed: Annotated[int, Field(ge=0)] = 1000


class TrainSection(Section):
    """Fine-tuning arms of notebook 02 and the loop they share with notebook 03."""

    arms: Annotated[list[ArmName], Field(min_length=1)] = ["zeroshot", "mono", "cross", "hybrid"]
    alphas: Annotated[list[Unit], Field(min_length=1)] = [0.5]
    _alphas = field_validator("alphas")(classmethod(lambda cls, v: [_named_alpha(a) for a in v]))
    tau: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    trainable: Annotated[list[Trainable], Field(min_length=1)] = ["full"]
    steps: PositiveInt = 200
    batch_size: Annotated[int, Field(ge=2)] = 64
    lr: Annotated[float, Field(gt=0)] = 5e-4
    warmup: Annotated[int, Field(ge=0)] = 20
    weight_decay: Annotated[float, Field(ge=0)] = 0.1
    lambda_tt: Annotated[float, Field(ge=0)] = 1.0
    grad_clip: Annotated[float, Field(gt=0)] | None = 1.0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # fp16: CUDA, GradScaler (loop)
    loader_workers: Annotated[int, Field(ge=0)] = 2  # input pipeline (xlr.train.inputs)
    cache_image_features: bool = Field(default=False, exclude_if=lambda v: not v)  # image_cache
    checkpoint_every: PositiveInt = 100
    # one policy for every arm (full, shared LoRA, per-language adapters): the loss temperature
    # trains or stays at the base's value; it changes no embedding, only the training signal
    logit_scale: Literal["train", "lock"] = "train"
    lora: LoraSection = LoraSection()
    tune: TuneSection = TuneSection()
    # what tuning chose per arm family (xlr.tuning; a hand-set hybrid-full leaves lr, every
    # scale's rate, alone); an arm without one trains at its kind's configured rate: Arm.lr
    rates: dict[RateKey, Annotated[float, Field(gt=0)]] = Field({}, exclude_if=lambda v: not v)


class AdaptersSection(Section):
    """Language-specific LoRA adapters of notebook 03.

    They train on the budget of every arm, ``train.steps`` batches of ``train.batch_size``
    examples, split across the training languages in the shared arms' mix, p(l) proportional to
    n_l ** ``train.tau`` (:func:`xlr.train.adapters.language_steps`).
    """

    enabled: bool = True
    lora: LoraSection = LoraSection()
    schedule: Literal["sequential", "interleaved"] = "sequential"
    fallbacks: Annotated[list[Fallback], Field(min_length=1)] = list(get_args(Fallback))
    # alpha of the combined adapters_hybrid arm (per-language adapters, hybrid batches); null: off
    hybrid_alpha: Unit | None = 0.5
    _alpha = field_validator("hybrid_alpha")(classmethod(lambda cls, v: _named_alpha(v)))


class EvalSection(Section):
    """Retrieval evaluation of notebook 04."""

    benchmarks: Annotated[
        list[Literal["synthetic", "xtd10", "xm3600", "multi30k"]], Field(min_length=1)
    ] = ["synthetic"]
    tasks: Annotated[
        list[Literal["t2i", "i2t", "xt2t", "paraphrase", "multilingual"]], Field(min_length=1)
    ] = ["t2i", "i2t", "xt2t", "multilingual"]
    captions: Literal["all", "first"] = "all"
    recall_at: Annotated[list[PositiveInt], Field(min_length=1)] = [1, 5, 10]
    batch_size: PositiveInt = 256
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # encoders' autocast (runtime)
    confidence: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.95
    # The positive control's doses shown beside 0 and the one it is judged at (2), both always
    # planted: multiples of the zero-shot model's median translation distance planted in the
    # first seen language, each a ranking of the validation set's multilingual pools
    # (xlr.eval.planted.control_doses)
    control_doses: Annotated[
        list[Annotated[float, Field(ge=0.0, le=100.0)]], Field(max_length=16)
    ] = [0.5, 1.0, 4.0]


class MinEffectSection(Section):
    """The smallest effect worth a verdict (xlr.analysis.claims): *supported* needs the whole
    interval beyond it, *equivalent* the whole interval within +-it; at 0 any difference would
    count. R@1 and mAP are fractions, so theirs are absolute (0.01: one point); rank distance
    grows with the pool, so its is relative (0.1: the effect a / b - 1 beyond 10%, judged by the
    tests of a - 0.9 b and a - 1.1 b: xlr.analysis.verdicts.relative_verdict)."""

    recall_at_1: OpenFraction = 0.01
    map: OpenFraction = 0.01
    rank_distance: OpenFraction = 0.1


FigureFormat = Literal["png", "svg", "pdf"]


class ReportSection(Section):
    """Figure formats of notebooks 05 and 06, whether failed controls stop the study, and the
    claims' minimum effects (every notebook's report is exported with and without code)."""

    figure_formats: Annotated[list[FigureFormat], Field(min_length=1)] = [
        "png", "svg",
    ]  # fmt: skip
    # stop notebook 05 when a control fails: the world does not show the phenomenon
    # (xlr.analysis.phenomenon) or the bias measure misses a planted bias (positive control)
    require_controls: bool = False
    min_effect: MinEffectSection = MinEffectSection()


class Params(Section):
    """A whole params file."""

    run: RunSection
    data: DataSection
    model: ModelSection = ModelSection()
    train: TrainSection = TrainSection()
    adapters: AdaptersSection = AdaptersSection()
    eval: EvalSection = EvalSection()
    report: ReportSection = ReportSection()

    @model_validator(mode="after")
    def _cross_section(self) -> Params:
        if self.model.kind == "tiny" and self.data.source != "synthetic":
            raise ValueError(
                "model.kind 'tiny' is pretrained on the generated corpus and needs "
                "data.source 'synthetic'; use model.kind 'open_clip' for LAION data"
            )
        if "synthetic" in self.eval.benchmarks and self.data.source != "synthetic":
            raise ValueError(
                "eval.benchmarks 'synthetic' is the generated held-out split; it needs "
                "data.source 'synthetic'"
            )
        if {"cross", "hybrid", "multi"} & set(self.train.arms) and len(self.data.train_langs) < 2:
            raise ValueError("cross, multi and hybrid arms need at least two data.train_langs")
        paired = [arm for arm in ("cross", "multi", "hybrid") if arm in self.train.arms]
        paired += ["adapters_hybrid"] if self.adapters.hybrid_alpha is not None else []
        # LAION's only parallel pairs are X-en, through ENG TEXT (xlr.train.pairs); the pool's
        # own pair graph is checked again when it is known
        laion = self.data.laion if self.data.source == "laion" else None  # translate: all pairs
        if laion and paired and "en" not in self.data.train_langs and not laion.translate:
            raise ValueError(
                f"arms {', '.join(paired)} draw language pairs with parallel captions, and LAION "
                "pairs a caption only with its English translation (ENG TEXT), so data.train_langs "
                f"{self.data.train_langs} give none: add 'en' to data.train_langs, set "
                "data.laion.translate, or drop those arms (train.arms; adapters.hybrid_alpha: null)"
            )
        if self.train.tune.seed in self.run.seeds:
            raise ValueError(
                f"train.tune.seed {self.train.tune.seed} is one of run.seeds {self.run.seeds}: "
                "the learning-rate trials need a seed no arm of the study trains at (their luck "
                "on validation would pick the rate for that arm); choose another train.tune.seed"
            )
        self._adapters_match_the_shared_lora()
        return self

    def _adapters_match_the_shared_lora(self) -> None:
        """The adapters train on the budget of every arm, split across the training languages,
        and are compared with the shared LoRA of the same shape: the two LoRA sections may
        differ in learning rate only."""
        if not (self.adapters.enabled or self.adapters.hybrid_alpha is not None):
            return
        if self.train.steps < len(self.data.train_langs):
            raise ValueError(
                f"train.steps {self.train.steps} cannot give each of the "
                f"{len(self.data.train_langs)} training languages' adapters a step"
            )
        if "lora" not in self.train.trainable:
            return
        shared = self.train.lora.model_dump(exclude={"lr"})
        per_language = self.adapters.lora.model_dump(exclude={"lr"})
        differ = sorted(k for k in shared if shared[k] != per_language[k])
        if differ:
            raise ValueError(
                f"adapters.lora and train.lora differ in {differ}; the adapters are compared "
                "with the shared LoRA of the same shape, so set them alike (only lr may differ)"
            )

    def section_hash(self, *sections: str) -> str:
        """Short stable hash of some sections (cache keys: same config, same artifact)."""
        return config_hash(*(getattr(self, name) for name in sections))

    def weights_hash(self, *sections: str) -> str:
        """:meth:`section_hash` less ``train.tune``, ``train.rates`` (an arm's run adds its own
        rate: one family's retuned rate must not retrain the others) and the loader's workers
        (speed only): what an arm trained at a given rate is (its checkpoint's identity)."""
        speed_only = {"tune", "loader_workers", "rates"}
        parts = [
            self.train.model_dump(mode="json", exclude=speed_only) if name == "train"
            else getattr(self, name)
            for name in sections
        ]  # fmt: skip
        return config_hash(*parts)


def config_hash(*parts: object) -> str:
    """Short stable hash of config sections and plain values, for cache keys."""
    payload = [p.model_dump(mode="json") if isinstance(p, BaseModel) else p for p in parts]
    blob = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: {err.error_count()} invalid parameter(s)"]
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key; check its spelling and section (see xlr/config.py)"
        elif "input" in item and item["type"] != "missing" and not isinstance(item["input"], dict):
            message = f"{message} (got {item['input']!r})"
            if isinstance(item["input"], bool) and item["type"] == "string_type":
                # YAML 1.1 reads no, yes, on, off (Norwegian's code among them) as booleans
                message += "; YAML read a word (no, yes, on, off) as true/false: quote it"
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


def parse_params(raw: Any, source: str = "<params>") -> Params:
    """Validate a mapping (a parsed YAML file, or a notebook's parameter dict)."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(_format_errors(err, source)) from None


def load_params(path: str | os.PathLike[str]) -> Params:
    """Read and validate one params YAML file."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: no such params file (see params/ for the shipped ones)")
    try:
        raw = read_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    return parse_params(raw, str(path))
