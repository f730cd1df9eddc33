"""The fine-tuning loop of the training arms on a tiny random CLIP: what trains, logs, resume, DDP.

Real open_clip, peft and torch.distributed (gloo) throughout; the model is a seeded random tiny
CLIP (ViT 64 wide, 2 layers, patch 8, 32 px; XLM-R 64 hidden, 2 layers) on a generated pool.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import build_tiny_world, logit_scale_rates, record_optimizers, tiny_raw_params
from safetensors.torch import load_file

from xlr import tuning
from xlr.arms import LOG_CSV, LORA_DIR, MODEL_DIR, SUMMARY_FILE, Arm, shared_arms
from xlr.config import LoraSection, Params, parse_params
from xlr.data.imagetext import ArrayImages, ImageTextSet
from xlr.eval.runner import arm_encoders
from xlr.models.adapters import lora_targets
from xlr.models.bases import base_key
from xlr.models.factory import WEIGHTS, load_model, write_tiny_model_dir
from xlr.train import finetune, loop
from xlr.train.checkpoint import CHECKPOINT, load_checkpoint
from xlr.train.finetune import arm_folder, check_arm_inputs, train_arm
from xlr.train.loop import PARAMS_FILE, RunFolder, Trainer
from xlr.train.steplog import TENSORBOARD_DIR
from xlr.workers import run_jobs, threads_per_worker

TESTS = Path(__file__).resolve().parent
WORKER = TESTS / "train_worker.py"
LANGS = ["en", "de", "es", "ja"]


def raw_params(runs: Path, **train: object) -> dict:
    defaults = {"steps": 4, "batch_size": 16, "checkpoint_every": 2, "warmup": 1, "lr": 1e-3}
    no_adapters = {"enabled": False, "hybrid_alpha": None}  # shared arms only, any budget
    return tiny_raw_params(
        runs, LANGS, ["en", "de", "es"], ["ja"], train=defaults | train, adapters=no_adapters
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Corpus, tokenizer and two tiny model folders: with XLM-R's dropout, and without it."""
    root = tmp_path_factory.mktemp("finetune")
    tiny = build_tiny_world(root, raw_params(root / "runs"))
    params = tiny.params()
    still = write_tiny_model_dir(params.model.tiny, tiny.tokenizer, 32, root / "still", seed=0)
    config = json.loads((still / "config.json").read_text())
    config |= {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    (still / "config.json").write_text(json.dumps(config))
    return {
        "root": root, "corpus": tiny.corpus, "pool": tiny.pool, "model": tiny.model_dir,
        "still": still,
    }  # fmt: skip


def params_for(world: dict, **train: object) -> Params:
    return parse_params(raw_params(world["root"] / "runs", **train))


def run_job(world: dict, job: dict, torchrun: int = 0) -> subprocess.Popen:
    """Start ``train_worker.py`` on ``job`` in a fresh process (or ``torchrun`` ranks)."""
    job_file = Path(job["out_dir"]).with_suffix(".json")
    job_file.write_text(json.dumps(job | {"corpus_dir": str(world["corpus"])}))
    launcher = [sys.executable]
    if torchrun:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}"]
    # A lone worker matches this process's thread count: CPU reductions are bit-reproducible for
    # one thread count, not across counts. torchrun ranks take one thread each.
    threads = 1 if torchrun else torch.get_num_threads()
    env = os.environ | {
        "OMP_NUM_THREADS": str(threads),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")]),
    }
    command = [*launcher, str(WORKER), str(job_file)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / MODEL_DIR / WEIGHTS)


def log_rows(out: Path) -> list[dict[str, str]]:
    with open(out / LOG_CSV, newline="") as handle:
        return list(csv.DictReader(handle))


def test_killed_run_resumes_to_identical_weights(world: dict, tmp_path: Path) -> None:
    """SIGKILL after the first checkpoint, mid-way through later steps; resume; same bits."""
    params = params_for(world, steps=8, checkpoint_every=3)
    spec = Arm("hybrid", 0.5, "full").at(base_seed=0, seed=1)
    base = load_model(world["model"])
    reference = train_arm(base, world["pool"], params, spec, tmp_path / "ref", progress=False)

    out = tmp_path / "killed"
    job = {
        "params": params.model_dump(mode="json"),
        "model_dir": str(world["model"]),
        "out_dir": str(out),
        "arm": {"name": "hybrid-a0.5-full", "base_seed": 0, "seed": 1},
        "step_delay": 1.0,  # wide windows between writes: the kill lands mid-run even under load
    }
    process = run_job(world, job)
    deadline = time.monotonic() + 300
    while not (out / CHECKPOINT).is_file() and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.02)
    time.sleep(0.45)  # into the steps after the checkpoint
    process.send_signal(signal.SIGKILL)
    output = process.communicate()[0].decode()
    assert process.returncode == -signal.SIGKILL, output[-3000:]
    checkpointed = load_checkpoint(out / CHECKPOINT)["step"]
    assert checkpointed in (3, 6)  # 3 unless this process stalled for a second
    assert not (out / SUMMARY_FILE).exists() and not (out / MODEL_DIR).exists()
    assert len(log_rows(out)) >= checkpointed  # rows past the checkpoint are dropped on resume

    with pytest.raises(ValueError, match=r"its seed, stream_seed differ .* resume=False"):
        other = Arm("hybrid", 0.5, "full").at(base_seed=0, seed=2)
        train_arm(base, world["pool"], params, other, out, progress=False)
    resumed = train_arm(base, world["pool"], params, spec, out, progress=False)

    expected, got = final_weights(reference.out_dir), final_weights(out)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[key], got[key]) for key in expected)
    reference_state = reference.bundle.model.state_dict()
    resumed_state = resumed.bundle.model.state_dict()
    assert all(torch.equal(value, reference_state[key]) for key, value in resumed_state.items())
    rows, reference_rows = log_rows(out), log_rows(reference.out_dir)
    assert [int(r["step"]) for r in rows] == list(range(8))
    assert [r["loss"] for r in rows] == [r["loss"] for r in reference_rows]
    assert resumed.summary["wall_s"] > 0 and (out / PARAMS_FILE).is_file()
    assert not (out / CHECKPOINT).exists()  # finished: the optimizer state is dropped
    with mock.patch.object(Trainer, "step", side_effect=AssertionError("a step ran")):
        again = train_arm(base, world["pool"], params, spec, out, progress=False)
    assert len(log_rows(out)) == 8 and again.summary == resumed.summary
    assert all(torch.equal(value, got[key]) for key, value in final_weights(out).items())
    again_state = again.bundle.model.state_dict()
    assert all(torch.equal(value, again_state[key]) for key, value in resumed_state.items())
    with pytest.raises(ValueError, match="resume=False"):  # a finished run is not overwritten
        train_arm(base, world["pool"], params, other, out, progress=False)


def test_two_gloo_ranks_match_one_process(world: dict, tmp_path: Path) -> None:
    """torchrun with 2 ranks: same global batch, gathered negatives, averaged gradients."""
    params = params_for(world, steps=2, checkpoint_every=2)
    arm = Arm("multi", trained="full").at(base_seed=0, seed=0)
    job = {
        "params": params.model_dump(mode="json"),
        "model_dir": str(world["still"]),
        "out_dir": str(tmp_path / "ddp"),
        "arm": {"name": arm.name, "base_seed": 0, "seed": 0},
    }
    process = run_job(world, job, torchrun=2)
    single = train_arm(
        load_model(world["still"]), world["pool"], params, arm, tmp_path / "one",
        progress=False,
    )  # fmt: skip
    output = process.communicate(timeout=120)[0].decode()
    assert process.returncode == 0, output[-3000:]

    ddp, one = log_rows(tmp_path / "ddp"), log_rows(single.out_dir)
    assert len(ddp) == 2 and ddp[0]["query_langs"] == one[0]["query_langs"]
    assert float(ddp[0]["loss"]) == pytest.approx(float(one[0]["loss"]), rel=1e-5)
    assert float(ddp[1]["loss"]) == pytest.approx(float(one[1]["loss"]), rel=1e-4)
    summary = json.loads((tmp_path / "ddp" / SUMMARY_FILE).read_text())
    assert summary["world_size"] == 2
    expected, got = final_weights(single.out_dir), final_weights(tmp_path / "ddp")
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-4, rtol=1e-4)


def test_full_trains_text_tower_and_logit_scale_only(world: dict, tmp_path: Path) -> None:
    params = params_for(world, steps=2)
    base = load_model(world["model"])
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    spec = Arm("mono", trained="full").at(base_seed=0, seed=0)
    arm = train_arm(base, world["pool"], params, spec, tmp_path / "full", progress=False)

    after = arm.bundle.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("visual."))
    assert all(torch.equal(before[k], v) for k, v in base.model.state_dict().items())  # a copy
    assert not torch.equal(before["logit_scale"], after["logit_scale"])
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"text", "logit_scale"}
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("text.proj"))
    text = sum(p.numel() for n, p in base.model.named_parameters() if n.startswith("text."))
    assert arm.summary["trainable_params"] == text + 1
    reloaded = load_model(arm.out_dir / MODEL_DIR).model.state_dict()
    assert all(torch.equal(reloaded[k], after[k]) for k in after)


def test_lora_trains_only_the_adapter_and_the_logit_scale(world: dict, tmp_path: Path) -> None:
    params = params_for(world, steps=2)
    base = load_model(world["model"])
    spec = Arm("cross", trained="lora").at(base_seed=0, seed=0)
    arm = train_arm(base, world["pool"], params, spec, tmp_path / "lora", progress=False)

    lora = params.train.lora
    layers, hidden = params.model.tiny.text_layers, params.model.tiny.text_hidden
    per_target = lora.r * (hidden + hidden)  # query and value are hidden x hidden linears
    assert arm.summary["trainable_params"] == layers * len(lora.target_modules) * per_target + 1
    model = arm.bundle.model
    trained = {n for n, p in model.named_parameters() if p.requires_grad} - {"logit_scale"}
    inside = "text.base_model.model.transformer."  # peft wraps the text tower
    assert trained and all(".lora_" in n and n.startswith(inside) for n in trained)
    base_state = base.model.state_dict()
    assert not torch.equal(model.logit_scale, base.model.logit_scale)
    for name, value in model.state_dict().items():
        if ".lora_B." in name:
            assert value.abs().sum() > 0  # trained away from peft's zero init
        elif ".lora_" not in name and name != "logit_scale":
            key = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(value, base_state[key]), key
    assert (arm.out_dir / LORA_DIR / "adapter_config.json").is_file()
    merged = load_model(arm.out_dir / MODEL_DIR).model.state_dict()
    assert merged.keys() == base_state.keys()


@dataclass(frozen=True)
class TrainJob:
    """One arm trained in a worker process (xlr.workers jobs must pickle)."""

    model_dir: Path
    pool: ImageTextSet
    params: Params
    spec: Arm
    out_dir: Path

    def __call__(self) -> None:
        base = load_model(self.model_dir)
        train_arm(base, self.pool, self.params, self.spec, self.out_dir, progress=False)


def test_arms_side_by_side_match_training_here_at_the_workers_thread_count(
    world: dict, tmp_path: Path
) -> None:
    params = params_for(world, steps=3)
    specs = [
        Arm("mono", trained="full").at(base_seed=0, seed=0),
        Arm("hybrid", 0.5, "lora").at(base_seed=0, seed=1),
    ]
    jobs = [
        TrainJob(world["model"], world["pool"], params, spec, tmp_path / "side" / spec.name)
        for spec in specs
    ]
    run_jobs(jobs, workers=2, progress=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(threads_per_worker(2))
    try:
        for spec in specs:
            base = load_model(world["model"])
            train_arm(base, world["pool"], params, spec, tmp_path / "here" / spec.name,
                      progress=False)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    for spec in specs:
        got, expected = (
            final_weights(tmp_path / "side" / spec.name),
            final_weights(tmp_path / "here" / spec.name),
        )
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[k], expected[k]) for k in expected), spec.name


@pytest.mark.parametrize("trainable", ["full", "lora"])
def test_lora_arms_take_the_lora_learning_rate(world: dict, tmp_path: Path, trainable: str) -> None:
    params = params_for(world, steps=3, lr=1e-4, lora={"lr": 7e-3}, warmup=0)
    spec = Arm("mono", trained=trainable).at(base_seed=0, seed=0)
    train_arm(load_model(world["model"]), world["pool"], params, spec, tmp_path, progress=False)
    first_lr = float(log_rows(tmp_path)[0]["lr"])  # no warmup: step 0 runs at the full rate
    assert first_lr == pytest.approx(7e-3 if trainable == "lora" else 1e-4)


def test_a_trained_logit_scale_moves_at_train_lr_in_a_lora_arm(
    world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: a trained scale moves at ``train.lr`` whatever rate its arm's weights train at."""
    made = record_optimizers(monkeypatch, finetune)
    params = params_for(world, steps=1, lr=1e-4, lora={"lr": 7e-3}, logit_scale="train")
    spec = Arm("mono", trained="lora").at(base_seed=0, seed=0)
    train_arm(load_model(world["model"]), world["pool"], params, spec, tmp_path, progress=False)
    [(model, optimizer)] = made
    scale, others = logit_scale_rates(model, optimizer)
    assert scale == [pytest.approx(1e-4)] and others == [pytest.approx(7e-3)] * len(others)
    assert others  # the LoRA factors train, at their own rate


def test_a_tuned_family_rate_reaches_its_arms_optimizer(
    world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train.rates (what tuning chose) sets the arm's weights' rate, its family's alone; the
    trained scale stays at train.lr."""
    made = record_optimizers(monkeypatch, finetune)
    params = params_for(world, steps=1, lr=1e-4, lora={"lr": 7e-3}, logit_scale="train")
    params = tuning.with_rates(params, {"mono-lora": 2e-2, "cross-lora": 5e-3})
    spec = Arm("mono", trained="lora").at(base_seed=0, seed=0)
    train_arm(load_model(world["model"]), world["pool"], params, spec, tmp_path, progress=False)
    [(model, optimizer)] = made
    scale, others = logit_scale_rates(model, optimizer)
    assert scale == [pytest.approx(1e-4)] and others == [pytest.approx(2e-2)] * len(others)
    assert others


def test_retuning_one_family_leaves_the_other_arms_runs_alone(tmp_path: Path) -> None:
    """A run's identity holds its own tuned rate, not every family's: retuning the adapters
    must not retrain (or refuse to resume) the shared arms."""
    params = parse_params(raw_params(tmp_path))
    pool = ImageTextSet("p", ["a"], ArrayImages(np.zeros((1, 2, 2, 3), np.uint8)), CAPTIONS)

    def identity(arm: Arm, rates: dict[str, float]) -> dict:
        tuned = tuning.with_rates(params, rates)
        return arm_folder(arm.at(0, 0), pool, ["en"], tuned, tmp_path / "a", resume=True).identity

    mono, cross = Arm("mono", trained="full"), Arm("cross", trained="full")
    assert "lr" not in identity(mono, {})  # an untuned arm keeps the identity it had
    assert identity(mono, {"mono-full": 1e-3}) == identity(
        mono, {"mono-full": 1e-3, "adapters": 3e-2}
    )
    assert identity(mono, {"mono-full": 1e-3})["lr"] == 1e-3
    assert identity(mono, {"mono-full": 1e-3}) != identity(mono, {"mono-full": 3e-3})
    assert identity(cross, {"mono-full": 1e-3}) == identity(cross, {})


@pytest.mark.parametrize(
    ("arm", "alpha", "kinds"),
    [("hybrid", 1.0, {"mono"}), ("hybrid", 0.0, {"cross"}), ("multi", None, {"multi"})],
)
def test_log_has_one_row_per_step_with_the_strategys_batch_kinds(
    world: dict, tmp_path: Path, arm: str, alpha: float | None, kinds: set[str]
) -> None:
    params = params_for(world, steps=3, checkpoint_every=5, trainable=["lora"])
    spec = Arm(arm, alpha, "lora").at(base_seed=0, seed=0)
    arm_out = train_arm(
        load_model(world["model"]), world["pool"], params, spec, tmp_path, progress=False
    )
    rows = log_rows(tmp_path)
    assert [int(r["step"]) for r in rows] == [0, 1, 2]
    assert {r["kind"] for r in rows} == kinds
    for row in rows:
        if row["kind"] != "multi":  # one language (mono) or one ordered pair (cross) per batch
            assert "+" not in row["query_langs"] and "+" not in row["target_langs"]
            assert (row["query_langs"] == row["target_langs"]) == (row["kind"] == "mono")
        assert set(row["query_langs"].split("+")) <= {"en", "de", "es"}
        assert float(row["loss"]) > 0 and float(row["examples_per_s"]) > 0
    assert float(rows[0]["lr"]) == pytest.approx(params.train.lr)  # warmup of one step
    assert not (tmp_path / CHECKPOINT).exists()  # dropped once the arm finished
    assert list((tmp_path / TENSORBOARD_DIR).glob("events.out.tfevents.*"))
    assert arm_out.summary["steps_per_s"] > 0


def test_a_steps_time_runs_from_the_end_of_the_step_before(
    world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``examples_per_s`` is timed as open_clip times a step (``benchmarks/bench_train.py``
    compares the two): the checkpoint written after step k counts in step k + 1."""
    params = params_for(world, steps=3, checkpoint_every=1, trainable=["lora"])
    spec = Arm("mono", trained="lora").at(base_seed=0, seed=0)

    def slow_checkpoint(*args: object, **kwargs: object) -> None:
        time.sleep(0.5)

    monkeypatch.setattr(loop, "save_checkpoint", slow_checkpoint)
    train_arm(load_model(world["model"]), world["pool"], params, spec, tmp_path, progress=False)
    seconds = [params.train.batch_size / float(row["examples_per_s"]) for row in log_rows(tmp_path)]
    assert min(seconds[1:]) >= 0.5, seconds


def test_data_s_is_the_wait_for_the_batch(
    world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``data_s``, as open_clip's ``Data (t)``: the part of a step's time spent waiting for the
    loader to hand over its batch (``benchmarks/bench_train.py`` reads both)."""
    params = params_for(world, steps=3, trainable=["lora"])
    spec = Arm("mono", trained="lora").at(base_seed=0, seed=0)
    loaded = loop.step_inputs

    def slow_inputs(*args: object, **kwargs: object) -> Iterator[object]:
        for item in loaded(*args, **kwargs):
            time.sleep(0.3)
            yield item

    monkeypatch.setattr(loop, "step_inputs", slow_inputs)
    train_arm(load_model(world["model"]), world["pool"], params, spec, tmp_path, progress=False)
    for row in log_rows(tmp_path):
        seconds = params.train.batch_size / float(row["examples_per_s"])
        assert 0.3 <= float(row["data_s"]) < seconds, row


def test_a_run_seeded_before_seeds_were_nested_is_refused(world: dict) -> None:
    """A run whose identity has no stream seed had its seeds crossed with the bases: training
    and evaluation refuse it, naming the folder to delete."""
    params = params_for(world, steps=2, trainable=["lora"])
    spec = Arm("mono", trained="lora").at(base_seed=0, seed=5)
    base = load_model(world["model"])
    trained = train_arm(base, world["pool"], params, spec, progress=False)
    summary_path = trained.out_dir / SUMMARY_FILE
    summary = json.loads(summary_path.read_text())
    del summary["identity"]["stream_seed"]
    summary_path.write_text(json.dumps(summary))
    refusal = rf"before seeds were nested in bases .*delete {re.escape(str(trained.out_dir))}"
    with pytest.raises(ValueError, match=refusal):
        train_arm(base, world["pool"], params, spec, progress=False)
    with pytest.raises(ValueError, match=refusal):
        next(arm_encoders(params, spec))


def test_a_finished_arm_reads_its_model_only_when_asked(world: dict, tmp_path: Path) -> None:
    """Run again, a finished arm trains nothing and leaves ``model/`` unread until its model is
    used: a caller that keeps only the folder reads no model."""
    params = params_for(world, steps=2, trainable=["full"])
    spec = Arm("mono", trained="full").at(base_seed=0, seed=0)
    base = load_model(world["model"])
    first = train_arm(base, world["pool"], params, spec, tmp_path, progress=False)
    with mock.patch("xlr.train.finetune.load_model", side_effect=AssertionError("read")):
        again = train_arm(base, world["pool"], params, spec, tmp_path, progress=False)
        assert again.summary == first.summary
        with pytest.raises(AssertionError, match="read"):
            again.bundle  # noqa: B018  (the property is the read)
    for name, value in first.bundle.model.state_dict().items():
        assert torch.equal(value, again.bundle.model.state_dict()[name]), name
    assert not again.bundle.model.training


def test_an_arm_finished_by_an_older_xlr_resumes_from_its_final_checkpoint(
    world: dict, tmp_path: Path
) -> None:
    """An older xlr kept the final checkpoint and wrote no identity in the summary: that
    checkpoint still proves which run it was, no step runs, and the folder ends as a finished
    arm does now (identity in the summary, checkpoint dropped)."""
    params = params_for(world, steps=2, trainable=["lora"])
    spec = Arm("hybrid", 0.5, "lora").at(base_seed=0, seed=0)
    base = load_model(world["model"])

    def old_finish(folder: RunFolder, summary: dict, ctx: object, outputs: Callable) -> None:
        outputs()
        (folder.path / SUMMARY_FILE).write_text(json.dumps(summary))

    with mock.patch.object(RunFolder, "finish", old_finish):
        old = train_arm(base, world["pool"], params, spec, tmp_path, progress=False)
    assert load_checkpoint(tmp_path / CHECKPOINT)["step"] == 2
    with mock.patch.object(Trainer, "step", side_effect=AssertionError("a step ran")):
        again = train_arm(base, world["pool"], params, spec, tmp_path, progress=False)
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    identity = arm_folder(spec, world["pool"], LANGS[:3], params, tmp_path, True).identity
    assert summary["identity"] == identity and not (tmp_path / CHECKPOINT).exists()
    assert len(log_rows(tmp_path)) == 2 and again.summary["steps"] == old.summary["steps"]


def test_clear_errors_before_any_training(world: dict, tmp_path: Path) -> None:
    base, pool = load_model(world["model"]), world["pool"]
    params = params_for(world)
    cross = Arm("cross", trained="full").at(base_seed=0, seed=0)
    zero_steps = params.model_copy(update={"train": params.train.model_copy(update={"steps": 0})})
    with pytest.raises(ValueError, match="at least one step"):
        train_arm(base, pool, zero_steps, cross, tmp_path, progress=False)
    for arm in ("cross", "hybrid", "multi"):
        spec = Arm(arm, 0.5 if arm == "hybrid" else None, "full").at(0, 0)
        with pytest.raises(ValueError, match="at least two training languages"):
            train_arm(base, pool, params, spec, tmp_path, langs=["de"], progress=False)
    with pytest.raises(ValueError, match="every training language is held out"):
        train_arm(base, pool, params, cross, tmp_path, langs=["ja"], progress=False)
    without_es = pool.captions[pool.captions["lang"] != "es"]
    pool_without_es = type(pool)(pool.name, pool.image_keys, pool.images, without_es)
    with pytest.raises(ValueError, match=r"no captions in training languages \['es'\]"):
        train_arm(base, pool_without_es, params, cross, tmp_path, progress=False)
    with pytest.raises(ValueError, match="zeroshot"):
        train_arm(base, pool, params, Arm("zeroshot").at(0), tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"train\.batch_size 16 does not split over 3 processes"):
        check_arm_inputs(pool, params, cross, params.data.train_langs, world_size=3)
    assert not list(tmp_path.iterdir())  # refused before writing anything


def test_arm_specs_and_folders(tmp_path: Path) -> None:
    raw = raw_params(tmp_path)
    raw["run"] |= {"seeds": [0, 1], "base_seeds": [3, 4]}
    raw["train"] |= {
        "arms": ["zeroshot", "mono", "hybrid"],
        "alphas": [0.4, 0.6],
        "trainable": ["full", "lora"],
    }
    params = parse_params(raw)
    specs = shared_arms(params)
    assert len(specs) == 2 * (1 + (1 + 2) * 2 * 2)
    names = {s.name for s in specs}
    assert names == {
        "zeroshot", "mono-full", "mono-lora",
        "hybrid-a0.4-full", "hybrid-a0.4-lora", "hybrid-a0.6-full", "hybrid-a0.6-lora",
    }  # fmt: skip
    assert len({s.directory(params) for s in specs}) == len(specs)
    hybrid = Arm("hybrid", 0.5, "full").at(base_seed=3, seed=1)
    assert hybrid.directory(params) == tmp_path / "t/arms/hybrid-a0.5-full/base3/seed1"
    assert Arm("zeroshot").at(4).directory(params) == tmp_path / "t/arms/zeroshot/base4"
    with pytest.raises(ValueError, match="alpha"):
        Arm("mono", 0.5, "full")
    with pytest.raises(ValueError, match="trains"):
        Arm("cross")
    with pytest.raises(ValueError, match="seed"):
        Arm("cross", trained="full").at(0).directory(params)


CAPTIONS = pd.DataFrame(
    {"image_id": [0, 0], "lang": ["en", "de"], "caption_idx": [0, 0], "caption": ["a", "b"]}
)


def test_a_checkpoint_belongs_to_the_data_it_trained_on(tmp_path: Path) -> None:
    """Same params, other prepared data (another validation draw leaves other training images,
    another translation other captions, another download other pixels): another identity, so
    the checkpoint is neither resumed nor passed as finished. Same data: the same identity."""
    params = parse_params(raw_params(tmp_path))
    arm = Arm("cross", trained="full").at(base_seed=0, seed=0)
    pixels = np.arange(3 * 2 * 2 * 3, dtype=np.uint8).reshape(3, 2, 2, 3)
    captions = pd.DataFrame(
        {"image_id": [0, 1, 2], "lang": ["en"] * 3, "caption_idx": [0] * 3, "caption": list("xyz")}
    )
    pool = ImageTextSet("laion", ["k0", "k1", "k2"], ArrayImages(pixels), captions)

    def identity(data: ImageTextSet) -> dict:
        return arm_folder(arm, data, ["en"], params, tmp_path / "a", resume=True).identity

    again = ImageTextSet("laion", ["k0", "k1", "k2"], ArrayImages(pixels.copy()), captions.copy())
    assert identity(again) == identity(pool)
    other_split = ImageTextSet("laion", ["k0", "k1"], ArrayImages(pixels[:2]), captions[:2])
    retranslated = replace(pool, captions=captions.replace("z", "z2"))
    redownloaded = replace(pool, images=ArrayImages(pixels[::-1].copy()))
    for changed in (other_split, retranslated, redownloaded):
        assert identity(changed) != identity(pool)
        assert {k: v for k, v in identity(changed).items() if k != "data"} == {
            k: v for k, v in identity(pool).items() if k != "data"
        }


def test_a_checkpoint_belongs_to_its_base_and_corpus(tmp_path: Path) -> None:
    """An arm's identity holds its base's key, which holds the corpus key: arms trained on a
    corpus of an older format or other lexicons are not resumed as if they were this one's."""
    params = parse_params(raw_params(tmp_path))
    arm = Arm("cross", trained="full").at(base_seed=0, seed=0)
    pool = ImageTextSet("p", ["a"], ArrayImages(np.zeros((1, 2, 2, 3), np.uint8)), CAPTIONS)
    identity = arm_folder(arm, pool, ["en"], params, tmp_path / "a", resume=True).identity
    assert identity["base"] == base_key(params, 0)
    assert base_key(params, 0) != base_key(params, 1)
    with mock.patch("xlr.data.synthetic.corpus.FORMAT_VERSION", -1):
        assert base_key(params, 0) != identity["base"]


def test_a_checkpoint_belongs_to_the_precision_it_was_trained_in(tmp_path: Path) -> None:
    """``train.precision: auto`` is fp32 on the CPU and bf16 on CUDA: a CPU run's arm must not
    resume, or pass as finished, on a GPU (the params alone are the same)."""
    params = parse_params(raw_params(tmp_path))
    arm = Arm("cross", trained="full").at(base_seed=0, seed=0)
    pool = ImageTextSet("p", ["a"], ArrayImages(np.zeros((1, 2, 2, 3), np.uint8)), CAPTIONS)

    def identity(device: str) -> dict:
        with mock.patch("xlr.train.finetune.resolve_device", return_value=torch.device(device)):
            return arm_folder(arm, pool, ["en"], params, tmp_path / "a", resume=True).identity

    assert params.train.precision == "auto" and "precision" not in identity("cpu")  # as before
    assert identity("cuda") == {**identity("cpu"), "precision": "bf16"}
    params = params.model_copy(
        update={"train": params.train.model_copy(update={"precision": "bf16"})}
    )
    assert "precision" not in identity("cuda")  # explicit: in the config hash, as before


@pytest.mark.parametrize("trained", ["full", "lora"])
def test_a_locked_logit_scale_stays_at_the_base_value(
    world: dict, tmp_path: Path, trained: str
) -> None:
    params = params_for(world, steps=2, logit_scale="lock")
    base = load_model(world["model"])
    arm = Arm("mono", trained=trained).at(base_seed=0, seed=0)
    result = train_arm(base, world["pool"], params, arm, tmp_path / trained, progress=False)
    assert torch.equal(result.bundle.model.logit_scale, base.model.logit_scale)
    shared = params_for(world, steps=2)
    assert (
        result.summary["trainable_params"] + 1
        == train_arm(
            base, world["pool"], shared, arm, tmp_path / f"{trained}-scale", progress=False
        ).summary["trainable_params"]
    )


def test_lora_targets_can_add_the_feed_forward_layers_and_the_projection(world: dict) -> None:
    text = load_model(world["model"]).model.text
    plain = lora_targets(text, LoraSection())
    assert plain == [f"transformer.encoder.layer.{i}.attention.self.{t}"
                     for i in range(2) for t in ("query", "value")]  # fmt: skip
    ffn = set(lora_targets(text, LoraSection(ffn=True))) - set(plain)
    assert ffn == {f"transformer.encoder.layer.{i}.{part}.dense"
                   for i in range(2) for part in ("intermediate", "output")}  # fmt: skip
    projection = set(lora_targets(text, LoraSection(projection=True))) - set(plain)
    assert projection == {"proj.0", "proj.2"}  # the linear layers of open_clip's text projection
    with pytest.raises(ValueError, match="match no linear layer"):
        lora_targets(text, LoraSection(target_modules=["nothing"]))


def test_a_lora_on_the_projection_trains_and_merges(world: dict, tmp_path: Path) -> None:
    params = params_for(world, steps=2, trainable=["lora"], lora={"projection": True, "lr": 1e-2})
    base = load_model(world["model"])
    arm = Arm("mono", trained="lora").at(base_seed=0, seed=0)
    result = train_arm(base, world["pool"], params, arm, tmp_path, progress=False)
    trained = [n for n, p in result.bundle.model.named_parameters() if p.requires_grad]
    assert any(".proj.0.lora_A." in n for n in trained)
    merged = load_model(tmp_path / MODEL_DIR).model.state_dict()
    before = base.model.state_dict()
    assert not torch.equal(merged["text.proj.0.weight"], before["text.proj.0.weight"])
