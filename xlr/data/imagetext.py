"""The one in-memory shape of every image-caption collection: images plus a long captions table.

Training pools of the generated corpus, the synthetic held-out split, XTD10, Crossmodal-3600 and
Multi30K all normalise to :class:`ImageTextSet` before a model or a metric sees them (the
CLIP_benchmark habit), so encoding, batching and every retrieval task are written once.

``captions`` is long form: one row per caption with columns ``image_id`` (position of the image in
``images``), ``lang`` (canonical registry code), ``caption_idx`` (0, 1, ... per image and
language) and ``caption``. A training pool may add ``target_only`` (bool): captions that only
serve as a ``mono`` batch's text-text target, never as a query, a pair or an evaluated caption
(the round-trip paraphrases of :mod:`xlr.data.laion.paraphrase`).

Each evaluation set **declares** how its languages relate (``parallel``), because the
cross-lingual tasks (:mod:`xlr.eval.tasks`) need to know what counts as the same meaning:

- ``parallel=True``: caption ``k`` of an image is a translation of caption ``k`` of that image in
  every other language (XTD10, Multi30K, the generated corpus's eval and fine-tuning pools);
- ``parallel=False``: each language's captions were written independently, so only the image ties
  them together (Crossmodal-3600);
- ``None``: undeclared (training pools); the cross-lingual tasks refuse such a set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torchvision.transforms import Compose, Normalize, ToTensor

from xlr.langs import LANGUAGES
from xlr.runtime import normalise_pixels

CAPTION_COLUMNS: tuple[str, ...] = ("image_id", "lang", "caption_idx", "caption")
TARGET_ONLY = "target_only"  # the optional column of captions that are mono targets only
Preprocess = Callable[[Image.Image], torch.Tensor]  # a model's image transform (open_clip's)


def target_only(captions: pd.DataFrame) -> np.ndarray:
    """Which rows of a captions table are ``target_only``: none in a table without the column,
    and not a row whose mark is missing (a table concatenated with one without the column)."""
    if TARGET_ONLY not in captions:
        return np.zeros(len(captions), dtype=bool)
    return captions[TARGET_ONLY].eq(True).to_numpy()


class ImageStore(Protocol):
    """Random access to a set's images, decoded to RGB on demand."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Image.Image: ...


@dataclass(frozen=True)
class ArrayImages:
    """Images already decoded into one ``uint8`` array ``[N, H, W, 3]`` (small generated sets)."""

    pixels: np.ndarray

    def __post_init__(self) -> None:
        if self.pixels.dtype != np.uint8 or self.pixels.ndim != 4 or self.pixels.shape[-1] != 3:
            raise ValueError(
                f"ArrayImages needs uint8 pixels shaped [N, H, W, 3], got {self.pixels.dtype} "
                f"{self.pixels.shape}"
            )

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index: int) -> Image.Image:
        return Image.fromarray(self.pixels[index], mode="RGB")


@dataclass(frozen=True)
class FileImages:
    """Images as files on disk (benchmarks with full-size photos), opened lazily."""

    paths: Sequence[Path]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Image.Image:
        path = self.paths[index]
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: cannot be decoded as an image ({err})") from err


@dataclass(frozen=True)
class ImageTextSet:
    """Images plus their captions in one or more languages, and whether those are parallel."""

    name: str
    image_keys: Sequence[str]  # the dataset's own image names, for provenance and joins
    images: ImageStore
    captions: pd.DataFrame
    parallel: bool | None = None  # declared by each eval-set loader (module docstring)

    def __post_init__(self) -> None:
        missing = [c for c in CAPTION_COLUMNS if c not in self.captions.columns]
        if missing:
            raise ValueError(f"{self.name}: captions table lacks columns {missing}")
        if len(self.image_keys) != len(self.images):
            raise ValueError(
                f"{self.name}: {len(self.image_keys)} image keys for {len(self.images)} images"
            )
        ids = self.captions["image_id"].to_numpy()
        if len(ids) and (ids.min() < 0 or ids.max() >= len(self.images)):
            raise ValueError(f"{self.name}: captions refer to image ids outside 0..{len(self) - 1}")
        unknown = sorted(set(self.captions["lang"]) - set(LANGUAGES))
        if unknown:
            raise ValueError(f"{self.name}: captions in non-canonical language codes {unknown}")
        if self.parallel not in (True, False, None):
            raise ValueError(
                f"{self.name}: parallel must be True, False or None, got {self.parallel!r}"
            )
        keys = self.captions[["image_id", "lang", "caption_idx"]]
        if self.parallel and keys.duplicated().any():
            first = keys[keys.duplicated()].iloc[0].to_dict()
            raise ValueError(
                f"{self.name}: declared parallel, but two captions share image_id, lang and "
                f"caption_idx ({first}); caption k must be one caption, the translation of caption "
                "k in every other language"
            )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def langs(self) -> list[str]:
        """Languages with at least one caption, in first-seen order."""
        return list(dict.fromkeys(self.captions["lang"]))

    def captions_in(self, lang: str, first_only: bool = False) -> pd.DataFrame:
        """Captions of one language sorted by image then index; ``first_only`` keeps index 0.

        ``first_only`` is CLIP_benchmark's Crossmodal-3600 convention (one caption per image).
        """
        table = self.captions[self.captions["lang"] == lang]
        if first_only:
            table = table[
                table["caption_idx"] == table.groupby("image_id")["caption_idx"].transform("min")
            ]
        return table.sort_values(["image_id", "caption_idx"]).reset_index(drop=True)


def model_input(
    images: ImageStore,
    ids: np.ndarray | slice,
    model: torch.nn.Module,
    preprocess: Preprocess,
) -> torch.Tensor:
    """The float ``[B, 3, H, W]`` input of ``model``'s image tower for images ``ids`` (an int
    array or a slice) of ``images``: :func:`finish_input` of :func:`model_pixels`."""
    return finish_input(model_pixels(images, ids, model, preprocess), model)


def model_pixels(
    images: ImageStore,
    ids: np.ndarray | slice,
    model: torch.nn.Module,
    preprocess: Preprocess,
) -> torch.Tensor:
    """Images ``ids`` of ``images`` at ``model``'s image-tower size, as far as can travel in
    uint8: ``[B, H, W, 3]`` pixels, which :func:`finish_input` turns into the tower's input.

    A loader ships these, a quarter of the float input's bytes (a 64-image batch at 224 px:
    9.6 MB, not 38.5), and the device normalises them (:func:`finish_input`). Pixels already
    decoded at the tower's size (:class:`ArrayImages`) skip PIL. Any other store goes through
    ``preprocess`` image by image, cut before its ``ToTensor`` when it is open_clip's (ending in
    ``ToTensor`` and ``Normalize`` with the tower's statistics: :func:`pixel_stage`); a
    transform of another shape runs whole and its float output comes back as is.
    """
    visual = model.visual
    size = visual.image_size
    size = size[0] if isinstance(size, tuple) else size
    if isinstance(images, ArrayImages) and images.pixels.shape[1:3] == (size, size):
        return torch.from_numpy(images.pixels[ids])
    positions = np.arange(len(images))[ids]
    stage = pixel_stage(preprocess, visual)
    if stage is None:
        return torch.stack([preprocess(images[int(i)]) for i in positions])
    return torch.from_numpy(np.stack([np.asarray(stage(images[int(i)])) for i in positions]))


def finish_input(pixels: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    """:func:`model_pixels`' output as the float input of ``model``'s image tower, on the
    pixels' device: uint8 normalised with the tower's mean and std by the operations of
    torchvision's ``ToTensor`` and ``Normalize`` (the same float32 values, bit for bit, as the
    whole transform), float as it is."""
    if pixels.dtype != torch.uint8:
        return pixels
    visual = model.visual
    return normalise_pixels(pixels, visual.image_mean, visual.image_std)


def pixel_stage(preprocess: Preprocess, visual: torch.nn.Module) -> Preprocess | None:
    """The PIL part of an open_clip image transform (every step before ``ToTensor``), or None
    when ``preprocess`` is not a ``Compose`` ending in ``ToTensor`` and a ``Normalize`` with
    ``visual``'s mean and std (:func:`finish_input` does those two)."""
    steps = getattr(preprocess, "transforms", None)
    if not isinstance(steps, list) or len(steps) < 2:
        return None
    to_tensor, normalize = steps[-2:]
    if not (isinstance(to_tensor, ToTensor) and isinstance(normalize, Normalize)):
        return None
    if (tuple(normalize.mean), tuple(normalize.std)) != (
        tuple(visual.image_mean),
        tuple(visual.image_std),
    ):
        return None
    return Compose(steps[:-2])
