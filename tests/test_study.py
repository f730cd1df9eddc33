"""The study loop of notebooks 02-04 on a tiny offline study: every arm kind trained, then
evaluated side by side in workers, matching evaluation here at the workers' thread count."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from xlr.config import parse_params
from xlr.data.prepare import finetune_pool, prepare_data
from xlr.eval.results import results_dir
from xlr.eval.runner import evaluate_arms
from xlr.train.study import train_adapter_arms, train_arms
from xlr.workers import threads_per_worker


def study_params(root: Path, workers: int) -> object:
    return parse_params(
        {
            "run": {"name": "t", "cache_dir": str(root / "cache"), "runs_dir": str(root / "runs"),
                    "device": "cpu", "seeds": [0], "workers": workers},
            "data": {"train_langs": ["en", "de"], "heldout_langs": ["nl"],
                     "synthetic": {"pretrain_images": 300, "finetune_images": 40,
                                   "eval_images": 20, "shard_size": 200}},
            "model": {"tiny": {"vocab_size": 1500, "pretrain_steps": 8,
                               "pretrain_batch_size": 32}},
            "train": {"arms": ["zeroshot", "mono"], "steps": 2, "batch_size": 8,
                      "checkpoint_every": 2},
            "adapters": {"steps_per_language": 1, "fallbacks": ["base", "nearest"]},
        }
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("study")
    params = study_params(root, workers=1)
    prepare_data(params, progress=False)
    pool = finetune_pool(params)
    train_arms(params, pool, progress=False)
    train_adapter_arms(params, pool, progress=False)
    return root


def evaluate_fresh(params) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate with no cached embeddings or results left from an earlier evaluation."""
    shutil.rmtree(results_dir(params) / "results", ignore_errors=True)
    shutil.rmtree(results_dir(params) / "embeddings", ignore_errors=True)
    return evaluate_arms(params, progress=False)


def test_evaluation_covers_every_model_in_study_order(trained: Path) -> None:
    results, ranks = evaluate_fresh(study_params(trained, workers=2))
    arms = list(pd.unique(results["arm"]))
    adapters = ["adapters-base", "adapters-nearest"]
    adapters += ["adapters_hybrid-a0.5-base", "adapters_hybrid-a0.5-nearest"]
    assert arms == ["zeroshot", "mono-full", *adapters]
    assert set(ranks["arm"]) == set(arms)
    on_disk = pd.read_parquet(results_dir(study_params(trained, 2)) / "results/retrieval.parquet")
    pd.testing.assert_frame_equal(on_disk, results)


def test_workers_evaluate_as_one_process_at_their_thread_count(trained: Path) -> None:
    side = evaluate_fresh(study_params(trained, workers=2))
    threads = torch.get_num_threads()
    torch.set_num_threads(threads_per_worker(2))
    try:
        here = evaluate_fresh(study_params(trained, workers=1))
    finally:
        torch.set_num_threads(threads)
    for got, expected in zip(side, here, strict=True):
        pd.testing.assert_frame_equal(got, expected)
