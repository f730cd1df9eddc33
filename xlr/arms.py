"""The study's arms as values: what an arm is, its name, its folder, and which arms a study has.

An arm used to be a string (``hybrid-a0.5-full``) built and re-parsed wherever it was needed;
now :class:`Arm` alone formats and parses names and folder paths, so a new arm kind or a change
of naming touches this module only. Results tables still carry the name (the ``arm`` column),
which :meth:`Arm.parse` turns back into the value.

Names::

    zeroshot                        the base model itself
    mono-full, cross-lora           a batch strategy, what trains (full text tower | shared LoRA)
    hybrid-a0.5-full                hybrid batches with alpha = 0.5 (share of mono steps)
    adapters, adapters_hybrid-a0.5  per-language adapters (their training folder)
    adapters-nearest                the adapters evaluated with a held-out fallback

An arm's folder is ``<runs_dir>/<run.name>/arms/<name>/base<b>[/seed<k>]``; an evaluated adapter
arm lives in the folder of its trained adapters (the name without the fallback).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple, get_args

import numpy as np
import pandas as pd

from xlr.config import Fallback, Params, Trainable
from xlr.paths import resolve_path

Family = Literal["zeroshot", "mono", "cross", "multi", "hybrid", "adapters", "adapters_hybrid"]
Trained = Literal["full", "lora", "adapters"]
FAMILIES: tuple[str, ...] = get_args(Family)
TRAINABLE: tuple[str, ...] = get_args(Trainable)
FALLBACKS: tuple[str, ...] = get_args(Fallback)
ADAPTER_FAMILIES: tuple[str, ...] = ("adapters", "adapters_hybrid")
ALPHA_FAMILIES: tuple[str, ...] = ("hybrid", "adapters_hybrid")
SWEEP_FAMILIES: tuple[str, ...] = ("mono", "cross", "hybrid")  # the alpha axis: 1, 0, between
HEADLINE_ALPHA = 0.5  # the paper's alpha: the headline hybrid arm when the sweep has it
FALLBACK_PREFERENCE: tuple[str, ...] = ("nearest", "average", "base")  # the headline adapters'

# The layout of an arm's folder, written by training (02, 03) and read by evaluation (04).
MODEL_DIR = "model"  # the fine-tuned CLIP as an open_clip model folder (a LoRA merged in)
LORA_DIR = "lora"  # a shared LoRA alone (peft save_pretrained)
ADAPTERS_DIR = "adapters"  # per-language adapters: adapters/<lang>/adapter_model.safetensors
SUMMARY_FILE = "summary.json"  # written last: its presence means the arm is complete
IDENTITY_KEY = "identity"  # in summary.json: which run finished (RunFolder.identity)
LOG_CSV = "log.csv"  # one row per training step

# family, then ``-a<alpha>`` (as ``:g`` prints it, exponent included), then ``-<variant>``
_NAME = re.compile(
    r"(?P<family>[a-z_]+)(?:-a(?P<alpha>[0-9.]+(?:e[+-]?\d+)?))?(?:-(?P<variant>[a-z]+))?"
)


@dataclass(frozen=True)
class Arm:
    """One arm of the study, optionally pinned to a base and a fine-tuning seed.

    ``family`` is the batch schedule (or ``zeroshot``, or the adapters); ``alpha`` the share of
    mono steps of the hybrid families; ``trained`` what changes (``full`` text tower, one shared
    ``lora``, or per-language ``adapters``, implied by the adapter families); ``fallback`` the
    route of held-out languages of an evaluated adapter arm. ``base_seed`` and ``seed`` say which
    model of the arm: the zero-shot arm has a base and no seed.
    """

    family: Family
    alpha: float | None = None
    trained: Trained | None = None
    fallback: Fallback | None = None
    base_seed: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown arm family {self.family!r}; one of {FAMILIES}")
        adapters = self.family in ADAPTER_FAMILIES
        if adapters and self.trained is None:
            object.__setattr__(self, "trained", "adapters")
        expected = (
            (None,) if self.family == "zeroshot" else ("adapters",) if adapters else TRAINABLE
        )
        if self.trained not in expected:
            raise ValueError(f"arm {self.family!r} trains {expected}, got {self.trained!r}")
        if (self.family in ALPHA_FAMILIES) != (self.alpha is not None):
            raise ValueError(
                f"alpha belongs to the {ALPHA_FAMILIES} arms only; {self.family!r} got "
                f"alpha={self.alpha}"
            )
        if self.alpha is not None and not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha is the share of mono steps, in [0, 1]; got {self.alpha}")
        if self.fallback is not None and (not adapters or self.fallback not in FALLBACKS):
            raise ValueError(
                f"a fallback ({FALLBACKS}) belongs to the adapter arms only; {self.family!r} got "
                f"{self.fallback!r}"
            )
        if self.family == "zeroshot" and self.seed is not None:
            raise ValueError("the 'zeroshot' arm is the base itself: it has no fine-tuning seed")

    # --- names ---------------------------------------------------------------------------------

    @property
    def family_name(self) -> str:
        """The family with its alpha: ``hybrid-a0.5``, ``adapters``, ``mono`` (figures colour
        arms by it)."""
        return self.family if self.alpha is None else f"{self.family}-a{self.alpha:g}"

    @property
    def variant(self) -> str:
        """What distinguishes arms of one family: ``full``/``lora``, the adapters' fallback, or
        ``""`` (``zeroshot``, an adapter arm's training folder)."""
        if self.family in ADAPTER_FAMILIES:
            return self.fallback or ""
        return self.trained or ""

    @property
    def name(self) -> str:
        """The arm's name in folders and results tables (see the module docstring)."""
        return "-".join(part for part in (self.family_name, self.variant) if part)

    @property
    def rate_key(self) -> str:
        """The arm's family as ``train.rates`` names it (``hybrid-full``, ``mono-lora``,
        ``adapters``, ``adapters_hybrid``): an alpha sweep and the adapters' fallbacks share
        their family's tuned rate."""
        if self.trained is None:
            raise ValueError("the 'zeroshot' arm trains nothing: it has no learning rate")
        return self.family if self.trained == "adapters" else f"{self.family}-{self.trained}"

    def lr(self, params: Params) -> float:
        """The rate the arm's weights train at: its family's tuned rate (``train.rates``,
        :mod:`xlr.tuning`) where tuning chose one, else the configured rate of what it trains
        (``train.lr``, ``train.lora.lr``, ``adapters.lora.lr``)."""
        train, key = params.train, self.rate_key  # refuses the zero-shot arm
        configured: dict[str | None, float] = {
            "full": train.lr, "lora": train.lora.lr, "adapters": params.adapters.lora.lr,
        }  # fmt: skip
        return train.rates.get(key, configured[self.trained])  # type: ignore[call-overload]

    @classmethod
    def parse(cls, name: str) -> Arm:
        """The arm a name stands for (no base or seed): the inverse of :attr:`name`."""
        match = _NAME.fullmatch(name)
        if match is None or match["family"] not in FAMILIES:
            raise ValueError(f"{name!r} is not an arm name (see xlr.arms)")
        family, variant = match["family"], match["variant"]
        alpha = None if match["alpha"] is None else float(match["alpha"])
        adapters = family in ADAPTER_FAMILIES
        try:
            arm = cls(
                family,  # type: ignore[arg-type]
                alpha,
                trained=None if adapters else variant,  # type: ignore[arg-type]
                fallback=variant if adapters else None,  # type: ignore[arg-type]
            )
        except ValueError as err:
            raise ValueError(f"{name!r} is not an arm name: {err}") from err
        if arm.name != name:
            raise ValueError(f"{name!r} is not an arm name; did you mean {arm.name!r}?")
        return arm

    def __str__(self) -> str:
        return self.name

    # --- what the arm is -------------------------------------------------------------------------

    @property
    def is_trained(self) -> bool:
        """Every arm but ``zeroshot`` fine-tunes something."""
        return self.family != "zeroshot"

    @property
    def is_adapters(self) -> bool:
        """Per-language adapters (``adapters``, ``adapters_hybrid``)."""
        return self.family in ADAPTER_FAMILIES

    @property
    def strategy(self) -> str:
        """The batch strategy it trains with (:mod:`xlr.train.batching`): the adapters train on
        ``mono`` batches, the combined arm on ``hybrid`` ones."""
        if not self.is_trained:
            raise ValueError("the 'zeroshot' arm is not trained and has no batch strategy")
        return {"adapters": "mono", "adapters_hybrid": "hybrid"}.get(self.family, self.family)

    @property
    def sweep_alpha(self) -> float | None:
        """Its place on the alpha axis of the hybrid sweep: mono = 1, cross = 0, hybrid alpha;
        None for arms off the axis."""
        return {"mono": 1.0, "cross": 0.0}.get(self.family, self.alpha)

    # --- which model of the arm -----------------------------------------------------------------

    def at(self, base_seed: int | None, seed: int | None = None) -> Arm:
        """This arm's model for ``base_seed`` (and fine-tuning ``seed``); ``at(None)`` is the
        arm itself, of no particular base."""
        return dataclasses.replace(self, base_seed=base_seed, seed=seed)

    @property
    def stream_seed(self) -> int:
        """The seed of this fine-tuning run's random streams (batch order, LoRA initialisation,
        dropout), drawn from (``base_seed``, ``seed``): seed k of one base shares nothing with
        seed k of another. The claims' intervals take seeds as nested in bases, their noise
        independent from base to base (:mod:`xlr.analysis.stats`); seeding by ``seed`` alone had
        crossed them, every base drawing the same batches in the same order, and on the
        synthetic study 8 of 14 claims had seed 0 above seed 1 (or below) in all three bases,
        where independent seeds do that 1 time in 4."""
        if self.base_seed is None or self.seed is None:
            raise ValueError(f"arm {self.name}: a fine-tuning run needs its base seed and seed")
        return int(np.random.SeedSequence([self.base_seed, self.seed]).generate_state(1)[0])

    def with_fallback(self, fallback: Fallback | None) -> Arm:
        """An adapter arm as evaluated with ``fallback`` (None: its training folder)."""
        return dataclasses.replace(self, fallback=fallback)

    def evaluated(self, params: Params) -> list[Arm]:
        """The arms results are filed under: an adapter arm once per ``adapters.fallbacks``."""
        if self.is_adapters and self.fallback is None:
            return [self.with_fallback(f) for f in params.adapters.fallbacks]
        return [self]

    # --- folders --------------------------------------------------------------------------------

    def directory(self, params: Params) -> Path:
        """``<runs_dir>/<run.name>/arms/<name>/base<b>[/seed<k>]``: where this model lives (an
        evaluated adapter arm: its training folder)."""
        if self.base_seed is None or (self.is_trained and self.seed is None):
            raise ValueError(
                f"arm {self.name}: a folder needs the base seed (and a trained arm's seed)"
            )
        folder = arms_dir(params) / self.with_fallback(None).name / f"base{self.base_seed}"
        return folder if self.seed is None else folder / f"seed{self.seed}"

    def model_dir(self, params: Params) -> Path:
        """The fine-tuned model folder of a shared arm (:data:`MODEL_DIR`)."""
        return self.directory(params) / MODEL_DIR

    def lora_dir(self, params: Params) -> Path:
        """The shared LoRA of a ``lora`` arm (:data:`LORA_DIR`)."""
        if self.trained != "lora":
            raise ValueError(f"arm {self.name} trains no shared LoRA")
        return self.directory(params) / LORA_DIR


ZEROSHOT = Arm("zeroshot")


def arms_dir(params: Params) -> Path:
    """``<runs_dir>/<run.name>/arms``: every arm's folder is below it."""
    return resolve_path(params.run.runs_dir) / params.run.name / "arms"


def shared_arms(params: Params) -> list[Arm]:
    """Every model of ``train.arms``, base by base: ``zeroshot`` once per base, then each
    trained arm (``hybrid`` once per alpha) x ``train.trainable`` x ``run.seeds``."""
    train, arms = params.train, []
    for base_seed in params.run.base_seeds:
        if "zeroshot" in train.arms:
            arms.append(ZEROSHOT.at(base_seed))
        for family in (a for a in train.arms if a != "zeroshot"):
            alphas = dict.fromkeys(train.alphas) if family == "hybrid" else [None]
            for alpha in alphas:
                for trained in train.trainable:
                    arm = Arm(family, alpha, trained)
                    arms += [arm.at(base_seed, seed) for seed in params.run.seeds]
    return arms


def adapter_arms(params: Params) -> list[Arm]:
    """Every adapter model, base by base: ``adapters`` when ``adapters.enabled``, and
    ``adapters_hybrid`` at ``adapters.hybrid_alpha`` unless null (one alpha: the combined arm
    asks whether the two ideas add up, not which alpha is best)."""
    arms = [Arm("adapters")] if params.adapters.enabled else []
    if params.adapters.hybrid_alpha is not None:
        arms.append(Arm("adapters_hybrid", params.adapters.hybrid_alpha))
    return [
        arm.at(base_seed, seed)
        for base_seed in params.run.base_seeds
        for arm in arms
        for seed in params.run.seeds
    ]


def study_arms(params: Params) -> list[Arm]:
    """Every model the study evaluates, in the study's order: notebook 02's, then 03's."""
    return [*shared_arms(params), *adapter_arms(params)]


def trained_arms(params: Params) -> list[Arm]:
    """Every model that fine-tunes (all but ``zeroshot``), 02's then 03's."""
    return [arm for arm in study_arms(params) if arm.is_trained]


def mono_batch_arms(params: Params) -> list[Arm]:
    """The trained arms (no base or seed, each once) some of whose batches are ``mono``: the
    mono arm, hybrid at an alpha above 0, the adapters and the combined arm."""
    arms = (arm.at(None) for arm in trained_arms(params))
    return [
        arm
        for arm in dict.fromkeys(arms)
        if arm.strategy == "mono" or (arm.strategy == "hybrid" and (arm.alpha or 0) > 0)
    ]


def evaluated_arms(params: Params) -> list[Arm]:
    """The arms results are filed under (no base or seed), in study order, each once."""
    arms = (e.at(None) for arm in study_arms(params) for e in arm.evaluated(params))
    return list(dict.fromkeys(arms))


def evaluated_names(params: Params) -> list[str]:
    """The names results are filed under, in study order, each once."""
    return [arm.name for arm in evaluated_arms(params)]


class HeadlineArms(NamedTuple):
    """The arms the claims are about (None where the study has none): the headline hybrid arm,
    the adapters, the hybrid arm with a shared LoRA, which the adapters are compared with
    (same rank, targets and budget: :class:`xlr.config.Params` checks the shape), and the
    adapters trained with hybrid batches (same fallback as ``adapters``)."""

    hybrid: Arm | None
    adapters: Arm | None
    shared_lora: Arm | None = None
    adapters_hybrid: Arm | None = None


def headline_arms(params: Params) -> HeadlineArms:
    """The hybrid arm at alpha 0.5 (the paper's) when swept, else the middle alpha, full text
    tower when trained, else LoRA; the ``adapters`` arm with the first of ``nearest``,
    ``average``, ``base`` among ``adapters.fallbacks``; the hybrid arm at that alpha with a
    shared LoRA (the adapters' comparison, reported as not run when the study trains none); the
    ``adapters_hybrid`` arm at ``adapters.hybrid_alpha`` with the adapters' fallback."""
    hybrid = shared_lora = None
    if "hybrid" in params.train.arms:
        alphas = sorted(set(params.train.alphas))
        alpha = HEADLINE_ALPHA if HEADLINE_ALPHA in alphas else alphas[len(alphas) // 2]
        trained = next(t for t in TRAINABLE if t in params.train.trainable)  # full first
        hybrid = Arm("hybrid", alpha, trained)
        shared_lora = Arm("hybrid", alpha, "lora")  # named even when not trained: "not run"
    adapters = adapters_hybrid = None
    fallback = next(f for f in FALLBACK_PREFERENCE if f in params.adapters.fallbacks)
    if params.adapters.enabled:
        adapters = Arm("adapters", fallback=fallback)  # type: ignore[arg-type]
    if params.adapters.hybrid_alpha is not None:
        adapters_hybrid = Arm(
            "adapters_hybrid",
            params.adapters.hybrid_alpha,
            fallback=fallback,  # type: ignore[arg-type]
        )
    return HeadlineArms(hybrid, adapters, shared_lora, adapters_hybrid)


def arm_catalogue(params: Params) -> pd.DataFrame:
    """One row per evaluated arm name: family, alpha on the sweep axis (:attr:`Arm.sweep_alpha`),
    what trains, variant (for joining results with what each arm is)."""
    rows = []
    for arm in evaluated_arms(params):
        rows.append(
            {
                "arm": arm.name,
                "family": arm.family,
                "alpha": arm.sweep_alpha,
                "trained": arm.trained or "none",
                "variant": arm.variant,
            }
        )
    return pd.DataFrame(rows)
