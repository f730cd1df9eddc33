"""The training input pipeline and cached image features, each against the plain alternative.

(a) Images per second into the image tower: xlr's pipeline (:func:`xlr.train.inputs.step_inputs`,
``--workers`` DataLoader processes over whole steps, images read from webdataset shards by
offset, shipped as uint8 and normalised on the device: :func:`xlr.data.imagetext.model_pixels`)
against the bare per-image loop the training step used to run (read, decode, open_clip's
224 px train transform, one image after the other in the main process), on the same shards:
img2dataset-like 256 px JPEGs. The pipeline's time includes drawing each step's rows and
starting its workers. Beside it, the ceiling: the per-image loop's steps split over
``--workers`` plain forked processes (no queue, no shared memory, no copy), what that many
cores give this machine's decoding with no pipeline overhead at all.

(b) Seconds per training step of an arm with cached image features (``train.cache_image_features``:
:class:`xlr.train.loop.Trainer` on the arm's objective, text tower trained) against the bare
open_clip step a user would write for the same objective on the same batch, pixels already
decoded: locked image tower forward, query and target text forward, CLIP loss image-text plus
text-text, backward, AdamW. The tiny model's image tower runs at ``--image-size`` (patch 8): the
saving is the image tower's share of the step, which grows with the image size. ``--model-dir``
times another model folder instead, such as the study's architecture with random weights.

(c) Images per second through the image-feature cache's encoding
(:func:`xlr.train.image_cache.encode_pool_images`: rank 0's work on a cache miss), the shards'
JPEGs decoded by ``--workers`` DataLoader processes against 0 (decoded in the main process
between forward passes, as before), the tiny model's image tower at ``--image-size`` encoding
batches of ``--batch`` on ``--device``, on the same shards as (a). The features are the same.

    python benchmarks/bench_pipeline.py [--workers 2] [--images 512] [--batch 64] [--image-size 64]
        [--threads 1] [--device cuda]
"""

from __future__ import annotations

import argparse
import copy
import io
import multiprocessing
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from open_clip.loss import ClipLoss
from open_clip.transform import image_transform
from PIL import Image
from timing import best_times

from xlr.arms import Arm
from xlr.config import Params, parse_params
from xlr.data.imagetext import finish_input, model_input, model_pixels
from xlr.data.prepare import ensure_corpus
from xlr.data.shards import Sample, ShardImages, shard_images, write_shards
from xlr.data.synthetic import load_pool
from xlr.models.factory import ModelBundle, load_model, write_tiny_model_dir
from xlr.runtime import DistContext
from xlr.train.finetune import arm_sampler
from xlr.train.image_cache import cached_image_features, encode_pool_images
from xlr.train.inputs import step_inputs, to_device
from xlr.train.loop import Trainer
from xlr.train.objective import contrastive_objective
from xlr.train.optim import make_optimizer, warmup_cosine
from xlr.train.pretrain import PairBatch, batch_indices, ensure_tokenizer
from xlr.train.tokens import tokenize_texts
from xlr.train.trainable import unlock_text_tower


def photo_like_jpeg(rng: np.random.Generator, size: int = 256) -> bytes:
    """A 256 px JPEG with smooth shapes and grain, about the size of a resized LAION photo."""
    coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize(
        (size, size), Image.Resampling.BICUBIC
    )
    grain = rng.normal(0, 12, (size, size, 3))
    pixels = np.clip(np.asarray(coarse, dtype=np.float64) + grain, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def _done(ctx: DistContext) -> None:
    """Wait for the device's queued work, so that a timing covers it."""
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)


def bench_shards(
    root: Path, n_images: int, shard_size: int = 256, distinct: int | None = None
) -> ShardImages:
    """``n_images`` photo-like 256 px JPEGs captioned ``caption {i}`` in webdataset shards of
    ``shard_size`` under ``root / "shards"``, read by offset. ``distinct`` of them are drawn
    (default: all) and repeated in turn: decoding costs the same, drawing does not."""
    rng = np.random.default_rng(0)
    drawn = [photo_like_jpeg(rng) for _ in range(min(n_images, distinct or n_images))]
    samples = (
        Sample(f"http://x/{i}.jpg", f"caption {i}", drawn[i % len(drawn)], 256, 256, {})
        for i in range(n_images)
    )
    write_shards(samples, root / "shards", shard_size, pa.schema([]))
    return shard_images(root / "shards")[1]


def image_rates(
    store: ShardImages, batch: int, workers: int, model: torch.nn.Module, ctx: DistContext
) -> tuple[float, float, float]:
    """(bare, pipeline, ceiling) images/s of the image tower's input on ``ctx``'s device, over
    the same steps of the same shards. The bare loop runs the whole transform image by image
    and copies each float batch; the pipeline's workers ship uint8 pixels (pinned on CUDA),
    copied without blocking and normalised on the device (``model`` has the tower's size and
    statistics). The ceiling is the bare loop's decoding split over ``workers`` forked
    processes that share nothing and copy nothing: what that many workers could reach on this
    machine with no pipeline at all."""
    transform = image_transform(224, is_train=True)
    steps = len(store) // batch

    def plan(step: int) -> tuple[PairBatch, int]:
        return PairBatch(step, batch_indices(len(store), batch, 0, step)), step

    def per_image(shard: PairBatch) -> torch.Tensor:
        return torch.stack([transform(store[int(row)]) for row in shard.rows])

    def pixels(shard: PairBatch) -> torch.Tensor:
        return model_pixels(store, shard.rows, model, transform)

    def bare() -> None:
        for step in range(steps):
            per_image(plan(step)[0]).to(ctx.device)
        _done(ctx)

    def pipeline() -> None:
        for item in step_inputs(plan, pixels, 0, steps, ctx, workers):
            finish_input(to_device(item.loaded, ctx.device), model)
        _done(ctx)

    def part(worker: int) -> None:
        torch.set_num_threads(1)  # as a DataLoader worker
        for step in range(worker, steps, workers):
            per_image(plan(step)[0])

    def ceiling() -> None:
        forked = multiprocessing.get_context("fork")
        processes = [forked.Process(target=part, args=(w,)) for w in range(workers)]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        if any(process.exitcode != 0 for process in processes):
            raise RuntimeError("a ceiling process failed")

    images = steps * batch
    bare_s, pipeline_s, ceiling_s = best_times([bare, pipeline, ceiling], 3)
    return images / bare_s, images / pipeline_s, images / ceiling_s


def cache_rates(
    store: ShardImages, base: ModelBundle, params: Params, workers: int, ctx: DistContext
) -> tuple[float, float]:
    """(0 workers, ``workers``) images/s of the cache's encoding of ``store`` on ``ctx``'s
    device, batches of ``eval.batch_size``; checks the two give the same features."""
    model = base.model.to(ctx.device)
    runs = {}
    for count in (0, workers):
        train = params.train.model_copy(update={"loader_workers": count})
        runs[count] = params.model_copy(update={"train": train})
    features = {}

    def encode(count: int) -> None:
        features[count] = encode_pool_images(
            model, base.preprocess_val, store, runs[count], ctx.device
        )

    plain_s, workers_s = best_times([lambda: encode(0), lambda: encode(workers)], 3)
    exact = (
        ctx.device.type == "cpu"
    )  # bit for bit there; a GPU's kernels may differ in the last bits
    same = torch.equal if exact else partial(torch.allclose, rtol=1e-4, atol=1e-5)
    if not same(features[0], features[workers]):
        raise AssertionError(f"the cache's features differ with {workers} workers and with 0")
    return len(store) / plain_s, len(store) / workers_s


def bench_params(root: Path, batch: int, image_size: int, ctx: DistContext) -> Params:
    """The cached-features arm of (b), with ``eval.batch_size`` ``batch`` for (c)."""
    return parse_params(
        {
            "run": {"name": "bench", "cache_dir": str(root / "cache"), "device": ctx.device.type},
            "data": {
                "train_langs": ["en", "de"],
                "synthetic": {
                    "langs": ["en", "de"], "image_size": image_size, "pretrain_images": 64,
                    "finetune_images": max(2 * batch, 128), "eval_images": 16,
                },
            },
            "train": {"batch_size": batch, "cache_image_features": True, "precision": "fp32"},
            "eval": {"batch_size": batch},
        }
    )  # fmt: skip


def model_folder(root: Path, params: Params, image_size: int, given: str | None) -> Path:
    """``given`` (a model folder: :func:`xlr.models.factory.write_random_model_dir` builds the
    study's architecture offline), else the tiny model at ``image_size``, written under
    ``root``."""
    if given is not None:
        return Path(given)
    tokenizer = ensure_tokenizer(params, ensure_corpus(params, progress=False))
    return write_tiny_model_dir(params.model.tiny, tokenizer, image_size, root / "m", seed=0)


def step_times(params: Params, folder: Path, steps: int, ctx: DistContext) -> tuple[float, float]:
    """(bare open_clip, xlr with cached features) seconds per step of the model in ``folder``
    on one cross batch of the generated pool, on ``ctx``'s device."""
    corpus = ensure_corpus(params, progress=False)
    base = load_model(folder)
    pool = load_pool(corpus, "finetune")
    arm = Arm("cross", trained="full").at(0, 0)
    captions = pool.captions[pool.captions["lang"].isin(["en", "de"])].reset_index(drop=True)
    shard = arm_sampler(arm, captions, ["en", "de"], params).batch(0)

    base.model.to(ctx.device)
    bare_model = copy.deepcopy(base.model)
    bare_model.visual.requires_grad_(False)
    pixels = model_input(pool.images, shard.image_ids, bare_model, base.preprocess_train)
    pixels = pixels.to(ctx.device)
    queries = tokenize_texts(base.tokenizer, shard.query_texts).to(ctx.device)
    targets = tokenize_texts(base.tokenizer, [str(text) for text in shard.target_texts])
    targets = targets.to(ctx.device)
    optimizer = torch.optim.AdamW([p for p in bare_model.parameters() if p.requires_grad])
    loss_fn = ClipLoss()
    bare_model.train()
    bare_model.visual.eval()

    def bare_step() -> None:
        with torch.no_grad():
            image = bare_model.encode_image(pixels, normalize=True)
        query = bare_model.encode_text(queries, normalize=True)
        target = bare_model.encode_text(targets, normalize=True)
        scale = bare_model.logit_scale.exp()
        loss = loss_fn(image, query, scale) + loss_fn(query, target, scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _done(ctx)

    model = copy.deepcopy(base.model)
    unlock_text_tower(model)
    features = cached_image_features(base, pool, params, "bench", model, ctx)
    objective = contrastive_objective(base, pool, captions, params, 1, image_features=features)
    xlr_optimizer = make_optimizer(model, params.train.lr, params.train.weight_decay)
    trainer = Trainer(
        model, objective, xlr_optimizer, warmup_cosine(xlr_optimizer, 0, 10**6), ctx,
        params.train.precision, params.train.grad_clip,
    )  # fmt: skip
    model.train()
    model.visual.eval()

    def cached_step() -> None:
        trainer.step(shard, objective.load(shard))
        _done(ctx)

    bare_step(), cached_step()  # warm-up outside the timing
    bare, cached = best_times([bare_step, cached_step], steps)
    return bare, cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="timed steps of each kind in (b)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads here; 0: default")
    parser.add_argument("--device", default="cpu", help="where batches go and steps run: cpu, cuda")
    parser.add_argument(
        "--model-dir", default=None, help="a model folder instead of the tiny model (all parts)"
    )
    args = parser.parse_args()
    ctx = DistContext(0, 1, torch.device(args.device))
    if args.threads:  # the workers keep one thread each whatever this is
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        params = bench_params(root, args.batch, args.image_size, ctx)
        folder = model_folder(root, params, args.image_size, args.model_dir)
        bare_step, cached_step = step_times(params, folder, args.steps, ctx)
        store = bench_shards(root, args.images)
        model = load_model(folder).model
        bare_rate, pipeline_rate, ceiling_rate = image_rates(
            store, args.batch, args.workers, model, ctx
        )
        plain_cache, workers_cache = cache_rates(
            store, load_model(folder), params, args.workers, ctx
        )
    shown = args.model_dir or f"tiny model at {args.image_size} px"
    print(
        f"torch threads: {torch.get_num_threads()}, batch {args.batch}, {args.images} images "
        f"(256 px JPEG -> 224 px), {shown} on {args.device} "
        f"({time.perf_counter() - start:.0f} s)"
    )
    print(f"{'measure':<44}{'plain':>10}{'xlr':>10}{'xlr/plain':>11}")
    print(
        f"{f'(a) images/s, {args.workers} workers vs per-image loop':<44}"
        f"{bare_rate:>10.1f}{pipeline_rate:>10.1f}{pipeline_rate / bare_rate:>11.2f}"
    )
    print(
        f"{f'    ceiling: per-image loop in {args.workers} processes':<44}"
        f"{bare_rate:>10.1f}{ceiling_rate:>10.1f}{ceiling_rate / bare_rate:>11.2f}"
    )
    print(
        f"{'(b) s/step, cached features vs open_clip':<44}"
        f"{bare_step:>10.4f}{cached_step:>10.4f}{cached_step / bare_step:>11.2f}"
    )
    print(
        f"{f'(c) cache images/s, {args.workers} workers vs 0':<44}"
        f"{plain_cache:>10.1f}{workers_cache:>10.1f}{workers_cache / plain_cache:>11.2f}"
    )


if __name__ == "__main__":
    main()
