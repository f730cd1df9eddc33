"""Training the study's arms for one params file (notebooks 02 and 03): bases, arms, their logs.

Notebooks 02 and 03 call these instead of looping themselves, so the loop (which arms, which
base, skip what is finished) is written once and tested.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from xlr.arms import (
    IDENTITY_KEY,
    LOG_CSV,
    SUMMARY_FILE,
    Arm,
    adapter_arms,
    shared_arms,
    trained_arms,
)
from xlr.config import Params
from xlr.data.imagetext import ImageTextSet
from xlr.data.prepare import ensure_corpus
from xlr.models.adapters import adapter_route, saved_adapter_langs
from xlr.models.bases import is_base_cached, load_base
from xlr.train.adapters import adapter_costs, train_adapters
from xlr.train.batching import PAIR_STRATEGIES, STRATEGIES, Batch
from xlr.train.finetune import arm_sampler, finished_summary, train_arm
from xlr.train.pairs import PairGraph, pair_graph
from xlr.train.pretrain import ensure_base_model, ensure_tokenizer
from xlr.workers import run_jobs


@dataclass(frozen=True)
class _BaseJob:
    """Pretrain one cached tiny base (a :func:`xlr.workers.run_jobs` job)."""

    params: Params
    base_seed: int
    progress: bool

    def __call__(self) -> Path:
        return ensure_base_model(self.params, self.base_seed, progress=self.progress)


@dataclass(frozen=True)
class _ArmJob:
    """Train one arm, or one adapter arm, from its base (a :func:`xlr.workers.run_jobs` job)."""

    params: Params
    arm: Arm
    pool: ImageTextSet
    progress: bool

    def __call__(self) -> None:
        ensure_arm(self.params, self.arm, self.pool, self.progress)


def ensure_arm(
    params: Params,
    arm: Arm,
    pool: ImageTextSet,
    progress: bool = True,
    out_dir: Path | None = None,
) -> Path:
    """Train ``arm`` (a fine-tuned or an adapter arm) from its base into ``out_dir`` (default
    :meth:`Arm.directory`) unless it has finished there, and return the folder. A finished
    arm's base is not loaded: for the real study each is a 1.4 GB model, read for nothing on
    every re-run of a notebook, of ``xlr train`` or of a tuning sweep."""
    out = arm.directory(params) if out_dir is None else out_dir
    if finished_summary(arm, pool, params, out) is None:
        train = train_adapters if arm.is_adapters else train_arm
        train(load_base(params, arm.base_seed), pool, params, arm, out, progress=progress)
    return out


def _base_jobs(params: Params, progress: bool) -> dict[int, _BaseJob]:
    """A pretraining job per tiny base of ``params`` not yet cached, by base seed.

    The corpus and the tokenizer are shared by every base, so they are built here, before any
    job runs; two workers building them at once would race for the same folders.
    """
    if params.model.kind != "tiny":
        return {}
    missing = [b for b in params.run.base_seeds if not is_base_cached(params, b)]
    if missing:
        ensure_tokenizer(params, ensure_corpus(params, progress))
    return {b: _BaseJob(params, b, progress and params.run.workers == 1) for b in missing}


def ensure_bases(params: Params, progress: bool = True) -> None:
    """Pretrain every tiny base of ``params`` not yet cached, ``run.workers`` at a time in
    one-thread workers (a no-op for a real open_clip model, which comes pretrained)."""
    jobs = list(_base_jobs(params, progress).values())
    run_jobs(jobs, params.run.workers, desc="bases", progress=progress)


def training_pairs(params: Params, pool: ImageTextSet) -> PairGraph:
    """The fine-tuning pool's :class:`~xlr.train.pairs.PairGraph` over ``data.train_langs`` at
    ``train.batch_size`` (notebook 02 shows it): the language pairs the cross, multi and hybrid
    batches draw, those they drop, and mono's paraphrase targets."""
    langs = params.data.train_langs
    captions = pool.captions[pool.captions["lang"].isin(langs)]
    return pair_graph(captions, langs, params.train.batch_size)


def _check_pairs(params: Params, pool: ImageTextSet, arms: list[Arm]) -> None:
    """Refuse, before the first arm trains, a pool that leaves a training language in no pair
    while some arm draws pairs; the error names those arms."""
    paired = list(dict.fromkeys(arm.name for arm in arms if arm.strategy in PAIR_STRATEGIES))
    if paired:
        training_pairs(params, pool).check(f"arms {', '.join(paired)}")


def _train_all(params: Params, pool: ImageTextSet, arms: list[Arm], progress: bool) -> pd.DataFrame:
    """Every missing base, then every arm, ``run.workers`` jobs at a time: an arm starts as
    soon as its own base is ready. Returns all summaries."""
    _check_pairs(params, pool, arms)
    bases = _base_jobs(params, progress)
    base_index = {b: i for i, b in enumerate(bases)}
    inline = progress and params.run.workers == 1
    jobs: list[_BaseJob | _ArmJob] = [*bases.values()]
    jobs += [_ArmJob(params, arm, pool, inline) for arm in arms]
    after = [None] * len(bases) + [base_index.get(arm.base_seed) for arm in arms]
    run_jobs(jobs, params.run.workers, desc="bases and arms", progress=progress, after=after)
    return arm_summaries(params, arms)


def train_arms(params: Params, pool: ImageTextSet, progress: bool = True) -> pd.DataFrame:
    """Train every arm of ``train.arms`` (finished ones are skipped, interrupted ones resume)
    and return one row of ``summary.json`` per trained model."""
    return _train_all(params, pool, [a for a in shared_arms(params) if a.is_trained], progress)


def train_adapter_arms(params: Params, pool: ImageTextSet, progress: bool = True) -> pd.DataFrame:
    """Train the language adapters (and the combined adapters_hybrid arm) of ``params``;
    one row of ``summary.json`` per trained model."""
    return _train_all(params, pool, adapter_arms(params), progress)


def arm_summaries(params: Params, arms: list[Arm] | None = None) -> pd.DataFrame:
    """``summary.json`` of every finished fine-tuned model of ``arms`` (default: all), one row
    per evaluated arm name (wall time, steps/s, trainable parameters): arms are matched on
    steps, so compute goes beside every result. Adapter arms get one row per fallback
    (``adapters-nearest``, ...)."""
    rows = []
    for arm in trained_arms(params) if arms is None else arms:
        path = arm.directory(params) / SUMMARY_FILE
        if path.is_file():
            summary = json.loads(path.read_text(encoding="utf-8"))
            summary.pop(IDENTITY_KEY, None)  # which run it was: for resume, not for tables
            rows += [
                {**summary, "name": e.name, "fallback": e.fallback} for e in arm.evaluated(params)
            ]
    return pd.DataFrame(rows)


def training_logs(params: Params, arms: list[Arm] | None = None) -> pd.DataFrame:
    """The ``log.csv`` of every fine-tuned model of ``arms`` (default: all) in one table, with
    its arm name, base and seed."""
    frames = []
    for arm in trained_arms(params) if arms is None else arms:
        path = arm.directory(params) / LOG_CSV
        if path.is_file():
            log = pd.read_csv(path)
            frames.append(log.assign(arm=arm.name, base_seed=arm.base_seed, seed=arm.seed))
    if not frames:
        raise FileNotFoundError(
            f"no training logs for run {params.run.name!r}; train the arms first (notebook 02)"
        )
    return pd.concat(frames, ignore_index=True)


def example_batches(params: Params, pool: ImageTextSet, step: int = 0) -> dict[str, Batch]:
    """One batch of each strategy the study's arms train with, as the first arm of that strategy
    draws it at ``step`` (its seed and alpha), for showing what the batches hold. The
    ``adapters`` arm's mono steps come from one sampler per language; its example here draws
    from all of them at once."""
    langs = params.data.train_langs
    captions = pool.captions[pool.captions["lang"].isin(langs)].reset_index(drop=True)
    first: dict[str, Arm] = {}
    for arm in trained_arms(params):
        first.setdefault(arm.strategy, arm)
    return {
        strategy: arm_sampler(first[strategy], captions, langs, params).batch(step)
        for strategy in STRATEGIES
        if strategy in first
    }


def routing_table(params: Params) -> pd.DataFrame:
    """Which adapter encodes each language under each fallback (first adapter arm)."""
    arms = adapter_arms(params)
    if not arms:
        raise ValueError("the study has no adapter arm to route (adapters.enabled is false)")
    trained = saved_adapter_langs(arms[0].directory(params))
    langs = params.data.train_langs + params.data.heldout_langs
    columns = {
        fallback: [adapter_route(lang, trained, fallback) for lang in langs]
        for fallback in params.adapters.fallbacks
    }
    return pd.DataFrame(columns, index=pd.Index(langs, name="language"))


def adapter_cost_table(params: Params) -> pd.DataFrame:
    """Trainable parameters and bytes on disk of the first adapter arm, per language and in
    total, beside the full text tower and, when the study trains one, the shared LoRA of
    notebook 02 (:func:`xlr.train.adapters.adapter_costs`)."""
    arms = adapter_arms(params)
    if not arms:
        raise ValueError("the study has no adapter arm (adapters.enabled is false)")
    lora = [arm for arm in trained_arms(params) if arm.trained == "lora"]
    return adapter_costs(
        arms[0].directory(params),
        load_base(params, arms[0].base_seed).model,
        lora[0].lora_dir(params) if lora else None,
    )
