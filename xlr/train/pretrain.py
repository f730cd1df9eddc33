"""The tiny base model: "pretrained" once on the generated LAION-like mix, cached by config hash.

It stands in for ``xlm-roberta-base-ViT-B-32`` / ``laion5b_s13b_b90k`` on machines without the
hub: both towers trained from scratch with open_clip's ClipLoss on the long-tailed pretraining
pool (one caption per image in one language, as in LAION), so it ends up like the real model
qualitatively: good in English and the frequent languages, poor in the rare ones. The base's
own seed dominates the study's variance, so each ``run.base_seeds`` entry is a separate base.

Where the tokenizer and the bases are cached: :mod:`xlr.models.bases`.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from open_clip.loss import ClipLoss
from tqdm.auto import tqdm

from xlr.config import Params
from xlr.data.imagetext import ArrayImages, ImageTextSet
from xlr.data.prepare import ensure_corpus
from xlr.data.synthetic import lexicon_words, load_pool
from xlr.models.bases import REPORT_NAME, base_model_dir, is_base_cached, tokenizer_dir
from xlr.models.factory import ModelBundle, load_model, save_model_dir, write_tiny_model_dir
from xlr.models.tokenizer import build_tokenizer
from xlr.runtime import normalise_pixels, resolve_device, seed_everything
from xlr.train.finetune import (
    batch_indices,
    cached_tokens,
    make_optimizer,
    token_cache_dir,
    warmup_cosine,
)


def ensure_tokenizer(params: Params, corpus: Path) -> Path:
    """Train the XLM-R Unigram tokenizer on every language's captions, once per corpus.

    Captions come from the pools' LAION metadata (TEXT), not their shards: decoding every image
    just to read its caption cost most of a minute on a 100k-image corpus.
    """
    out = tokenizer_dir(params)
    if (out / "tokenizer.json").is_file():
        return out
    texts = [
        text
        for pool in ("finetune", "pretrain")
        for text in pd.read_parquet(corpus / pool / "metadata.parquet", columns=["TEXT"])["TEXT"]
    ]
    words = [w for lang in params.data.synthetic.langs for w in lexicon_words(lang)]
    return build_tokenizer(texts, out, params.model.tiny.vocab_size, seed_words=words)


@dataclass(frozen=True)
class PretrainLog:
    """What base pretraining did: per-step losses and its speed."""

    losses: list[float]
    steps_per_s: float
    wall_s: float


def pretrain(
    bundle: ModelBundle, pool: ImageTextSet, params: Params, seed: int, progress: bool = True
) -> PretrainLog:
    """Train both towers from scratch with ClipLoss on the pretraining pool."""
    tiny = params.model.tiny
    device = resolve_device(params.run.device)
    if not isinstance(pool.images, ArrayImages):
        raise TypeError("base pretraining expects the generated pool's decoded images")
    captions = pool.captions.sort_values("image_id").reset_index(drop=True)
    if not captions["image_id"].is_unique:
        raise ValueError(f"{pool.name}: the pretraining pool has one caption per image")
    pixels = torch.from_numpy(pool.images.pixels[captions["image_id"].to_numpy()])
    tokens = cached_tokens(bundle.tokenizer, captions["caption"].tolist(), token_cache_dir(params))
    model = bundle.model.to(device).train()
    mean, std = model.visual.image_mean, model.visual.image_std
    optimizer = make_optimizer(model, tiny.pretrain_lr, weight_decay=0.1)
    schedule = warmup_cosine(optimizer, tiny.pretrain_warmup, tiny.pretrain_steps)
    loss_fn = ClipLoss()
    seed_everything(seed)
    losses: list[float] = []
    start = time.perf_counter()
    for step in tqdm(
        range(tiny.pretrain_steps), desc=f"pretrain base s{seed}", disable=not progress
    ):
        rows = torch.from_numpy(batch_indices(len(tokens), tiny.pretrain_batch_size, seed, step))
        images = normalise_pixels(pixels[rows], mean, std).to(device)
        image_features = model.encode_image(images, normalize=True)
        text_features = model.encode_text(tokens[rows].to(device), normalize=True)
        loss = loss_fn(image_features, text_features, model.logit_scale.exp())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        with torch.no_grad():  # open_clip clamps the learnable temperature at 100
            model.logit_scale.clamp_(0, np.log(100))
        losses.append(float(loss.detach()))
    wall = time.perf_counter() - start
    return PretrainLog(losses, tiny.pretrain_steps / wall, wall)


def ensure_base_model(params: Params, base_seed: int, progress: bool = True) -> Path:
    """The base model folder for ``base_seed``: built and pretrained on a cache miss.

    Written to a temporary sibling and renamed, so an interrupted build never leaves a folder
    that a later run would take for a finished base.
    """
    out = base_model_dir(params, base_seed)
    if is_base_cached(params, base_seed):
        return out
    corpus = ensure_corpus(params, progress)
    tokenizer = ensure_tokenizer(params, corpus)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        size = params.data.synthetic.image_size
        write_tiny_model_dir(params.model.tiny, tokenizer, size, tmp, seed=base_seed)
        bundle = load_model(tmp)
        log = pretrain(bundle, load_pool(corpus, "pretrain"), params, base_seed, progress)
        save_model_dir(bundle, tmp)
        report = {"base_seed": base_seed, "pretrain": asdict(log)}
        (tmp / REPORT_NAME).write_text(json.dumps(report, indent=2))
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


