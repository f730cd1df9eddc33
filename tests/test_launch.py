"""``xlr train`` (xlr.launch): one process, two gloo ranks under torchrun, bad requests; and
``benchmarks/gpu_check.sh`` in its dry (CPU) mode, so the commands it runs on a GPU are known.

A shrunken smoke study in a temporary project root: the commands run as a user types them
(``python -m xlr.cli train``, ``python -m torch.distributed.run ... -m xlr.cli train``). Each rank
records what it writes (``tests/write_audit``), so "only rank 0 writes" is observed, not assumed.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from xlr import launch
from xlr.arms import (
    ADAPTERS_DIR,
    LOG_CSV,
    MODEL_DIR,
    SUMMARY_FILE,
    Arm,
    adapter_arms,
    trained_arms,
)
from xlr.cli import main
from xlr.config import Params, load_params
from xlr.data.prepare import finetune_pool, prepare_data
from xlr.launch import LaunchError, select_arms, train
from xlr.models import factory
from xlr.models.bases import base_model_dir, load_base
from xlr.models.factory import HF_CONFIG, WEIGHTS
from xlr.runtime import DistContext
from xlr.train.adapters import train_adapters
from xlr.train.checkpoint import CHECKPOINT
from xlr.train.finetune import train_arm
from xlr.train.pretrain import ensure_base_model

TESTS = Path(__file__).resolve().parent
SMOKE = TESTS.parent / "params" / "smoke.yaml"
GPU_CHECK = TESTS.parent / "benchmarks" / "gpu_check.sh"
ARM = "mono-full"


def write_params(root: Path, name: str, adapters: bool = False, **run: object) -> Path:
    """params/smoke.yaml shrunk to seconds (no tuning grid; the ``adapters`` arm alone, on five
    steps, one per language), as ``root/params/``."""
    raw = yaml.safe_load(SMOKE.read_text())
    raw["run"] |= {"name": name, "device": "cpu", "workers": 1, **run}
    raw["run"] |= {"runs_dir": str(root / "runs"), "cache_dir": str(root / "runs" / "cache")}
    raw["data"]["synthetic"] |= {
        "pretrain_images": 300, "finetune_images": 120, "eval_images": 20, "val_images": 20,
        "shard_size": 300,
    }  # fmt: skip
    raw["model"]["tiny"] |= {"vocab_size": 400, "pretrain_steps": 3, "pretrain_batch_size": 16}
    raw["train"] |= {"steps": 2, "batch_size": 16, "checkpoint_every": 2, "warmup": 1}
    raw["train"] |= {"trainable": ["full"], "tune": {}}
    raw["adapters"] = {"enabled": adapters, "hybrid_alpha": None}
    if adapters:
        raw["train"] |= {"steps": 5, "checkpoint_every": 5}
    path = root / "params" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project root with the data of run ``nb`` and its base, built without dropout in the text
    tower: then two ranks (each drawing its own dropout masks) can match one process."""
    root = tmp_path_factory.mktemp("launch")
    params = load_params(write_params(root, "nb"))
    prepare_data(params, progress=False)
    config_path = ensure_base_model(params, 0, progress=False) / HF_CONFIG
    config = json.loads(config_path.read_text())
    config |= {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    config_path.write_text(json.dumps(config))
    return root


def xlr_train(root: Path, args: list[str], ranks: int = 0, audit: Path | None = None) -> str:
    """Run ``xlr train ARGS`` in ``root`` (under torchrun with ``ranks`` ranks); its output."""
    launcher = [sys.executable]
    if ranks:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    # One process matches this one's thread count (CPU sums are reproducible for a given count);
    # each rank takes one thread.
    threads = 1 if ranks else torch.get_num_threads()
    paths = [str(TESTS.parent), os.environ.get("PYTHONPATH", "")]
    if audit is not None:
        paths.insert(0, str(TESTS / "write_audit"))
    env = os.environ | {
        "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "XLR_ROOT": str(root),
        "PYTHONPATH": os.pathsep.join(paths), "XLR_WRITE_AUDIT": str(audit or ""),
    }  # fmt: skip
    command = [*launcher, "-m", "xlr.cli", "train", *args, "--quiet"]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done.stdout


def weights(params: Params) -> dict[str, torch.Tensor]:
    return load_file(Arm.parse(ARM).at(0, 0).model_dir(params) / WEIGHTS)


def log_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / LOG_CSV, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_one_process_matches_the_notebook_and_two_ranks_match_it(root: Path) -> None:
    notebook = load_params(root / "params" / "nb.yaml")
    spec = Arm.parse(ARM).at(0, 0)
    train_arm(load_base(notebook, 0), finetune_pool(notebook), notebook, spec, progress=False)

    one = load_params(write_params(root, "one"))
    out = xlr_train(root, ["params/one.yaml", "--arm", ARM, "--base"])
    assert out.split() == [str(spec.directory(one))]
    expected, got = weights(notebook), weights(one)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)  # bit for bit
    # notebook 02 finds the arm finished: no step runs again, the same weights stay
    train_arm(load_base(one, 0), finetune_pool(one), one, spec, progress=False)
    assert len(log_rows(spec.directory(one))) == one.train.steps
    assert all(torch.equal(got[k], v) for k, v in weights(one).items())

    shutil.rmtree(root / "runs" / "cache" / "tokens")  # rank 0 must write it again, alone
    audit = root.parent / f"{root.name}-audit"
    audit.mkdir()
    ddp = load_params(write_params(root, "ddp"))
    out = xlr_train(root, ["params/ddp.yaml", "--arm", ARM, "--base"], ranks=2, audit=audit)
    run = root / "runs" / "ddp"
    assert [p.relative_to(run) for p in run.rglob(SUMMARY_FILE)] == [
        spec.directory(ddp).relative_to(run) / SUMMARY_FILE
    ]
    assert not list(run.rglob(CHECKPOINT))  # finished: dropped
    summary = json.loads((spec.directory(ddp) / SUMMARY_FILE).read_text())
    assert summary["world_size"] == 2
    for key, value in weights(ddp).items():
        torch.testing.assert_close(value, got[key], atol=1e-4, rtol=1e-4)
    rank0, rank1 = ((audit / f"rank{r}.txt").read_text() for r in (0, 1))
    assert rank1 == ""  # the hook ran (the file exists) and saw no write
    for written in (CHECKPOINT, "data.json", "tokens", MODEL_DIR, LOG_CSV):
        assert written in rank0, rank0
    # both ranks find the arm finished (none hangs in a barrier the other skipped) and train
    # nothing: not a file of the arm is written again
    folder = spec.directory(ddp)
    written = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    xlr_train(root, ["params/ddp.yaml", "--arm", ARM], ranks=2)
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == written

    # a base not yet cached: rank 0 alone pretrains and writes it (README), the other waits
    base, kept = base_model_dir(ddp, 0), root.parent / f"{root.name}-base"
    shutil.move(base, kept)  # the fixture's base (without dropout) comes back afterwards
    try:
        audit = root.parent / f"{root.name}-audit-base"
        audit.mkdir()
        write_params(root, "rebase")  # a run of its own: test_missing_inputs needs 'fresh' unmade
        xlr_train(root, ["params/rebase.yaml", "--arm", ARM, "--base"], ranks=2, audit=audit)
        rank0, rank1 = ((audit / f"rank{r}.txt").read_text() for r in (0, 1))
        assert rank1 == "" and os.path.realpath(base) in rank0, rank0
        assert (base / WEIGHTS).is_file()
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.move(kept, base)


def test_unknown_arm_is_refused_listing_the_configured_arms(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = str(root / "params" / "nb.yaml")
    for name in ("hybrid-a0.9-full", "nonsense", "mono-lora"):
        assert main(["train", params, "--arm", name]) == 2
        err = capsys.readouterr().err
        assert f"nb.yaml: arm {name!r} is not configured" in err
        assert "the configured arms are: mono-full, cross-full, hybrid-a0.5-full" in err
    assert main(["train", params]) == 2
    assert "--arm NAME" in capsys.readouterr().err


def test_adapter_names_select_their_trained_adapters() -> None:
    params = load_params(SMOKE)
    every = adapter_arms(params)
    assert select_arms(params, ["adapters-nearest"]) == [a for a in every if a.name == "adapters"]
    assert select_arms(params, ["adapters"]) == select_arms(params, ["adapters-base"])
    assert select_arms(params, None) == trained_arms(params)  # --all: 02's arms, then 03's
    assert [a.name for a in select_arms(params, None)][-2:] == ["adapters", "adapters_hybrid-a0.5"]


def test_missing_inputs_name_the_fix(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fresh = load_params(write_params(root, "fresh"))
    with pytest.raises(LaunchError, match="no data prepared.*add --base"):
        train(fresh, [ARM], progress=False)
    assert main(["train", str(root / "params" / "fresh.yaml"), "--all"]) == 2
    assert "no data prepared for run 'fresh'" in capsys.readouterr().err
    # xlr tune as xlr train: on LAION, preparing the data is notebook 01's work (--base does it)
    assert main(["tune", str(root / "params" / "fresh.yaml"), "--quiet"]) == 2
    assert "first; or add --base to prepare it here" in capsys.readouterr().err
    other_base = load_params(write_params(root, "seed5", base_seeds=[5]))
    prepare_data(other_base, progress=False)
    with pytest.raises(LaunchError, match="base of seed 5 is not pretrained.*add --base"):
        train(other_base, [ARM], progress=False)
    assert not base_model_dir(other_base, 5).exists()
    raw = yaml.safe_load((root / "params" / "nb.yaml").read_text())
    raw["train"]["tune"] = {"full": [1e-3, 2e-3]}
    tuned = root / "params" / "tuned.yaml"
    tuned.write_text(yaml.safe_dump(raw))
    assert main(["train", str(tuned), "--arm", ARM]) == 2
    assert "run the tuning first (notebook 02 or `xlr tune PARAMS`)" in capsys.readouterr().err


def test_a_failed_rank_leaves_its_process_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rank of a torchrun job whose training fails (here: no data prepared) still destroys
    its process group, so its NCCL threads and sockets do not outlive the error."""
    two_ranks = DistContext(0, 2, torch.device("cpu"))
    monkeypatch.setattr(launch, "init_distributed", lambda device: two_ranks)
    destroyed = []
    monkeypatch.setattr(launch.dist, "destroy_process_group", lambda: destroyed.append(True))
    with pytest.raises(LaunchError, match="no data prepared"):
        train(load_params(write_params(tmp_path, "fresh")), [ARM], progress=False)
    assert destroyed == [True]


@pytest.mark.slow
def test_adapters_train_as_notebook_03_does(root: Path) -> None:
    """An evaluated adapter name trains the adapters folder notebook 03 writes, with its weights."""
    notebook = load_params(write_params(root, "ad_nb", adapters=True))
    prepare_data(notebook, progress=False)
    spec = Arm("adapters").at(0, 0)
    train_adapters(load_base(notebook, 0), finetune_pool(notebook), notebook, spec, progress=False)
    launched = load_params(write_params(root, "ad_cli", adapters=True))
    assert train(launched, ["adapters-nearest"], build=True, progress=False) == [
        spec.directory(launched)
    ]
    files = sorted((spec.directory(notebook) / ADAPTERS_DIR).rglob("*.safetensors"))
    assert len(files) == len(notebook.data.train_langs)
    for path in files:
        twin = spec.directory(launched) / path.relative_to(spec.directory(notebook))
        expected, got = load_file(path), load_file(twin)
        assert all(torch.equal(expected[k], got[k]) for k in expected)


@pytest.mark.slow
def test_training_finished_arms_again_builds_no_model(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`xlr train` over finished arms reads their summaries and the base's tokenizer (for the
    token cache) and builds no model: for the real study each is 1.4 GB of weights."""
    launched = load_params(write_params(root, "again", adapters=True))
    arms = [ARM, "adapters-nearest"]
    folders = train(launched, arms, build=True, progress=False)

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was built for finished arms")

    monkeypatch.setattr(factory, "_build", no_model)
    assert train(launched, arms, progress=False) == folders


@pytest.mark.slow
def test_gpu_check_runs_every_step_on_the_cpu(tmp_path: Path) -> None:
    """``gpu_check.sh --cpu``: the same commands at tiny sizes, GPU-only parts skipped."""
    params = write_params(tmp_path, "gpucheck")
    env = os.environ | {
        "OUT": str(tmp_path / "out"), "TMPDIR": str(tmp_path), "XLR_PYTHON": sys.executable,
        "XLR_GPU_CHECK_PARAMS": str(params), "HF_HUB_OFFLINE": "1",
        "XLR_SITE": str(tmp_path / "site"),  # never a .site left in the checkout
        "XLR_BENCH_PIPELINE_ARGS": "--images 64 --batch 16 --steps 2 --image-size 32",
        "XLR_BENCH_TRAIN_ARGS": "--batch 8 --steps 4 --skip 1 --image-size 32",
        "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")]),
    }  # fmt: skip
    command = ["bash", str(GPU_CHECK), "--cpu"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    log = (tmp_path / "out" / "gpu_check.log").read_text()
    assert done.returncode == 0, log[-3000:]
    parts = ("(a) project env", "(b) real-architecture", "(c) faiss", "(d) fp16 loss scaling, gloo")
    for part in (*parts, "(e) ranking", "(f) training"):
        assert f"== {part}" in log
    assert "off CUDA: train.precision is 'fp16'" in log and "bf16 on cpu: loss" in log
    assert re.search(r"(?m)^3 passed\b", log) and "SKIPPED" not in log  # fp16, guard lifted
    assert "rank 0 of 2: gloo all_reduce on cpu ok" in log
    assert "rank 1 of 2: gloo all_reduce on cpu ok" in log
    assert "'name': 'hybrid-a0.5-full', 'device': 'cpu', 'world_size': 2" in log
    assert "ranks/matmul" in log and "== done on CPU (dry run)" in log
    assert "tiny model at 32 px on cpu" in log and "(b) s/step, cached features" in log
    assert "samples/s (share waiting for data)" in log and "xlr/open_clip" in log
    assert "of it waiting for data" in log and "loader work an image, one thread" in log
    assert len(list((tmp_path / "runs" / "gpucheck").rglob(SUMMARY_FILE))) == 1
    assert not list((tmp_path / "runs" / "gpucheck").rglob(CHECKPOINT))


def dry_gpu_check(tmp_path: Path, steps: str, **settings: str) -> tuple[int, str]:
    """``gpu_check.sh --cpu`` running ``steps`` with ``settings`` added to its environment: its
    exit status and its log."""
    env = os.environ | {
        "OUT": str(tmp_path / "out"), "TMPDIR": str(tmp_path), "XLR_PYTHON": sys.executable,
        "XLR_GPU_CHECK_STEPS": steps, "HF_HUB_OFFLINE": "1", "XLR_SITE": str(tmp_path / "site"),
        "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")]),
    } | settings  # fmt: skip
    done = subprocess.run(
        ["bash", str(GPU_CHECK), "--cpu"], env=env, capture_output=True, text=True, timeout=300
    )
    return done.returncode, (tmp_path / "out" / "gpu_check.log").read_text()


def test_gpu_check_runs_only_the_steps_asked_for(tmp_path: Path) -> None:
    """``XLR_GPU_CHECK_STEPS`` splits the check over the device tool's calls (README)."""
    returncode, log = dry_gpu_check(tmp_path, "c")
    assert returncode == 0, log[-3000:]
    assert log.count("skipped: not in XLR_GPU_CHECK_STEPS (c)") == 4  # b, d, e and f
    assert "faiss sees no GPU" in log and "ranks/matmul" not in log


def test_a_failed_benchmark_is_named_and_the_next_steps_still_run(tmp_path: Path) -> None:
    """One failure must not cost a lent machine's call the steps after it: the script goes on,
    names what failed at the end and exits 1."""
    returncode, log = dry_gpu_check(tmp_path, "ef", XLR_BENCH_PIPELINE_ARGS="--no-such-argument")
    assert returncode == 1, log[-3000:]
    assert "ranks/matmul" in log  # the step's first benchmark ran
    pipeline = f"{sys.executable} benchmarks/bench_pipeline.py --device cpu --no-such-argument"
    assert f"FAILED (exit 2): {pipeline}" in log
    assert log.index("FAILED (exit 2)") < log.index("== (f) training")  # f still ran
    assert "skipped in a dry run: set XLR_BENCH_TRAIN_ARGS" in log
    assert "== 1 failed on CPU (dry run)" in log and "== done" not in log


def test_gpu_check_installs_the_wheels_it_is_given_first(tmp_path: Path) -> None:
    """``XLR_WHEELS``: wheels carried to a machine without a package index are installed and
    importable before any step runs (``benchmarks/device_kit.sh`` writes the real ones)."""
    project = tmp_path / "project"
    (project / "carried_probe").mkdir(parents=True)
    (project / "carried_probe" / "__init__.py").write_text("WHERE = __file__\n")
    (project / "pyproject.toml").write_text(
        '[project]\nname = "carried-probe"\nversion = "1.0"\n'
        '[tool.setuptools]\npackages = ["carried_probe"]\n'
    )
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index"]
    build += ["--no-build-isolation", "--wheel-dir", str(wheels), str(project)]
    subprocess.run(build, check=True, capture_output=True, timeout=120)
    env = os.environ | {
        "OUT": str(tmp_path / "out"), "TMPDIR": str(tmp_path), "XLR_PYTHON": sys.executable,
        "XLR_GPU_CHECK_STEPS": "-", "XLR_WHEELS": str(wheels), "XLR_SITE": str(tmp_path / "site"),
        "HF_HUB_OFFLINE": "1",
    }  # fmt: skip
    done = subprocess.run(
        ["bash", str(GPU_CHECK), "--cpu"], env=env, capture_output=True, text=True, timeout=300
    )
    log = (tmp_path / "out" / "gpu_check.log").read_text()
    assert done.returncode == 0, log[-3000:]
    assert (tmp_path / "site" / "wheels" / "carried_probe" / "__init__.py").is_file()
    assert f"first on PYTHONPATH: {tmp_path / 'site' / 'wheels'}:{GPU_CHECK.parents[1]}" in log
    env["XLR_GPU_CHECK_STEPS"] = "none"  # "e" is a step: a typo must not run it
    done = subprocess.run(["bash", str(GPU_CHECK), "--cpu"], env=env, capture_output=True)
    assert done.returncode == 2 and b"letters b to f" in done.stderr


@pytest.mark.parametrize("script", [GPU_CHECK, GPU_CHECK.with_name("device_kit.sh")])
def test_gpu_check_is_valid_bash(script: Path) -> None:
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    if shutil.which("shellcheck"):
        done = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout
