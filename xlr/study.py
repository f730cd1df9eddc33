"""Running the study's arms for one params file: the bases, every trained arm, their logs.

Notebooks 02-04 call these instead of looping themselves, so the loop (which arms, which base,
skip what is finished) is written once and tested.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from xlr.adapters import AdapterEncoder, AdapterSpec, adapter_specs_from_params, train_adapters
from xlr.batching import STRATEGIES, Batch, BatchSampler
from xlr.config import Params
from xlr.data.imagetext import ImageTextSet
from xlr.data.prepare import ensure_corpus, eval_sets, run_dir
from xlr.evaluate import Encoder, ModelEncoder
from xlr.models import ModelBundle, create_model, load_model
from xlr.pretrain import ensure_base_model, ensure_tokenizer, is_base_cached
from xlr.tasks import RANKS_DIR, RETRIEVAL_FILE, evaluate_arm, write_results
from xlr.train import (
    LOG_CSV,
    MODEL_DIR,
    SUMMARY_FILE,
    ArmSpec,
    arms_from_params,
    resolve_device,
    train_arm,
)
from xlr.workers import run_jobs


def load_base(params: Params, base_seed: int, progress: bool = True) -> ModelBundle:
    """The model every arm starts from: the cached tiny base of ``base_seed`` (pretrained on a
    cache miss), or the real open_clip model and pretrained tag (one base, seed unused)."""
    if params.model.kind == "tiny":
        return load_model(ensure_base_model(params, base_seed, progress=progress))
    return create_model(params.model)


def trained_arms(params: Params) -> list[ArmSpec]:
    """The arms of ``params`` that fine-tune (every arm but ``zeroshot``)."""
    return [spec for spec in arms_from_params(params) if spec.arm != "zeroshot"]


@dataclass(frozen=True)
class TrainedRun:
    """One fine-tuned model on disk: a 02 arm or a 03 adapter arm, by name, base and seed."""

    name: str
    base_seed: int
    seed: int
    directory: Path


def trained_runs(params: Params) -> list[TrainedRun]:
    """Every fine-tuned model ``params`` asks for: notebook 02's arms, then 03's adapter arms."""
    arms = [
        TrainedRun(spec.name, spec.base_seed, spec.seed, spec.directory(params))
        for spec in trained_arms(params)
    ]
    adapters = [
        TrainedRun(spec.name, spec.base_seed, spec.seed, spec.directory(params))
        for spec in adapter_specs_from_params(params)
    ]
    return arms + adapters


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
    spec: ArmSpec | AdapterSpec
    pool: ImageTextSet
    progress: bool

    def __call__(self) -> None:
        base = load_base(self.params, self.spec.base_seed, progress=self.progress)
        train = train_adapters if isinstance(self.spec, AdapterSpec) else train_arm
        train(base, self.pool, self.params, self.spec, progress=self.progress)


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


def _train_all(
    params: Params, pool: ImageTextSet, specs: list[ArmSpec] | list[AdapterSpec], progress: bool
) -> pd.DataFrame:
    """Every missing base, then every spec, ``run.workers`` jobs at a time: an arm starts as
    soon as its own base is ready. Returns all summaries."""
    bases = _base_jobs(params, progress)
    base_index = {b: i for i, b in enumerate(bases)}
    inline = progress and params.run.workers == 1
    jobs: list[_BaseJob | _ArmJob] = [*bases.values()]
    jobs += [_ArmJob(params, spec, pool, inline) for spec in specs]
    after = [None] * len(bases) + [base_index.get(spec.base_seed) for spec in specs]
    run_jobs(jobs, params.run.workers, desc="bases and arms", progress=progress, after=after)
    return arm_summaries(params)


def train_arms(params: Params, pool: ImageTextSet, progress: bool = True) -> pd.DataFrame:
    """Train every arm of ``params`` (finished ones are skipped, interrupted ones resume) and
    return one row of ``summary.json`` per arm."""
    return _train_all(params, pool, trained_arms(params), progress)


def train_adapter_arms(params: Params, pool: ImageTextSet, progress: bool = True) -> pd.DataFrame:
    """Train the language adapters (and the combined adapters_hybrid arm) of ``params``;
    one row of ``summary.json`` per adapter arm."""
    return _train_all(params, pool, adapter_specs_from_params(params), progress)


def arm_summaries(params: Params) -> pd.DataFrame:
    """``summary.json`` of every finished fine-tuned model, one row each (wall time, steps/s,
    trainable parameters): arms are matched on steps, so compute goes beside every result.
    Adapter arms get one row per evaluated fallback name (``adapters-nearest``, ...)."""
    rows = []
    for run in trained_runs(params):
        path = run.directory / SUMMARY_FILE
        if not path.is_file():
            continue
        summary = json.loads(path.read_text(encoding="utf-8"))
        names = adapter_arm_names(params, run.name) if run.name.startswith("adapters") else []
        rows += [{**summary, "name": name} for name in names or [run.name]]
    return pd.DataFrame(rows)


def adapter_arm_names(params: Params, name: str) -> list[str]:
    """The evaluated names of one adapter arm: one per fallback for held-out languages."""
    return [f"{name}-{fallback}" for fallback in params.adapters.fallbacks]


def training_logs(params: Params) -> pd.DataFrame:
    """Every fine-tuned model's ``log.csv`` in one table, with its name, base and seed."""
    frames = []
    for run in trained_runs(params):
        path = run.directory / LOG_CSV
        if path.is_file():
            log = pd.read_csv(path)
            frames.append(log.assign(arm=run.name, base_seed=run.base_seed, seed=run.seed))
    if not frames:
        raise FileNotFoundError(
            f"no training logs for run {params.run.name!r}; train the arms first (notebook 02)"
        )
    return pd.concat(frames, ignore_index=True)


def example_batches(params: Params, pool: ImageTextSet, step: int = 0) -> dict[str, Batch]:
    """One batch of each strategy as the arms would draw it at ``step`` (first seed, first
    alpha), for showing what mono, cross, multi and hybrid batches hold."""
    captions = pool.captions[pool.captions["lang"].isin(params.data.train_langs)]
    return {
        strategy: BatchSampler(
            strategy,
            captions.reset_index(drop=True),
            params.data.train_langs,
            params.train.batch_size,
            params.run.seeds[0],
            alpha=params.train.alphas[0],
            tau=params.train.tau,
        ).batch(step)
        for strategy in STRATEGIES
    }


@dataclass(frozen=True)
class EvaluatedArm:
    """An encoder to evaluate and the identity its results are filed under."""

    name: str
    base_seed: int
    seed: int | None
    encoder: Encoder


def spec_encoders(
    params: Params, spec: ArmSpec | AdapterSpec, progress: bool = True
) -> Iterator[EvaluatedArm]:
    """The models of one spec as :class:`~xlr.evaluate.Encoder`: the zero-shot base, a trained
    arm's model folder, or an adapter arm once per fallback (its routing says which adapter
    encodes which language). A missing folder is a clear error naming the arm."""
    device = resolve_device(params.run.device)
    batch = params.eval.batch_size
    if isinstance(spec, AdapterSpec):
        base = load_base(params, spec.base_seed, progress)
        names = adapter_arm_names(params, spec.name)
        for fallback, name in zip(params.adapters.fallbacks, names, strict=True):
            encoder: Encoder = AdapterEncoder.from_folder(
                base, spec.directory(params), fallback, device=device, batch_size=batch
            )
            yield EvaluatedArm(name, spec.base_seed, spec.seed, encoder)
        return
    if spec.arm == "zeroshot":
        encoder = ModelEncoder(load_base(params, spec.base_seed, progress), device, batch)
    else:
        encoder = ModelEncoder.from_folder(spec.directory(params) / MODEL_DIR, device, batch)
    yield EvaluatedArm(spec.name, spec.base_seed, spec.seed, encoder)


@dataclass(frozen=True)
class _EvalJob:
    """Evaluate one spec's models on every eval set (a :func:`xlr.workers.run_jobs` job).

    Returns each evaluation's results and ranks; the caller writes them, since every run
    rewrites the one merged ``retrieval.parquet``. Embeddings are cached per model and set.
    """

    params: Params
    spec: ArmSpec | AdapterSpec
    sets: tuple[ImageTextSet, ...]
    progress: bool

    def __call__(self) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
        data = self.params.data
        outputs = []
        for arm in spec_encoders(self.params, self.spec, self.progress):
            for eval_set in self.sets:
                outputs.append(
                    evaluate_arm(
                        arm.encoder,
                        eval_set,
                        data.train_langs,
                        data.heldout_langs,
                        eval_cfg=self.params.eval,
                        arm=arm.name,
                        seed=arm.seed,
                        base_seed=arm.base_seed,
                        cache_dir=results_dir(self.params) / "embeddings",
                    )  # fmt: skip
                )
        return outputs


def routing_table(params: Params) -> pd.DataFrame:
    """Which adapter encodes each language under each fallback (first adapter arm)."""
    specs = adapter_specs_from_params(params)
    if not specs:
        raise ValueError("adapters.enabled is false: there is no adapter arm to route")
    base = load_base(params, specs[0].base_seed, progress=False)
    langs = params.data.train_langs + params.data.heldout_langs
    columns = {}
    for fallback in params.adapters.fallbacks:
        encoder = AdapterEncoder.from_folder(base, specs[0].directory(params), fallback)
        columns[fallback] = [encoder.route(lang) for lang in langs]
    return pd.DataFrame(columns, index=pd.Index(langs, name="language"))


def results_dir(params: Params) -> Path:
    """``runs/<run.name>``: ``results/retrieval.parquet`` and ``results/ranks/`` live below it."""
    return run_dir(params)


def evaluate_arms(params: Params, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate every arm on every eval set of ``params``, ``run.workers`` models at a time,
    write the results and ranks, and return them.

    Results are written in the study's arm order whatever order the workers finish in, and
    embeddings are cached per arm, seed and checkpoint, so a re-run re-encodes nothing.
    """
    sets = tuple(eval_sets(params).values())
    inline = progress and params.run.workers == 1
    specs = [*arms_from_params(params), *adapter_specs_from_params(params)]
    jobs = [_EvalJob(params, spec, sets, inline) for spec in specs]
    outputs = run_jobs(jobs, params.run.workers, desc="evaluate arms", progress=progress)
    all_results, all_ranks = [], []
    for results, ranks in (output for job_outputs in outputs for output in job_outputs):
        write_results(results, ranks, results_dir(params))
        all_results.append(results)
        all_ranks.append(ranks)
    return pd.concat(all_results, ignore_index=True), pd.concat(all_ranks, ignore_index=True)


def load_results(params: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The results table and every ranks file notebook 04 wrote (05 and 06 start here)."""
    root = results_dir(params)
    path = root / RETRIEVAL_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no retrieval results for run {params.run.name!r}; run notebook "
            "04_retrieval_eval first"
        )
    ranks = pd.concat(
        [pd.read_parquet(p) for p in sorted((root / RANKS_DIR).glob("*.parquet"))],
        ignore_index=True,
    )
    return pd.read_parquet(path), ranks


def arm_catalogue(params: Params) -> pd.DataFrame:
    """One row per arm name: its batch strategy, alpha (mono = 1, cross = 0 on the hybrid
    axis, as the sweep's end points) and what trains."""
    rows = {}
    for spec in arms_from_params(params):
        alpha = {"mono": 1.0, "cross": 0.0}.get(spec.arm, spec.alpha)
        rows[spec.name] = {
            "arm_name": spec.name,
            "strategy": spec.arm,
            "alpha": alpha,
            "trainable": spec.trainable or "none",
        }
    return pd.DataFrame(rows.values())


def headline_hybrid_arm(params: Params) -> str | None:
    """The hybrid arm the claims are about: alpha 0.5 (the paper's) when swept, else the middle
    alpha; the full text tower when trained, else the LoRA; None without a hybrid arm."""
    hybrids = arm_catalogue(params)
    hybrids = hybrids[hybrids["strategy"] == "hybrid"]
    if hybrids.empty:
        return None
    alphas = sorted(hybrids["alpha"].unique())
    alpha = 0.5 if 0.5 in alphas else alphas[len(alphas) // 2]
    chosen = hybrids[hybrids["alpha"] == alpha].sort_values("trainable")  # "full" < "lora"
    return str(chosen["arm_name"].iloc[0])
