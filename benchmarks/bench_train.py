"""Training samples/s of an xlr arm against open_clip's own trainer: same model, batch, precision
and shards.

open_clip's trainer is ``open_clip_train.main`` itself (``--dataset-type webdataset``,
``--lock-image``: the text tower and the logit scale train, CLIP loss, AdamW), reading the shards
as its users do. xlr's is :func:`xlr.train.finetune.train_arm` (what ``xlr train`` runs) for a
``mono-full`` arm on a pool of the same shards with one English caption an image: a mono batch
then has no text-text rows, so each step does open_clip's work (a locked image tower's forward,
one text forward and backward, AdamW), fed by xlr's DataLoader pipeline
(:mod:`xlr.train.inputs`) reading the images by offset. Both use the model folder's train
transform, ``--workers`` loader processes, and the same learning rate, weight decay and gradient
clipping. Each step's time is what each trainer logs (open_clip's samples/s per step with
``--log-every-n-steps 1``; xlr's ``log.csv``), from the end of the step before to the end of
this one; the first ``--skip`` steps (workers starting, first allocations) are left out.
Beside each rate it prints the share of those steps' time spent waiting for the batch (open_clip's
``Data (t)``, its copy to the device included; xlr's ``data_s``, until the loader hands the batch
over; each from the end of the step before, its logging included): near 100%, the loaders set the
pace, not the device. Both clocks wait for the GPU at the end of a step (the launcher makes
open_clip's, which only ``time.time()`` reads, synchronise first), so a step's GPU work is in its
own time, not in the next step's wait. Last, the seconds one loader worker
spends on an image each trainer's way (:func:`loader_seconds`): why one loader is faster.

The shards are img2dataset-like 256 px JPEGs (``bench_pipeline.bench_shards``), split into
``2 x --workers`` tars so that each of open_clip's workers gets its share. open_clip 3.3 with
webdataset >= 0.2.96 fails on the end-of-shard marker webdataset now yields
(mlfoundations/open_clip#935); the launcher here passes ``eof_value=None``, the fix given in
that issue, and changes nothing else. On CUDA, open_clip's main also turns on TF32 matmuls and
cuDNN benchmarking: compare at ``--precision bf16``, the study's, where those do not matter.

    python benchmarks/bench_train.py [--batch 32] [--steps 40] [--skip 3] [--workers 2]
        [--image-size 64] [--precision fp32] [--device cpu] [--model-dir DIR | --study-model]

``--study-model`` builds the study's architecture (open_clip's ``xlm-roberta-base-ViT-B-32``) with
random weights offline, as the rehearsal does (``tests/rehearsal_world.py``).
"""

from __future__ import annotations

import argparse
import gc
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from bench_pipeline import bench_params, bench_shards, model_folder
from timing import best_times

from xlr.arms import LOG_CSV, Arm
from xlr.config import Params
from xlr.data.imagetext import ImageTextSet, model_pixels
from xlr.data.shards import ShardImages, shard_images
from xlr.models.factory import LOCAL_DIR, load_model
from xlr.runtime import DistContext
from xlr.train.finetune import train_arm

OPEN_CLIP_TIMEOUT_S = 240  # one run took under a minute on an H200: a hang stops here, not at
# the lent machine's limit, where its output would be lost
DISTINCT_IMAGES = 1024  # JPEGs drawn for the shards, repeated in turn to any size
LOADER_IMAGES = 256  # images a pass of loader_seconds prepares (fewer if the shards hold fewer)
OPEN_CLIP_PRECISION = {"fp32": "fp32", "bf16": "amp_bf16", "fp16": "amp"}
# open_clip_train.main with the fix of mlfoundations/open_clip#935 (webdataset's EOF marker), and
# its step clock waiting for the GPU, as xlr's does (its metrics are read back each step): else
# a step's queued GPU work would be counted in the next step's Data (t), where open_clip's log
# line reads it back, and a GPU-bound run would look input-bound
LAUNCHER = """
import functools, sys, time, types
import torch
import open_clip_train.data as data
import open_clip_train.train as train
data.tar_file_expander = functools.partial(data.tar_file_expander, eof_value=None)
def synced():
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.time()
train.time = types.SimpleNamespace(time=synced)
from open_clip_train.main import main
main(sys.argv[1:])
"""
# one step's line of open_clip's log: "[ 64/512 (12%)] Data (t): 0.001 Batch (t): 0.046, 691.980/s,"
OPEN_CLIP_STEP = re.compile(
    r"\[\s*\d+/\d+ \(\d+%\)\] Data \(t\): ([\d.]+) Batch \(t\): [\d.]+, ([\d.e+]+)/s,"
)


def bench_pool(shard_dir: Path) -> ImageTextSet:
    """The shards' images with their one caption each, as an English pool xlr trains on."""
    keys, store = shard_images(shard_dir)
    meta = pq.read_table(sorted(shard_dir.glob("*.parquet")), columns=["key", "caption"])
    caption_of = dict(zip(meta["key"].to_pylist(), meta["caption"].to_pylist(), strict=True))
    captions = pd.DataFrame(
        {
            "image_id": np.arange(len(keys)),
            "lang": "en",
            "caption_idx": 0,
            "caption": [caption_of[key] for key in keys],
        }
    )
    return ImageTextSet("bench", keys, store, captions, parallel=True)


def study_model_dir(root: Path, captions: list[str]) -> Path:
    """``xlm-roberta-base-ViT-B-32`` at its real size with random weights and a stand-in
    tokenizer trained on ``captions``, built as the rehearsal builds it."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from rehearsal_world import write_study_model

    return write_study_model(captions, root / "tokenizer", root / "study")


def train_params(base: Params, args: argparse.Namespace) -> Params:
    """``base`` with the compared run's training section: ``--steps`` of ``--batch``, no
    warm-up, a checkpoint only at the end, images encoded every step (no feature cache)."""
    train = base.train.model_copy(
        update={
            "steps": args.steps, "batch_size": args.batch, "warmup": 0,
            "precision": args.precision, "loader_workers": args.workers,
            "checkpoint_every": args.steps, "cache_image_features": False,
        }
    )  # fmt: skip
    data = base.data.model_copy(update={"train_langs": ["en"], "heldout_langs": []})
    return base.model_copy(update={"train": train, "data": data})


def xlr_step_seconds(
    params: Params, folder: Path, pool: ImageTextSet, out: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Seconds of each step of xlr's ``mono-full`` arm and the seconds of it spent waiting for
    the batch (``data_s``), from its ``log.csv``."""
    arm = Arm("mono", trained="full").at(0, 0)
    train_arm(load_model(folder), pool, params, arm, out, langs=["en"], progress=False)
    log = pd.read_csv(out / LOG_CSV)
    return params.train.batch_size / log["examples_per_s"].to_numpy(), log["data_s"].to_numpy()


def open_clip_step_seconds(
    params: Params, folder: Path, shard_dir: Path, out: Path, device: str
) -> tuple[np.ndarray, np.ndarray]:
    """Seconds of each step of ``open_clip_train.main`` on ``shard_dir`` and the seconds of it
    spent waiting for the batch (``Data (t)``, the copy to the device included), from its log."""
    train = params.train
    tars = sorted(shard_dir.glob("*.tar"))
    command = [
        sys.executable, "-c", LAUNCHER,
        "--model", f"{LOCAL_DIR}{folder}", "--dataset-type", "webdataset",
        "--train-data", "::".join(str(tar) for tar in tars),
        "--train-num-samples", str(train.steps * train.batch_size),
        "--batch-size", str(train.batch_size), "--epochs", "1",
        "--precision", OPEN_CLIP_PRECISION[train.precision], "--workers", str(train.loader_workers),
        "--lock-image", "--lr", str(train.lr), "--wd", str(train.weight_decay), "--warmup", "0",
        "--save-frequency", "0", "--log-every-n-steps", "1", "--report-to", "",
        "--logs", str(out), "--name", "open_clip", "--seed", "0", "--device", device,
    ]  # fmt: skip
    if train.grad_clip is not None:
        command += ["--grad-clip-norm", str(train.grad_clip)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=OPEN_CLIP_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as late:
        tail = (late.stderr or b"")[-4000:]
        tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        raise RuntimeError(f"open_clip_train ran past {OPEN_CLIP_TIMEOUT_S} s:\n{tail}") from None
    if done.returncode != 0:
        raise RuntimeError(f"open_clip_train failed ({done.returncode}):\n{done.stderr[-4000:]}")
    log = (out / "open_clip" / "out.log").read_text(encoding="utf-8")
    steps = np.array(OPEN_CLIP_STEP.findall(log), dtype=np.float64).reshape(-1, 2)
    return train.batch_size / steps[:, 1], steps[:, 0]


def rate_and_wait(
    seconds: np.ndarray, waited: np.ndarray, args: argparse.Namespace, who: str
) -> tuple[float, float]:
    """Samples/s over steps ``--skip ..`` of ``--steps``, and the share of their time spent
    waiting for batches, after checking that all of them ran."""
    if len(seconds) != args.steps:
        raise AssertionError(f"{who} logged {len(seconds)} steps, not {args.steps}")
    total = float(seconds[args.skip :].sum())
    return args.batch * (args.steps - args.skip) / total, float(waited[args.skip :].sum()) / total


def compared_rates(
    params: Params, folder: Path, pool: ImageTextSet, root: Path, args: argparse.Namespace
) -> list[dict[str, tuple[float, float]]]:
    """Samples/s of ``open_clip_train`` (on ``root / "shards"``) and ``xlr`` (on ``pool``, the
    same shards), each with the share of its steps' time spent waiting for batches, in each of
    ``--repeats`` rounds, the order of the two alternating from round to round (a warm page
    cache or GPU favours neither); each run trains afresh in a folder of its own."""

    def measured(who: str, repeat: int) -> tuple[float, float]:
        if who == "xlr":
            seconds, waited = xlr_step_seconds(params, folder, pool, root / f"xlr{repeat}")
        else:
            out = root / f"open_clip{repeat}"
            seconds, waited = open_clip_step_seconds(
                params, folder, root / "shards", out, args.device
            )
        gc.collect()  # hand the GPU memory an in-process run cached to the next run
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        samples, waiting = rate_and_wait(seconds, waited, args, who)
        # as each run ends, so that a run stopped at a time limit still leaves its figures
        shown = f"{samples:.1f} samples/s, {waiting:.0%} of it waiting for data"
        print(f"round {repeat + 1}: {who} {shown}", flush=True)
        return samples, waiting

    sides = ["xlr", "open_clip_train"]
    return [
        {who: measured(who, repeat) for who in (sides if repeat % 2 == 0 else sides[::-1])}
        for repeat in range(args.repeats)
    ]


def loader_seconds(store: ShardImages, folder: Path) -> dict[str, float]:
    """Seconds a loader worker (one thread) spends on an image, each trainer's way, best of three
    passes over the first ``LOADER_IMAGES`` of ``store``: open_clip's runs the model's whole
    train transform and stacks floats; xlr's (:func:`xlr.data.imagetext.model_pixels`) stops
    before ``ToTensor`` and stacks uint8. Both read the same images by offset and decode them
    with PIL (open_clip's workers stream the tars instead and also tokenize, which this leaves
    out)."""
    bundle = load_model(folder)
    rows = np.arange(min(LOADER_IMAGES, len(store)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    try:
        whole, cut = best_times(
            [
                lambda: torch.stack([bundle.preprocess_train(store[int(i)]) for i in rows]),
                lambda: model_pixels(store, rows, bundle.model, bundle.preprocess_train),
            ],
            3,
        )
    finally:
        torch.set_num_threads(threads)
    return {"open_clip_train": whole / len(rows), "xlr": cut / len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--skip", type=int, default=8, help="first steps left out of the rate")
    parser.add_argument("--workers", type=int, default=2, help="loader processes of each")
    parser.add_argument("--repeats", type=int, default=2, help="rounds, the order alternating")
    parser.add_argument("--image-size", type=int, default=64, help="the tiny model's")
    parser.add_argument("--precision", default="fp32", choices=sorted(OPEN_CLIP_PRECISION))
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    models = parser.add_mutually_exclusive_group()
    models.add_argument("--model-dir", default=None, help="a model folder instead of the tiny")
    models.add_argument(
        "--study-model", action="store_true", help="xlm-roberta-base-ViT-B-32, random weights"
    )
    args = parser.parse_args()
    if not 0 <= args.skip < args.steps:
        parser.error(f"--skip must be in 0 .. --steps - 1, got {args.skip}")
    if args.steps % max(args.workers, 1):
        parser.error("--steps must be a multiple of --workers (open_clip's workers split steps)")
    ctx = DistContext(0, 1, torch.device(args.device))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        base = bench_params(root, args.batch, args.image_size, ctx)
        tars = 2 * max(args.workers, 1)
        # every open_clip worker reads its own tars: enough images in each for all its steps
        per_tar = math.ceil(args.steps / tars + 1) * args.batch
        bench_shards(root, tars * per_tar, per_tar, distinct=DISTINCT_IMAGES)
        pool = bench_pool(root / "shards")
        if args.study_model:
            folder = study_model_dir(root, pool.captions["caption"].tolist())
        else:
            folder = model_folder(root, base, args.image_size, args.model_dir)
        print(f"shards and model written ({time.perf_counter() - start:.0f} s)", flush=True)
        rounds = compared_rates(train_params(base, args), folder, pool, root, args)
        per_image = loader_seconds(pool.images, folder)
    shown = args.model_dir or f"tiny model at {args.image_size} px"
    if args.study_model:
        shown = "xlm-roberta-base-ViT-B-32 (random weights) at 224 px"
    print(
        f"{shown} on {args.device}, {args.precision}, batch {args.batch}, steps {args.skip + 1}"
        f"-{args.steps} of {args.steps}, {args.workers} loader workers each "
        f"({time.perf_counter() - start:.0f} s)"
    )
    print(
        f"{'samples/s (share waiting for data)':<36}{'open_clip':>14}{'xlr':>14}"
        f"{'xlr/open_clip':>15}"
    )
    for n, one in enumerate(rounds):
        (theirs, their_wait), (ours, our_wait) = one["open_clip_train"], one["xlr"]
        label = f"round {n + 1} ({next(iter(one))} first)"
        print(
            f"{label:<36}{f'{theirs:.1f} ({their_wait:.0%})':>14}"
            f"{f'{ours:.1f} ({our_wait:.0%})':>14}{ours / theirs:>15.2f}"
        )
    best = {who: max(one[who][0] for one in rounds) for who in ("open_clip_train", "xlr")}
    theirs, ours = best["open_clip_train"], best["xlr"]
    print(f"{'best of each':<36}{theirs:>14.1f}{ours:>14.1f}{ours / theirs:>15.2f}")
    print(
        "(open_clip's wait includes its float batch's copy to the device, xlr's ends before "
        "its uint8 batch's copy)"
    )
    shown = ", ".join(f"{who} {1e3 * seconds:.2f} ms" for who, seconds in per_image.items())
    print(f"loader work an image, one thread: {shown}")


if __name__ == "__main__":
    main()
