"""The training input pipeline (DataLoader workers over whole steps, images read from the shards),
cached image features, and the training precisions, on the tiny offline world.

Images read from the shards go through open_clip's train transform, whose random crop draws from
torch's generator: the pipeline must seed it per step for workers and resume to be exact.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import math
import shutil
import tarfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
import torch.distributed as dist
from conftest import build_tiny_world, tiny_raw_params
from open_clip.model import CustomTextCLIP
from PIL import Image
from safetensors.torch import load_file

from xlr import runtime
from xlr.arms import LOG_CSV, MODEL_DIR, Arm
from xlr.config import Params, parse_params
from xlr.data.digest import images_digest
from xlr.data.imagetext import ArrayImages, ImageTextSet
from xlr.data.shards import Sample, read_shards, shard_images, write_shards
from xlr.models.bases import base_key
from xlr.models.encode import encode_images
from xlr.models.factory import WEIGHTS, load_model
from xlr.runtime import RANK0_WAIT, DistContext, autocast
from xlr.train.adapters import train_adapters
from xlr.train.checkpoint import CHECKPOINT, load_checkpoint
from xlr.train.finetune import arm_sampler, train_arm
from xlr.train.image_cache import (
    cached_image_features,
    check_locked_image_tower,
    encode_pool_images,
    image_cache_path,
)
from xlr.train.inputs import step_inputs
from xlr.train.loop import RunFolder, Trainer, check_train_precision
from xlr.train.objective import contrastive_objective
from xlr.train.pretrain import pretrain
from xlr.train.trainable import unlock_text_tower

LANGS = ["en", "de", "es", "ja"]
MONO, CROSS = Arm("mono", trained="full").at(0, 0), Arm("cross", trained="full").at(0, 0)
ADAPTERS = Arm("adapters").at(0, 0)
CPU_CTX = DistContext(0, 1, torch.device("cpu"))


def raw_params(runs: Path, **train: object) -> dict:
    defaults = {"steps": 4, "batch_size": 16, "checkpoint_every": 2, "warmup": 1, "lr": 1e-3}
    no_adapters = {"enabled": False, "hybrid_alpha": None}
    raw = tiny_raw_params(
        runs, LANGS, ["en", "de", "es"], ["ja"], train=defaults | train, adapters=no_adapters
    )
    raw["run"]["cache_dir"] = str(runs / "cache")  # token ids and image features
    return raw


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny world, and its fine-tuning pool with the images left in the shards."""
    root = tmp_path_factory.mktemp("inputs")
    tiny = build_tiny_world(root, raw_params(root / "runs"))
    shard_dir = tiny.corpus / "finetune" / "shards"
    ids = {sample["key"]: sample["json"]["image_id"] for sample in read_shards(shard_dir)}
    keys = sorted(ids, key=ids.__getitem__)  # the pool's image order
    _, store = shard_images(shard_dir, keys)
    return {
        "root": root, "pool": tiny.pool, "model": tiny.model_dir, "shard_dir": shard_dir,
        "shard_pool": dataclasses.replace(tiny.pool, images=store),
    }  # fmt: skip


def params_for(world: dict, **train: object) -> Params:
    return parse_params(raw_params(world["root"] / "runs", **train))


def read_log(out: Path) -> list[dict[str, str]]:
    with open(out / LOG_CSV, newline="") as handle:
        return list(csv.DictReader(handle))


def log_losses(out: Path) -> list[float]:
    return [float(row["loss"]) for row in read_log(out)]


def test_shard_images_read_each_image_where_webdataset_finds_it(world: dict) -> None:
    keys, store = shard_images(world["shard_dir"])
    samples = list(read_shards(world["shard_dir"]))
    assert keys == [sample["key"] for sample in samples]
    assert all(store.read(i) == sample["jpg"] for i, sample in enumerate(samples))
    pool: ImageTextSet = world["shard_pool"]
    decoded = np.asarray(pool.images[5])
    assert decoded.shape == world["pool"].images.pixels[5].shape  # the same image, decoded again
    assert np.abs(decoded.astype(int) - world["pool"].images.pixels[5]).max() == 0
    with pytest.raises(KeyError, match="read them again"):
        shard_images(world["shard_dir"], [*keys[:2], "nope"])


@pytest.mark.parametrize("cut", ["half", "last image"])
def test_a_tar_cut_short_is_named_with_the_fix(world: dict, tmp_path: Path, cut: str) -> None:
    """An interrupted copy of shards downloaded elsewhere passes their stats and parquet checks:
    cut in a header (half way) or inside its last image's bytes, the tar is named."""
    shard_dir = tmp_path / "shards"
    shutil.copytree(world["shard_dir"], shard_dir)
    tar = sorted(shard_dir.glob("*.tar"))[-1]
    data = tar.read_bytes()
    with tarfile.open(tar, "r:") as archive:
        images = [m for m in archive if m.name.endswith((".jpg", ".png", ".webp"))]
    end = len(data) // 2 if cut == "half" else images[-1].offset_data + images[-1].size - 1
    tar.write_bytes(data[:end])
    with pytest.raises(ValueError, match=rf"{tar.name}: the tar is cut short.*download that shard"):
        shard_images(shard_dir)


def test_seed_k_of_two_bases_draws_different_batches(world: dict) -> None:
    params = params_for(world)
    langs = ["en", "de", "es"]
    captions = world["pool"].captions
    captions = captions[captions["lang"].isin(langs)].reset_index(drop=True)
    arm = Arm("hybrid", 0.5, "full")

    def drawn(base_seed: int, seed: int) -> list[list[str]]:
        sampler = arm_sampler(arm.at(base_seed, seed), captions, langs, params)
        return [list(sampler.batch(step).query_texts) for step in range(4)]

    assert drawn(0, 0) == drawn(0, 0)
    assert drawn(0, 0) != drawn(1, 0)


def test_workers_yield_the_steps_of_the_synchronous_path(world: dict) -> None:
    """Two worker processes and the main process load the same steps: the same shards and the
    same randomly cropped pixels (the train transform runs on images from the shards)."""
    params = params_for(world)
    base = load_model(world["model"])
    pool = world["shard_pool"]
    arm = Arm("hybrid", 0.5, "full").at(base_seed=0, seed=3)
    captions = pool.captions[pool.captions["lang"].isin(["en", "de", "es"])]
    captions = captions.reset_index(drop=True)
    sampler = arm_sampler(arm, captions, ["en", "de", "es"], params)
    objective = contrastive_objective(base, pool, captions, params, 1)

    def plan(step: int) -> tuple:
        return sampler.batch(step), 1000 + step

    here = list(step_inputs(plan, objective.load, 1, 5, CPU_CTX, workers=0))
    forked = list(step_inputs(plan, objective.load, 1, 5, CPU_CTX, workers=2))
    assert [item.step for item in forked] == [1, 2, 3, 4] == [item.step for item in here]
    for a, b in zip(here, forked, strict=True):
        assert a.seed == b.seed and np.array_equal(a.shard.image_ids, b.shard.image_ids)
        assert a.shard.query_texts == b.shard.query_texts
        assert torch.equal(a.loaded, b.loaded)
    assert not torch.equal(here[0].loaded, here[1].loaded)
    again = next(iter(step_inputs(plan, objective.load, 1, 2, CPU_CTX, workers=0)))
    assert torch.equal(again.loaded, here[0].loaded)  # the crop is a function of the step


def test_the_crop_follows_the_plans_seed_not_the_global_step(world: dict) -> None:
    """An adapter's step lands on another global step under another schedule or language set,
    with its batch and seed unchanged: its crop must not change either (the adapters' claim
    that the schedule changes the order of steps, never the weights)."""
    params = params_for(world)
    pool = world["shard_pool"]
    captions = pool.captions[pool.captions["lang"] == "de"].reset_index(drop=True)
    sampler = arm_sampler(Arm("mono", trained="full").at(0, 3), captions, ["de"], params)
    objective = contrastive_objective(load_model(world["model"]), pool, captions, params, 1)

    def plan(step: int) -> tuple:
        return sampler.batch(0), 1234  # the same language step wherever it falls

    steps = list(step_inputs(plan, objective.load, 0, 3, CPU_CTX, workers=0))
    assert torch.equal(steps[0].loaded, steps[2].loaded)


def test_an_interrupted_run_with_workers_resumes_to_the_weights_of_one_without(
    world: dict, tmp_path: Path
) -> None:
    """Workers read and crop images from the shards; the run stops after its first checkpoint
    and resumes; its weights equal those of an uninterrupted run that loaded in the main
    process."""
    pool = world["shard_pool"]
    arm = Arm("hybrid", 0.5, "full").at(base_seed=0, seed=1)
    reference = train_arm(
        load_model(world["model"]), pool, params_for(world, steps=6, checkpoint_every=3,
        loader_workers=0), arm, tmp_path / "ref", progress=False,
    )  # fmt: skip
    params = params_for(world, steps=6, checkpoint_every=3, loader_workers=2)
    step = Trainer.step
    calls = []

    def stop_at_step_four(self: Trainer, batch: object, loaded: object = None) -> dict:
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return step(self, batch, loaded)

    out = tmp_path / "stopped"
    with mock.patch.object(Trainer, "step", stop_at_step_four), pytest.raises(KeyboardInterrupt):
        train_arm(load_model(world["model"]), pool, params, arm, out, progress=False)
    assert load_checkpoint(out / CHECKPOINT)["step"] == 3
    train_arm(load_model(world["model"]), pool, params, arm, out, progress=False)
    expected = load_file(reference.out_dir / MODEL_DIR / WEIGHTS)
    got = load_file(out / MODEL_DIR / WEIGHTS)
    assert all(torch.equal(expected[key], got[key]) for key in expected)
    assert log_losses(out) == log_losses(reference.out_dir)


def test_pretraining_with_workers_gives_the_weights_of_pretraining_without(world: dict) -> None:
    """Pretraining reseeds no step (one dropout stream): the workers must not draw from it."""
    pool = world["pool"]
    first = pool.captions[(pool.captions["lang"] == "en") & (pool.captions["caption_idx"] == 0)]
    pairs = dataclasses.replace(pool, captions=first.reset_index(drop=True))
    weights = []
    for workers in (0, 2):
        raw = raw_params(world["root"] / "runs", loader_workers=workers)
        raw["model"]["tiny"] |= {"pretrain_steps": 3, "pretrain_batch_size": 8}
        bundle = load_model(world["model"])
        pretrain(
            bundle, pairs, parse_params(raw), 0, weight_decay=0.1, grad_clip=1.0,
            precision="fp32", progress=False,
        )  # fmt: skip
        weights.append(bundle.model.state_dict())
    assert all(torch.equal(value, weights[1][key]) for key, value in weights[0].items())


@pytest.mark.parametrize(
    ("precision", "tolerance"), [("fp32", (1e-5, 1e-6)), ("bf16", (2e-2, 1e-3))]
)
def test_cached_features_give_the_loss_and_gradients_of_the_locked_image_tower(
    world: dict, precision: str, tolerance: tuple[float, float]
) -> None:
    """Known answer: one step's loss and text-tower gradients, with the image features read from
    the cache and with the image tower run, agree to float tolerance; in bf16 too, where both
    normalise the features in float32 after autocast (the cache as evaluation encodes), and the
    features that reach the loss are unit rows."""
    params = params_for(world, precision=precision)
    pool = world["pool"]
    base = load_model(world["model"])
    model = base.model
    unlock_text_tower(model)
    model.eval()  # no dropout: the two passes see the same text forward
    arm = Arm("cross", trained="full").at(base_seed=0, seed=0)
    features = cached_image_features(base, pool, params, "k", model, CPU_CTX)
    captions = pool.captions[pool.captions["lang"].isin(["en", "de"])].reset_index(drop=True)
    batch = arm_sampler(arm, captions, ["en", "de"], params).batch(0)
    results = []
    rtol, atol = tolerance
    cpu = torch.device("cpu")
    for cached in (None, features):
        objective = contrastive_objective(base, pool, captions, params, 1, image_features=cached)
        model.zero_grad(set_to_none=True)
        with autocast(cpu, precision):
            loss, _ = objective(model, batch, cpu, objective.load(batch))
            query, _ = objective.text_features(model, objective.tokens, batch, cpu)
        assert query.dtype == torch.float32
        torch.testing.assert_close(query.norm(dim=1), torch.ones(len(query)))
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((loss.detach(), grads))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert grads_a.keys() == grads_b.keys() and any(k.startswith("text.") for k in grads_a)
    torch.testing.assert_close(loss_b, loss_a, rtol=rtol, atol=atol)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=10 * rtol, atol=atol)


def test_two_arms_encode_the_images_once(world: dict, tmp_path: Path) -> None:
    """The first arm of a base encodes the pool's images into the cache; the second reads them;
    neither runs the image tower in its steps."""
    params = params_for(world, steps=2, cache_image_features=True)
    calls = []
    encode = CustomTextCLIP.encode_image

    def counted(self: CustomTextCLIP, image: torch.Tensor, normalize: bool = False) -> object:
        calls.append(len(image))
        return encode(self, image, normalize=normalize)

    base = load_model(world["model"])
    with mock.patch.object(CustomTextCLIP, "encode_image", counted):
        first = train_arm(base, world["pool"], params, MONO, tmp_path / "a", progress=False)
        assert sum(calls) == len(world["pool"])  # every image once, by the cache
        second = train_arm(base, world["pool"], params, CROSS, tmp_path / "b", progress=False)
    assert sum(calls) == len(world["pool"])
    assert first.summary["steps"] == second.summary["steps"] == 2
    key = base_key(params, 0)
    assert image_cache_path(base, world["pool"], params, key, torch.device("cpu")).is_file()
    uncached = params_for(world, steps=2)
    train_arm(base, world["pool"], uncached, MONO, tmp_path / "c", progress=False)
    np.testing.assert_allclose(log_losses(tmp_path / "a"), log_losses(tmp_path / "c"), rtol=1e-5)


def _jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def _shard_pool(shard_dir: Path) -> ImageTextSet:
    keys, store = shard_images(shard_dir)
    captions = pd.DataFrame({"image_id": range(len(keys)), "lang": "en", "caption_idx": 0,
                             "caption": "a photo"})  # fmt: skip
    return ImageTextSet("laion", keys, store, captions)


def _downloaded(shard_dir: Path, seeds: list[int]) -> ImageTextSet:
    """A pool of img2dataset-shaped shards: its keys are positions, whatever the images."""
    samples = [Sample(f"http://x/{s}.jpg", f"c{s}", _jpeg(s), 24, 24, {}) for s in seeds]
    write_shards(samples, shard_dir, shard_size=2, additional=pa.schema([]))
    return _shard_pool(shard_dir)


def test_the_cache_decodes_in_workers_to_the_features_of_one_process(
    world: dict, tmp_path: Path
) -> None:
    """JPEGs read from the shards and decoded by 0 or 2 DataLoader workers give bit for bit the
    features :func:`encode_images` computes in one process (a short last batch included), and
    the worker count names no other cache file: the second run reads the first's."""
    pool = world["shard_pool"]
    base = load_model(world["model"])
    unlock_text_tower(base.model)  # the image tower locked, as the cache requires
    raw = raw_params(world["root"] / "runs")
    raw["run"]["cache_dir"] = str(tmp_path)
    raw["eval"] = {"batch_size": 7}
    assert len(pool) % 7
    expected = encode_images(
        base.model, base.preprocess_val, pool.images, torch.device("cpu"), batch_size=7,
        precision=parse_params(raw).train.precision,
    )  # fmt: skip
    for workers in (0, 2):
        params = parse_params(raw | {"train": raw["train"] | {"loader_workers": workers}})
        features = encode_pool_images(
            base.model, base.preprocess_val, pool.images, params, torch.device("cpu")
        )
        assert torch.equal(features, torch.from_numpy(expected))
    paths = set()
    for workers in (2, 0):
        params = parse_params(raw | {"train": raw["train"] | {"loader_workers": workers}})
        paths.add(image_cache_path(base, pool, params, "k", torch.device("cpu")))
        with mock.patch.object(
            CustomTextCLIP, "encode_image", wraps=base.model.encode_image
        ) as spy:
            features = cached_image_features(base, pool, params, "k", base.model, CPU_CTX)
        assert spy.called == (workers == 2)  # encoded once, then read back
        assert torch.equal(features, torch.from_numpy(expected))
    assert len(paths) == 1


@pytest.mark.parametrize("workers", [0, 2])
def test_a_bad_image_in_the_cache_names_its_shard_and_position(
    world: dict, tmp_path: Path, workers: int
) -> None:
    seeds = [0, 1, 2]
    samples = [Sample(f"http://x/{s}.jpg", f"c{s}", _jpeg(s), 24, 24, {}) for s in seeds]
    samples[1] = dataclasses.replace(samples[1], jpg=b"not a jpeg at all")
    write_shards(samples, tmp_path / "shards", shard_size=2, additional=pa.schema([]))
    pool = _shard_pool(tmp_path / "shards")
    raw = raw_params(world["root"] / "runs", loader_workers=workers)
    raw["run"]["cache_dir"] = str(tmp_path / "cache")
    base = load_model(world["model"])
    unlock_text_tower(base.model)
    with pytest.raises(ValueError, match=r"00000\.tar: image 1 \(at byte \d+\) cannot be decoded"):
        cached_image_features(base, pool, parse_params(raw), "k", base.model, CPU_CTX)
    assert not list((tmp_path / "cache").rglob("*.safetensors"))


def test_the_cache_key_follows_the_images_not_their_keys(world: dict, tmp_path: Path) -> None:
    """Two LAION samples whose surviving keys coincide get two cache files; a moved folder
    keeps its file; decoded pixels count too."""
    params, base, cpu = params_for(world), load_model(world["model"]), torch.device("cpu")
    one = _downloaded(tmp_path / "one", [0, 1, 2])
    other = _downloaded(tmp_path / "other", [3, 4, 5])
    assert list(one.image_keys) == list(other.image_keys)
    path = image_cache_path(base, one, params, "k", cpu)
    assert image_cache_path(base, other, params, "k", cpu) != path
    moved = shutil.copytree(tmp_path / "one", tmp_path / "moved")
    assert image_cache_path(base, _shard_pool(moved), params, "k", cpu) == path
    for shard in ("00000", "00001"):  # without the parquet files, the images' bytes decide
        (moved / f"{shard}.parquet").unlink()
        (tmp_path / "other" / f"{shard}.parquet").unlink()
    assert images_digest(shard_images(moved)[1]) != images_digest(other.images)
    pool = world["pool"]
    pixels = pool.images.pixels.copy()
    pixels[0, 0, 0, 0] ^= 1
    changed = dataclasses.replace(pool, images=ArrayImages(pixels))
    assert image_cache_path(base, changed, params, "k", cpu) != image_cache_path(
        base, pool, params, "k", cpu
    )


def test_other_ranks_wait_for_the_encoding_on_the_long_timeout_group(
    world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decoding 900k images outlasts NCCL's 10-minute barrier: the wait runs on
    :func:`xlr.runtime.rank0_first`'s gloo group, and only rank 0 encodes."""
    raw = raw_params(world["root"] / "runs")
    raw["run"]["cache_dir"] = str(tmp_path)
    params, base = parse_params(raw), load_model(world["model"])
    unlock_text_tower(base.model)
    calls: list[tuple] = []
    group = object()
    monkeypatch.setattr(dist, "new_group", lambda **kw: calls.append(("new_group", kw)) or group)
    monkeypatch.setattr(  # rank 0 tells each rank how its work went, on that group
        runtime,
        "_tell_every_rank",
        lambda ctx, group, message: calls.append(("tell", message, group)) or message,
    )
    monkeypatch.setattr(dist, "destroy_process_group", lambda g=None: calls.append(("destroy", g)))
    encoded = []
    encode = CustomTextCLIP.encode_image

    def counted(self: CustomTextCLIP, image: torch.Tensor, normalize: bool = False) -> object:
        encoded.append(len(image))
        return encode(self, image, normalize=normalize)

    with mock.patch.object(CustomTextCLIP, "encode_image", counted):
        for rank in (0, 1):
            ctx = DistContext(rank, 2, torch.device("cpu"))
            features = cached_image_features(base, world["pool"], params, "k", base.model, ctx)
            assert len(features) == len(world["pool"])
    assert sum(encoded) == len(world["pool"])  # rank 0 only
    wait = [("new_group", {"backend": "gloo", "timeout": RANK0_WAIT}), ("tell", "", group),
            ("destroy", group)]  # fmt: skip
    assert calls == wait * 2 and RANK0_WAIT >= timedelta(hours=1)


def test_the_cache_refuses_a_trained_image_tower(world: dict) -> None:
    model = load_model(world["model"]).model
    check_locked_image_tower(model.requires_grad_(False))
    model.visual.requires_grad_(True)
    with pytest.raises(ValueError, match="cache_image_features: false"):
        check_locked_image_tower(model)


def test_bf16_autocast_trains_on_the_cpu_close_to_fp32(world: dict, tmp_path: Path) -> None:
    base = load_model(world["model"])
    losses = {}
    for precision in ("fp32", "bf16"):
        params = params_for(world, steps=2, precision=precision, loader_workers=0)
        with mock.patch("xlr.train.loop.autocast", wraps=autocast) as spy:
            train_arm(base, world["pool"], params, MONO, tmp_path / precision, progress=False)
        assert spy.call_args.args[1] == precision
        losses[precision] = log_losses(tmp_path / precision)
    assert all(math.isfinite(loss) for loss in losses["bf16"])
    np.testing.assert_allclose(losses["bf16"], losses["fp32"], rtol=0.02)
    assert losses["bf16"] != losses["fp32"]  # bf16 really ran


def test_fp16_training_needs_cuda(world: dict, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="train.precision is 'fp16'"):
        check_train_precision("fp16", torch.device("cpu"))
    params = params_for(world, steps=1, precision="fp16")
    with pytest.raises(ValueError, match="'bf16' or 'fp32'"):
        train_arm(load_model(world["model"]), world["pool"], params, MONO, tmp_path, progress=False)
    cached = params_for(world, steps=3, precision="fp16", cache_image_features=True)
    cache = tmp_path / "cache"
    run = cached.run.model_copy(update={"cache_dir": str(cache)})
    cached = cached.model_copy(update={"run": run})
    for train, arm in ((train_arm, MONO), (train_adapters, ADAPTERS)):  # before any encoding
        with pytest.raises(ValueError, match="'bf16' or 'fp32'"):
            train(load_model(world["model"]), world["pool"], cached, arm, tmp_path, progress=False)
        assert not cache.exists()


FP16_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@contextlib.contextmanager
def fp16_here(scale: float | None = None) -> Iterator[None]:
    """fp16 training on this machine: on CUDA as the study trains; off CUDA with the CUDA guard
    (:func:`check_train_precision`) lifted, since torch's CPU autocast and ``GradScaler`` run the
    same loss scaling, only slowly. ``scale``: the scaler's initial scale (default 65536)."""
    real = torch.amp.GradScaler
    with contextlib.ExitStack() as stack:
        if FP16_DEVICE == "cpu":
            for module in ("loop", "finetune"):
                stack.enter_context(mock.patch(f"xlr.train.{module}.check_train_precision"))
        if scale is not None:
            scaler = lambda device: real(device, init_scale=scale)  # noqa: E731
            stack.enter_context(mock.patch("torch.amp.GradScaler", scaler))  # Trainer's lookup
        yield


def train_fp16(
    world: dict, out: Path, scale: float | None = None, adapters: bool = False, **train: object
) -> list[dict]:
    """Train the mono arm (or the ``adapters`` arm) in fp16 on :data:`FP16_DEVICE`; returns the
    scaler's state in the final checkpoint (read before the finished run drops it)."""
    params = params_for(world, precision="fp16", **train)
    params = params.model_copy(
        update={"run": params.run.model_copy(update={"device": FP16_DEVICE})}
    )
    base = load_model(world["model"])
    scalers = []
    finish = RunFolder.finish

    def look_then_finish(folder: RunFolder, summary: dict, ctx: object, outputs: object) -> None:
        scalers.append(load_checkpoint(folder.path / CHECKPOINT)["scaler"])  # not dropped
        finish(folder, summary, ctx, outputs)

    with fp16_here(scale), mock.patch.object(RunFolder, "finish", look_then_finish):
        trainer, arm = (train_adapters, ADAPTERS) if adapters else (train_arm, MONO)
        trained = trainer(base, world["shard_pool"], params, arm, out, progress=False)
    assert trained.summary["device"].startswith(FP16_DEVICE)
    return scalers


def test_fp16_trains_with_a_grad_scaler_and_checkpoints_its_scale(
    world: dict, tmp_path: Path
) -> None:
    scalers = train_fp16(world, tmp_path / "fp16", steps=2, checkpoint_every=1)
    assert all(math.isfinite(loss) for loss in log_losses(tmp_path / "fp16"))
    assert len(scalers) == 1 and scalers[0]["scale"] == 65536.0  # no overflow: kept
    assert scalers[0]["_growth_tracker"] == 2  # two good steps counted towards growing it
    # the logged norm is of the unscaled gradients (clipping reads it): about fp32's, not 65536x
    fp32 = params_for(world, steps=1, precision="fp32")
    train_arm(load_model(world["model"]), world["shard_pool"], fp32, MONO, tmp_path / "fp32",
              progress=False)  # fmt: skip
    norms = [float(read_log(tmp_path / run)[0]["grad_norm"]) for run in ("fp16", "fp32")]
    assert norms[0] == pytest.approx(norms[1], rel=0.1)


def test_the_adapters_share_one_loss_scale_under_fp16(world: dict, tmp_path: Path) -> None:
    """Known answer for :mod:`xlr.train.adapters`' caveat: scaled by 2**100 every step
    overflows, and one scaler halves at each step, whichever language's: three steps over the
    three languages end at 2**97 (a scaler per language would each stand at 2**99)."""
    scalers = train_fp16(world, tmp_path, 2.0**100, adapters=True, steps=3, checkpoint_every=3)
    langs = {row["query_langs"] for row in read_log(tmp_path)}
    assert langs == {"en", "de", "es"} and scalers[0]["scale"] == 2.0**97


def test_an_overflowing_fp16_step_is_skipped_and_its_scale_halved(
    world: dict, tmp_path: Path
) -> None:
    """Known answer: scaled by 2**100 the fp16 gradients overflow, so the step must leave every
    weight as the base's and halve the scale; at the default scale the same step trains."""
    base = load_file(world["model"] / WEIGHTS)
    for scale, out in ((2.0**100, tmp_path / "overflow"), (None, tmp_path / "default")):
        scalers = train_fp16(world, out, scale, steps=1, checkpoint_every=1, warmup=0)
        trained = load_file(out / MODEL_DIR / WEIGHTS)
        unchanged = all(torch.equal(trained[name], base[name]) for name in base)
        if scale is not None:
            assert unchanged and scalers[0]["scale"] == 2.0**99
            assert scalers[0]["_growth_tracker"] == 0
        else:
            assert not unchanged and scalers[0]["scale"] == 65536.0
