"""The study loop of notebooks 02-04 on a tiny offline study: every arm kind trained, then
evaluated side by side in workers, matching evaluation here at the workers' thread count."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from xlr.arms import adapter_arms, shared_arms
from xlr.config import parse_params
from xlr.data.prepare import finetune_pool, prepare_data
from xlr.eval.results import read_ranks, results_dir
from xlr.eval.runner import evaluate_arms
from xlr.train import study
from xlr.train.study import (
    adapter_cost_table,
    arm_summaries,
    routing_table,
    train_adapter_arms,
    train_arms,
    training_logs,
)
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
            "adapters": {"fallbacks": ["base", "nearest"]},
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
    """Evaluate with no cached embeddings or results left from an earlier evaluation; return
    the results and the ranks files written, read back."""
    shutil.rmtree(results_dir(params) / "results", ignore_errors=True)
    shutil.rmtree(results_dir(params) / "embeddings", ignore_errors=True)
    results, rank_files = evaluate_arms(params, progress=False)
    return results, read_ranks(rank_files)


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


def test_summaries_and_logs_of_chosen_arms(trained: Path) -> None:
    params = study_params(trained, workers=1)
    every = arm_summaries(params)
    assert every["name"].tolist() == [
        "mono-full", "adapters-base", "adapters-nearest",
        "adapters_hybrid-a0.5-base", "adapters_hybrid-a0.5-nearest",
    ]  # fmt: skip
    assert every.set_index("name").loc["adapters-nearest", "fallback"] == "nearest"
    adapters = arm_summaries(params, adapter_arms(params))
    assert set(adapters["family"]) == {"adapters", "adapters_hybrid"}
    logs = training_logs(params, shared_arms(params))
    assert set(logs["arm"]) == {"mono-full"} and len(logs) == params.train.steps


def test_finished_arms_train_again_without_loading_their_base(
    trained: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second pass over finished arms (a notebook re-run, ``xlr train --all``) reads their
    summaries and loads no base: for the real study each load is a 1.4 GB model."""
    params = study_params(trained, workers=1)
    pool = finetune_pool(params)

    def no_base(*args: object) -> None:
        raise AssertionError("a finished arm loaded its base")

    monkeypatch.setattr(study, "load_base", no_base)
    before = arm_summaries(params)
    assert train_arms(params, pool, progress=False)["name"].tolist() == ["mono-full"]
    adapters = train_adapter_arms(params, pool, progress=False)
    assert len(adapters) == 4 and arm_summaries(params).equals(before)


def test_routing_and_cost_of_the_adapter_arm(trained: Path) -> None:
    params = study_params(trained, workers=1)
    routes = routing_table(params)
    assert routes.loc[["en", "de"], "base"].tolist() == ["en", "de"]  # seen: their own adapter
    assert routes.loc["nl", "base"] == "base"
    # en and de are both Germanic in Latin script; the tie goes to the larger LAION share
    assert routes.loc["nl", "nearest"] == "nearest:en"
    cost = adapter_cost_table(params).set_index("kind")
    per_language = cost.loc["adapter", "trainable_params"]
    assert len(per_language) == 2 and cost.loc["adapters", "trainable_params"] == per_language.sum()
    assert "shared_lora" not in cost.index  # the study trains no shared LoRA arm
