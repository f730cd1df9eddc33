"""Running the study's arms for one params file: the bases, every trained arm, their logs.

Notebooks 02-04 call these instead of looping themselves, so the loop (which arms, which base,
skip what is finished) is written once and tested.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from xlr.batching import STRATEGIES, Batch, BatchSampler
from xlr.config import Params
from xlr.data.imagetext import ImageTextSet
from xlr.data.prepare import eval_sets, run_dir
from xlr.evaluate import Encoder, ModelEncoder
from xlr.models import ModelBundle, create_model, load_model
from xlr.pretrain import ensure_base_model
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


def load_base(params: Params, base_seed: int, progress: bool = True) -> ModelBundle:
    """The model every arm starts from: the cached tiny base of ``base_seed`` (pretrained on a
    cache miss), or the real open_clip model and pretrained tag (one base, seed unused)."""
    if params.model.kind == "tiny":
        return load_model(ensure_base_model(params, base_seed, progress=progress))
    return create_model(params.model)


def trained_arms(params: Params) -> list[ArmSpec]:
    """The arms of ``params`` that fine-tune (every arm but ``zeroshot``)."""
    return [spec for spec in arms_from_params(params) if spec.arm != "zeroshot"]


def train_arms(params: Params, pool: ImageTextSet, progress: bool = True) -> pd.DataFrame:
    """Train every arm of ``params`` (finished ones are skipped, interrupted ones resume) and
    return one row of ``summary.json`` per arm."""
    specs = trained_arms(params)
    bases: dict[int, ModelBundle] = {}
    for spec in tqdm(specs, desc="arms", unit="arm", disable=not progress):
        if spec.base_seed not in bases:
            bases[spec.base_seed] = load_base(params, spec.base_seed, progress)
        train_arm(bases[spec.base_seed], pool, params, spec, progress=progress)
    return arm_summaries(params)


def arm_summaries(params: Params) -> pd.DataFrame:
    """``summary.json`` of every finished trained arm, one row each (wall time, steps/s,
    trainable parameters): arms are matched on steps, so compute goes beside every result."""
    rows = []
    for spec in trained_arms(params):
        path = spec.directory(params) / SUMMARY_FILE
        if path.is_file():
            rows.append(json.loads(path.read_text(encoding="utf-8")))
    return pd.DataFrame(rows)


def training_logs(params: Params) -> pd.DataFrame:
    """Every trained arm's ``log.csv`` in one table, with the arm name, base and seed."""
    frames = []
    for spec in trained_arms(params):
        path = spec.directory(params) / LOG_CSV
        if path.is_file():
            log = pd.read_csv(path)
            frames.append(log.assign(arm=spec.name, base_seed=spec.base_seed, seed=spec.seed))
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


def arm_encoders(params: Params, progress: bool = True) -> Iterator[tuple[ArmSpec, Encoder]]:
    """Every arm of ``params`` as an :class:`~xlr.evaluate.Encoder`: the zero-shot base and each
    trained arm's model folder (a missing folder is a clear error naming the arm)."""
    device = resolve_device(params.run.device)
    batch = params.eval.batch_size
    for spec in arms_from_params(params):
        if spec.arm == "zeroshot":
            yield spec, ModelEncoder(load_base(params, spec.base_seed, progress), device, batch)
        else:
            yield spec, ModelEncoder.from_folder(spec.directory(params) / MODEL_DIR, device, batch)


def results_dir(params: Params) -> Path:
    """``runs/<run.name>``: ``results/retrieval.parquet`` and ``results/ranks/`` live below it."""
    return run_dir(params)


def evaluate_arms(params: Params, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate every arm on every eval set of ``params``, write the results and ranks, and
    return them. Embeddings are cached per arm, seed and checkpoint, so a re-run re-encodes
    nothing."""
    sets = eval_sets(params)
    cache = results_dir(params) / "embeddings"
    all_results, all_ranks = [], []
    encoders = list(arm_encoders(params, progress))
    for spec, encoder in tqdm(encoders, desc="evaluate arms", unit="arm", disable=not progress):
        for eval_set in sets.values():
            results, ranks = evaluate_arm(
                encoder,
                eval_set,
                params.data.train_langs,
                params.data.heldout_langs,
                eval_cfg=params.eval,
                arm=spec.name,
                seed=spec.seed,
                base_seed=spec.base_seed,
                cache_dir=cache,
            )
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
