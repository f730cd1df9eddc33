"""Token ids of a training pool's captions, computed once and cached on disk.

Every step of every run only indexes these ids, so tokenising (with open_clip's ftfy cleaning,
about a fifth of a 150-step tiny arm's time) happens once per tokenizer and caption list.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xlr.config import Params
from xlr.io import atomic_file
from xlr.paths import resolve_path


def tokenize_texts(tokenizer: Any, texts: Sequence[str], chunk: int = 4096) -> torch.Tensor:
    """Token ids ``[N, context_length]`` of every caption, once, so steps only index them."""
    if not texts:
        raise ValueError("no captions to tokenise")
    return torch.cat([tokenizer(list(texts[i : i + chunk])) for i in range(0, len(texts), chunk)])


def tokenizer_fingerprint(tokenizer: Any) -> str | None:
    """Content hash of an open_clip ``HFTokenizer``: its fast tokenizer's JSON (less the
    truncation and padding state each call sets) and the wrapper's settings (context length,
    cleaning, SEP stripping). None for other tokenizers, whose output is never cached."""
    backend = getattr(getattr(tokenizer, "tokenizer", None), "backend_tokenizer", None)
    if backend is None:
        return None
    clean = getattr(tokenizer, "clean_fn", None)
    clean = getattr(clean, "func", clean)  # a partial names its function
    settings = [
        type(tokenizer).__qualname__,
        getattr(tokenizer, "context_length", None),
        getattr(tokenizer, "strip_sep_token", None),
        getattr(tokenizer, "tokenizer_mode", None),
        getattr(clean, "__qualname__", repr(clean)),
    ]
    spec = json.loads(backend.to_str())
    for state in ("truncation", "padding"):  # set by each call from its arguments
        spec.pop(state, None)
    blob = json.dumps([settings, spec], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def cached_tokens(
    tokenizer: Any, texts: Sequence[str], cache_dir: str | os.PathLike[str] | None
) -> torch.Tensor:
    """:func:`tokenize_texts`, kept in ``cache_dir`` by tokenizer content and captions.

    Why: every arm of a study tokenises the same fine-tuning pool. The file is a plain ``.npy``
    (read without pickle) written atomically; one with the wrong shape is replaced.
    """
    fingerprint = tokenizer_fingerprint(tokenizer)
    if cache_dir is None or fingerprint is None or not texts:
        return tokenize_texts(tokenizer, texts)
    digest = hashlib.sha256(fingerprint.encode())
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    path = Path(cache_dir) / f"{digest.hexdigest()[:24]}.npy"
    if path.is_file():
        ids = np.load(path, allow_pickle=False)
        if ids.ndim == 2 and len(ids) == len(texts):
            return torch.from_numpy(ids.astype(np.int64))
    tokens = tokenize_texts(tokenizer, texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, tokens.numpy().astype(np.int32))
    return tokens


def token_cache_dir(params: Params) -> Path:
    """``<run.cache_dir>/tokens``: token ids shared by every arm and base of every run."""
    return resolve_path(params.run.cache_dir) / "tokens"
