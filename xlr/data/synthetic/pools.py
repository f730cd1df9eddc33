"""What each pool of the corpus holds: its images' scenes and its caption rows, before anything
is rendered or written (:mod:`~xlr.data.synthetic.corpus` writes them).

``pretrain`` and ``finetune`` draw their scenes, with replacement, from the training
compositions; ``val`` and ``eval`` hold out their own (:func:`world_split`). Every pool's draws
come from its own generators (:func:`pool_rng`), so one pool's size never moves another's.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xlr.config import SyntheticSection
from xlr.data.synthetic.noise import (
    NOISE_KINDS,
    Caption,
    noise_probabilities,
    noisy_caption,
    pair_scores,
)
from xlr.data.synthetic.scenes import Scene, WorldSplit, all_scenes, sample_scenes, split_world
from xlr.langs import laion_mix

POOLS: tuple[str, ...] = ("pretrain", "finetune", "val", "eval")
HELD_OUT_POOLS: tuple[str, ...] = ("val", "eval")  # clean, parallel, compositions held out

_STREAMS = {"scenes": 0, "captions": 1, "noise": 2, "render": 3}
_POOL_STREAMS = {"pretrain": 0, "finetune": 1, "eval": 2, "val": 3}


def pool_rng(cfg: SyntheticSection, pool: str, stream: str) -> np.random.Generator:
    """One independent generator per (seed, pool, purpose): changing the pretrain size leaves
    the other pools unchanged, and rendering never shifts the caption draws."""
    return np.random.default_rng([cfg.seed, _POOL_STREAMS[pool], _STREAMS[stream]])


@dataclass(frozen=True)
class CaptionRow:
    """One caption of one image, with LAION's per-pair scores."""

    image_id: int
    lang: str
    caption_idx: int
    caption: Caption
    similarity: float
    punsafe: float
    pwatermark: float


def pool_size(cfg: SyntheticSection, pool: str) -> int:
    """Number of images in a pool."""
    sizes = {
        "pretrain": cfg.pretrain_images,
        "finetune": cfg.finetune_images,
        "val": cfg.validation_images,
        "eval": cfg.eval_images,
    }
    if pool not in sizes:
        raise ValueError(f"unknown pool {pool!r}; the corpus has pools {', '.join(POOLS)}")
    return sizes[pool]


def world_split(cfg: SyntheticSection) -> WorldSplit:
    """Which compositions ``cfg``'s val and eval pools hold out, and which training draws from."""
    return split_world(cfg.seed, cfg.eval_images, cfg.validation_images)


def pool_scenes(cfg: SyntheticSection, pool: str) -> list[Scene]:
    """The scene of every image of a pool: the held-out pools' compositions in draw order (no
    repeats), the training pools' drawn with replacement from the training compositions."""
    split, world = world_split(cfg), all_scenes()
    if pool in HELD_OUT_POOLS:
        return [world[i] for i in getattr(split, pool)]
    return sample_scenes(pool_rng(cfg, pool, "scenes"), pool_size(cfg, pool), split.train)


def pretrain_mix(cfg: SyntheticSection) -> dict[str, float]:
    """Each language's share of the pretraining pool's captions (expected, not sampled): the
    LAION-5B mix (or uniform) over ``pretrain_langs``, zero for the languages left out."""
    chosen = cfg.pretraining_langs
    mix = laion_mix(chosen) if cfg.mix == "laion" else {lang: 1 / len(chosen) for lang in chosen}
    return {lang: mix.get(lang, 0.0) for lang in cfg.langs}


def pool_captions(cfg: SyntheticSection, pool: str, scenes: Sequence[Scene]) -> list[CaptionRow]:
    """The caption rows of a pool, ordered by image, language (config order) and index.

    ``pretrain``: one caption per image, language drawn from :func:`pretrain_mix`, template drawn
    uniformly. ``finetune``/``val``/``eval``: caption k in every language uses template k. Noise
    never touches ``val`` or ``eval``; a mismatched caption describes a training composition.
    """
    langs = list(cfg.langs)
    draws = pool_rng(cfg, pool, "captions")
    if pool == "pretrain":
        mix = pretrain_mix(cfg)
        chosen = draws.choice(len(langs), size=len(scenes), p=[mix[lang] for lang in langs])
        variants = draws.integers(cfg.captions_per_image, size=len(scenes))
        slots = [
            (i, langs[c], int(v)) for i, (c, v) in enumerate(zip(chosen, variants, strict=True))
        ]
    else:
        per_image = list(itertools.product(langs, range(cfg.captions_per_image)))
        slots = [(i, lang, k) for i in range(len(scenes)) for lang, k in per_image]
    noise_rng = pool_rng(cfg, pool, "noise")
    if pool in HELD_OUT_POOLS:
        kinds = np.zeros(len(slots), dtype=int)
    else:
        kinds = noise_rng.choice(
            len(NOISE_KINDS), size=len(slots), p=noise_probabilities(cfg.noise)
        )
    others = None if pool in HELD_OUT_POOLS else world_split(cfg).train
    rows = []
    for (image_id, lang, variant), kind in zip(slots, kinds, strict=True):
        kind_name = NOISE_KINDS[kind]
        caption = noisy_caption(scenes[image_id], lang, variant, kind_name, noise_rng, others)
        caption_idx = 0 if pool == "pretrain" else variant
        rows.append(
            CaptionRow(image_id, lang, caption_idx, caption, *pair_scores(kind_name, noise_rng))
        )
    return rows
