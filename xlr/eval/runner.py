"""Evaluating the study's models (notebook 04): every arm on every eval set, and the bases.

Notebook 04 and ``xlr prepare`` call these instead of looping themselves, so which models,
which encoder and where results go is written once and tested.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import torch

from xlr.arms import ZEROSHOT, Arm, study_arms
from xlr.config import Params
from xlr.data.imagetext import ImageTextSet
from xlr.data.prepare import corpus_dir, eval_sets, pretraining_shares
from xlr.data.synthetic import load_pool
from xlr.eval.encoders import AdapterEncoder, Encoder, ModelEncoder
from xlr.eval.results import results_dir, write_results
from xlr.eval.tasks import evaluate_arm
from xlr.models.bases import load_base
from xlr.models.factory import ModelBundle
from xlr.runtime import resolve_device
from xlr.workers import run_jobs


@dataclass(frozen=True)
class EvaluatedArm:
    """An encoder to evaluate and the arm (with base and seed) its results are filed under."""

    arm: Arm
    encoder: Encoder


def arm_encoders(params: Params, arm: Arm) -> Iterator[EvaluatedArm]:
    """The models of one arm as :class:`~xlr.eval.encoders.Encoder`: the zero-shot base, a
    trained arm's model folder, or an adapter arm once per fallback (its routing says which
    adapter encodes which language). A missing folder is a clear error naming the arm."""
    device = resolve_device(params.run.device)
    batch = params.eval.batch_size
    if arm.is_adapters:
        base = load_base(params, arm.base_seed)
        for evaluated in arm.evaluated(params):
            encoder: Encoder = AdapterEncoder.from_folder(
                base, arm.directory(params), evaluated.fallback, device=device, batch_size=batch
            )
            yield EvaluatedArm(evaluated, encoder)
    elif not arm.is_trained:
        yield EvaluatedArm(arm, ModelEncoder(load_base(params, arm.base_seed), device, batch))
    else:
        yield EvaluatedArm(arm, ModelEncoder.from_folder(arm.model_dir(params), device, batch))


@dataclass(frozen=True)
class _EvalJob:
    """Evaluate one arm's models on every eval set (a :func:`xlr.workers.run_jobs` job).

    Returns each evaluation's results and ranks; the caller writes them, since every run
    rewrites the one merged ``retrieval.parquet``. Embeddings are cached per model and set.
    """

    params: Params
    arm: Arm
    sets: tuple[ImageTextSet, ...]

    def __call__(self) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
        data = self.params.data
        outputs = []
        for evaluated in arm_encoders(self.params, self.arm):
            for eval_set in self.sets:
                outputs.append(
                    evaluate_arm(
                        evaluated.encoder,
                        eval_set,
                        data.train_langs,
                        data.heldout_langs,
                        eval_cfg=self.params.eval,
                        arm=evaluated.arm.name,
                        seed=evaluated.arm.seed,
                        base_seed=evaluated.arm.base_seed,
                        cache_dir=results_dir(self.params) / "embeddings",
                    )
                )
        return outputs


def evaluate_arms(params: Params, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate every arm on every eval set of ``params``, ``run.workers`` models at a time,
    write the results and ranks, and return them.

    Results are written in the study's arm order whatever order the workers finish in, and
    embeddings are cached per arm, seed and checkpoint, so a re-run re-encodes nothing.
    """
    sets = tuple(eval_sets(params).values())
    jobs = [_EvalJob(params, arm, sets) for arm in study_arms(params)]
    outputs = run_jobs(jobs, params.run.workers, desc="evaluate arms", progress=progress)
    all_results, all_ranks = [], []
    for results, ranks in (output for job_outputs in outputs for output in job_outputs):
        write_results(results, ranks, results_dir(params))
        all_results.append(results)
        all_ranks.append(ranks)
    return pd.concat(all_results, ignore_index=True), pd.concat(all_ranks, ignore_index=True)


def text_to_image_recall(
    bundle: ModelBundle, eval_set: ImageTextSet, device: torch.device
) -> pd.DataFrame:
    """Per-language text-to-image R@1 and R@5 (hit rate) of a model on an eval set, through the
    study's own ``t2i`` task."""
    langs = eval_set.langs
    results, _ = evaluate_arm(
        ModelEncoder(bundle, device), eval_set, langs, [], tasks=["t2i"], arm=ZEROSHOT.name
    )
    table = results.pivot_table(index="query_lang", columns="metric", values="value")
    counts = results.groupby("query_lang")["n_queries"].first()
    return pd.DataFrame(
        {
            "lang": langs,
            "queries": counts.loc[langs].to_numpy(),
            "r1": table.loc[langs, "R@1"].to_numpy(),
            "r5": table.loc[langs, "R@5"].to_numpy(),
            "chance_r1": 1.0 / len(eval_set),
        }
    )


def base_report(params: Params, base_seed: int) -> pd.DataFrame:
    """Per-language text-to-image R@1 of a pretrained tiny base on the generated eval pool,
    beside each language's share of the pretraining mix (most frequent first): the base should
    be best in the languages it saw most, as the real model is."""
    recall = text_to_image_recall(
        load_base(params, base_seed),
        load_pool(corpus_dir(params), "eval"),
        resolve_device(params.run.device),
    )
    recall["pretrain_share"] = recall["lang"].map(pretraining_shares(params))
    return recall.sort_values("pretrain_share", ascending=False).reset_index(drop=True)
