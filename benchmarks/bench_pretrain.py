"""Base pretraining speed against a bare open_clip training step on the same batch.

The bare step is what a user of open_clip would write: forward both towers on a batch already on
the device, ClipLoss, backward, AdamW step. xlr's one training loop (xlr.train.loop) adds
per-step batch drawing, pixel normalisation from uint8, gradient clipping, the schedule, the
logit-scale clamp and its per-step metrics; the ratio shows what that costs. Both run in one
process on the same tiny model and batch size.

    python benchmarks/bench_pretrain.py [--steps 60] [--batch 128]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch
from open_clip.loss import ClipLoss

from xlr.config import parse_params
from xlr.data.prepare import ensure_corpus
from xlr.data.synthetic import load_pool
from xlr.models.factory import load_model, write_tiny_model_dir
from xlr.runtime import normalise_pixels
from xlr.train.pretrain import (
    PRETRAIN_GRAD_CLIP,
    PRETRAIN_PRECISION,
    PRETRAIN_WEIGHT_DECAY,
    ensure_tokenizer,
    pretrain,
)
from xlr.train.tokens import tokenize_texts


def bare_open_clip_steps(
    model: torch.nn.Module, images: torch.Tensor, tokens: torch.Tensor, steps: int
) -> float:
    """Steps/s of the plain loop on one fixed, pre-normalised batch."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = ClipLoss()
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        image_features = model.encode_image(images, normalize=True)
        text_features = model.encode_text(tokens, normalize=True)
        loss = loss_fn(image_features, text_features, model.logit_scale.exp())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        params = parse_params(
            {
                "run": {"name": "bench", "cache_dir": tmp, "device": "cpu"},
                "data": {
                    "train_langs": ["en", "de"],
                    "synthetic": {
                        "pretrain_images": 2000,
                        "finetune_images": 200,
                        "eval_images": 50,
                    },
                },
                "model": {
                    "tiny": {"pretrain_steps": args.steps, "pretrain_batch_size": args.batch}
                },
            }
        )
        corpus = ensure_corpus(params, progress=False)
        model_dir = write_tiny_model_dir(
            params.model.tiny, ensure_tokenizer(params, corpus), 32, Path(tmp) / "m", seed=0
        )
        bundle = load_model(model_dir)
        pool = load_pool(corpus, "pretrain")
        bare_model = copy.deepcopy(bundle.model)
        pixels = torch.from_numpy(pool.images.pixels[: args.batch])
        images = normalise_pixels(pixels, bare_model.visual.image_mean, bare_model.visual.image_std)
        tokens = tokenize_texts(bundle.tokenizer, pool.captions["caption"].tolist()[: args.batch])
        bare_model(images[:2], tokens[:2])  # warm-up outside the timing
        bare = bare_open_clip_steps(bare_model, images, tokens, args.steps)
        xlr_speed = pretrain(
            bundle, pool, params, seed=0, weight_decay=PRETRAIN_WEIGHT_DECAY,
            grad_clip=PRETRAIN_GRAD_CLIP, precision=PRETRAIN_PRECISION, progress=False,
        ).steps_per_s  # fmt: skip
    print(
        f"torch threads: {torch.get_num_threads()}, batch {args.batch}, {args.steps} steps, 32 px"
    )
    print(f"bare open_clip step : {bare:6.2f} steps/s")
    print(f"xlr base pretraining: {xlr_speed:6.2f} steps/s")
    print(f"ratio xlr / bare    : {xlr_speed / bare:6.3f}")


if __name__ == "__main__":
    main()
