"""Encoding images and captions of an :class:`~xlr.data.imagetext.ImageTextSet` through a CLIP.

Every arm and every retrieval task encodes through :func:`encode_images` and
:func:`encode_texts`, so batching, device placement, autocast and normalisation are the same
everywhere. Arms reach the retrieval tasks (:mod:`xlr.eval.tasks`) through the :class:`Encoder`
protocol: :class:`ModelEncoder` for a plain CLIP, a per-language adapter encoder for the
adapter arm. Embeddings are cached on disk by arm, seed, checkpoint hash, eval set and language
(:func:`cached_embeddings`), so re-running an evaluation never re-encodes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from xlr.arms import FALLBACKS
from xlr.config import Fallback
from xlr.data.imagetext import CAPTION_COLUMNS, ImageStore, ImageTextSet
from xlr.io import atomic_file
from xlr.models.adapters import (
    AVERAGE,
    BASE,
    NEAREST,
    adapter_route,
    add_average_adapter,
    load_adapters,
)
from xlr.models.encode import EMBEDDINGS_FORMAT, encode_images, unit_features
from xlr.models.factory import ModelBundle, load_model
from xlr.runtime import autocast, chunks, resolve_precision


@torch.no_grad()
def encode_texts(
    model: torch.nn.Module,
    tokenizer,
    texts: Sequence[str],
    device: torch.device,
    batch_size: int = 256,
    progress: bool = False,
    precision: str = "auto",
) -> np.ndarray:
    """L2-normalised float32 caption embeddings ``[N, D]`` (tokenised with the model's own
    multilingual tokenizer, never open_clip's English ``tokenize``), autocast as
    :func:`encode_images`."""
    if len(texts) == 0:
        raise ValueError("no captions to encode")
    model.eval()
    out = []
    for rows in tqdm(list(chunks(len(texts), batch_size)), desc="captions", disable=not progress):
        tokens = tokenizer(list(texts[rows])).to(device)
        with autocast(device, precision):
            features = model.encode_text(tokens)
        out.append(unit_features(features).cpu())
    return torch.cat(out).numpy()


class Encoder(Protocol):
    """What the retrieval tasks need from an arm: embeddings of images and of captions.

    ``encode_texts`` receives every caption of one language in one call, with that language, so
    an encoder can route each language explicitly (the adapter arm selects the language's LoRA,
    or its fallback, before encoding). Both methods return L2-normalised float32 ``[N, D]``
    rows in input order. ``name`` is the model's name in CLIP_benchmark-style records;
    ``checkpoint`` is a content hash of the weights, so cached embeddings of one checkpoint are
    never served for another; ``describe()`` is the provenance written beside results.
    """

    @property
    def name(self) -> str: ...

    @property
    def checkpoint(self) -> str: ...

    def describe(self) -> dict[str, Any]: ...

    def encode_images(self, images: ImageStore) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str], lang: str) -> np.ndarray: ...


def state_dict_hash(model: torch.nn.Module) -> str:
    """Content hash of a model's parameters and buffers (names, dtypes, shapes, bytes).

    Identifies a checkpoint whether it came from disk or from a training run in memory.
    """
    digest = hashlib.blake2b(digest_size=16)
    for key, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}|{flat.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class ModelEncoder:
    """:class:`Encoder` of one plain CLIP: the same weights for every language (``lang`` unused).

    The checkpoint hash is computed on first use (hashing a ViT-B-32 takes a few seconds).
    ``precision`` is ``eval.precision`` (:func:`xlr.runtime.autocast`).
    """

    def __init__(
        self,
        bundle: ModelBundle,
        device: str | torch.device = "cpu",
        batch_size: int = 256,
        checkpoint: str | None = None,
        precision: str = "auto",
    ) -> None:
        self.bundle = bundle
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.precision = precision
        self._checkpoint = checkpoint
        bundle.model.to(self.device)

    @classmethod
    def from_folder(
        cls,
        folder: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        batch_size: int = 256,
        precision: str = "auto",
    ) -> ModelEncoder:
        """Load an arm's model folder (:func:`xlr.models.factory.load_model`), failing clearly
        when it is absent."""
        path = Path(folder).resolve()
        if not path.is_dir():
            raise FileNotFoundError(
                f"{path}: no checkpoint for this arm (the folder does not exist); train the arm "
                "first (notebooks 02/03), or for the zero-shot arm pretrain the base (notebook 02 "
                "or `xlr prepare PARAMS`)"
            )
        return cls(load_model(path, str(device)), device, batch_size, precision=precision)

    @property
    def name(self) -> str:
        return self.bundle.name

    @property
    def checkpoint(self) -> str:
        """Weights hash, and the precision the setting means on this device unless fp32
        (:func:`~xlr.runtime.resolve_precision`): embeddings encoded under another autocast
        dtype are other numbers, so they get their own cache entry, and ``auto`` is fp32 on the
        CPU but bf16 on CUDA, so a CPU run and a GPU run sharing ``runs/`` never swap theirs."""
        if self._checkpoint is None:
            self._checkpoint = state_dict_hash(self.bundle.model)
        precision = resolve_precision(self.device, self.precision)
        return self._checkpoint if precision == "fp32" else f"{self._checkpoint}-{precision}"

    def describe(self) -> dict[str, Any]:
        return {
            "encoder": type(self).__name__,
            "model": self.name,
            "checkpoint": self.checkpoint,
            "device": str(self.device),
            "batch_size": self.batch_size,
            "precision": self.precision,
        }

    def encode_images(self, images: ImageStore) -> np.ndarray:
        model = self.bundle.model
        return encode_images(
            model, self.bundle.preprocess_val, images, self.device, self.batch_size,
            precision=self.precision,
        )  # fmt: skip

    def encode_texts(self, texts: Sequence[str], lang: str) -> np.ndarray:
        model = self.bundle.model
        return encode_texts(
            model, self.bundle.tokenizer, texts, self.device, self.batch_size,
            precision=self.precision,
        )  # fmt: skip


def set_fingerprint(eval_set: ImageTextSet) -> str:
    """Content hash of an eval set's captions table, image keys and image count.

    Pixels are not hashed (reading every benchmark photo would cost more than encoding it);
    a changed caption, language, image order or image count changes the fingerprint.
    """
    digest = hashlib.blake2b(digest_size=8)
    table = eval_set.captions[list(CAPTION_COLUMNS)].reset_index(drop=True)
    digest.update(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes())
    digest.update(json.dumps([len(eval_set), list(map(str, eval_set.image_keys))]).encode())
    return digest.hexdigest()


_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]*$")


def _path_part(kind: str, value: str) -> str:
    if not _SAFE_NAME.match(value):
        raise ValueError(
            f"{kind} {value!r} cannot name a cache folder; use letters, digits and . _ + = -"
        )
    return value


@dataclass(frozen=True)
class EmbeddingKey:
    """Everything that determines an embedding file: the model, the set, the item."""

    arm: str
    base_seed: int
    seed: int | None
    checkpoint: str
    set_name: str
    set_hash: str

    def path(self, root: Path, item: str) -> Path:
        """``root/v<EMBEDDINGS_FORMAT>/<arm>/b<base>-s<seed>-<checkpoint>/<set>-<hash>/<item>.npy``."""
        model = f"b{self.base_seed}-s{self.seed}-{_path_part('checkpoint', self.checkpoint)}"
        eval_set = f"{_path_part('eval set name', self.set_name)}-{self.set_hash}"
        arm = _path_part("arm", self.arm)
        return root / f"v{EMBEDDINGS_FORMAT}" / arm / model / eval_set / f"{item}.npy"


def _checked_embeddings(x: np.ndarray, n_rows: int, what: str) -> np.ndarray:
    """An encoder's output as float32 ``[n_rows, D]``, or an error naming ``what``."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != n_rows or x.shape[1] == 0:
        raise ValueError(f"{what}: expected embeddings shaped [{n_rows}, D], got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what}: the encoder returned NaN or infinite values")
    return x


def cached_embeddings(
    cache_dir: str | os.PathLike[str] | None,
    key: EmbeddingKey,
    item: str,
    n_rows: int,
    encode: Callable[[], np.ndarray],
) -> np.ndarray:
    """Embeddings of ``item`` (``images`` or ``text-<lang>``), encoded once per key.

    A cached file with the wrong row count (a set changed under the same name and hash is not
    possible, but a hand-edited cache is) is re-encoded and replaced. ``cache_dir=None``
    encodes every time. Files are written atomically, so a killed run never leaves half an
    array that a later run would trust.
    """
    what = f"{key.arm} {key.set_name} {item}"
    if cache_dir is None:
        return _checked_embeddings(encode(), n_rows, what)
    path = key.path(Path(cache_dir), item)
    if path.is_file():
        cached = np.load(path)
        if cached.ndim == 2 and cached.shape[0] == n_rows:
            return cached
    embeddings = _checked_embeddings(encode(), n_rows, what)
    with atomic_file(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, embeddings)
    return embeddings


class AdapterEncoder(ModelEncoder):
    """:class:`xlr.eval.encoders.Encoder` of the adapter arms: captions through their language's
    adapter, images through the frozen image tower.

    Languages without an adapter take ``fallback``: ``base`` (adapters off: the base model),
    ``nearest`` (the adapter of :func:`xlr.langs.nearest_language` among the trained ones) or
    ``average`` (the mean update of all adapters, see :func:`add_average_adapter`).
    :meth:`route` says which was used, for the results table. The encoder adds the derived
    ``average`` adapter to ``bundle``'s model (whatever the fallback, so the checkpoint hash
    does not depend on which encoders were built first) and freezes it.
    """

    def __init__(
        self,
        bundle: ModelBundle,
        fallback: Fallback = "base",
        device: str | torch.device = "cpu",
        batch_size: int = 256,
        precision: str = "auto",
    ) -> None:
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
        transformer = bundle.model.text
        if not hasattr(transformer, "peft_config"):
            raise TypeError("the bundle's text tower has no adapters: use ModelEncoder for it")
        # Sorted: the ``cat`` factors stack in this order, and a reloaded model lists its
        # adapters in folder order, not training order.
        self.langs = sorted(name for name in transformer.peft_config if name != AVERAGE)
        add_average_adapter(transformer, self.langs)
        for param in bundle.model.parameters():
            param.requires_grad_(False)
        super().__init__(bundle, device, batch_size, precision=precision)
        self.fallback = fallback
        bundle.model.eval()

    @classmethod
    def from_folder(
        cls,
        base: ModelBundle,
        folder: str | os.PathLike[str],
        fallback: Fallback = "base",
        langs: Sequence[str] | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 256,
        precision: str = "auto",
    ) -> AdapterEncoder:
        """The encoder of an adapter arm's folder (see :func:`load_adapters`) on ``base``."""
        adapters = load_adapters(base, folder, langs)
        return cls(adapters, fallback, device, batch_size, precision=precision)

    def route(self, lang: str) -> str:
        """Which text weights encode ``lang``: its adapter (``de``), ``base``, ``nearest:es``
        or ``average``."""
        return adapter_route(lang, self.langs, self.fallback)

    @contextlib.contextmanager
    def _routed(self, lang: str) -> Iterator[None]:
        transformer = self.bundle.model.text
        route = self.route(lang)
        if route == BASE:
            with transformer.disable_adapter():
                yield
            return
        transformer.set_adapter(route.removeprefix(NEAREST), inference_mode=True)
        yield

    @property
    def checkpoint(self) -> str:
        """Hash of the weights and adapters, plus the fallback: held-out languages' embeddings
        differ between fallbacks of the same weights."""
        return f"{super().checkpoint}-{self.fallback}"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "adapters": list(self.langs), "fallback": self.fallback}

    def encode_texts(self, texts: Sequence[str], lang: str) -> np.ndarray:
        """Captions of one language, through the adapter :meth:`route` picks for it."""
        with self._routed(lang):
            return super().encode_texts(texts, lang)
