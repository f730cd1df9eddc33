"""The base models every arm starts from: where the cached tiny bases live, and loading one.

The tiny base is pretrained once per ``run.base_seeds`` entry by :mod:`xlr.train.pretrain` and
cached by config hash; the real study has one base, the open_clip model and pretrained tag of
``model``. Training and evaluation both load bases through :func:`load_base`.

Cache layout under ``run.cache_dir``::

    tokenizer/<hash of corpus key + vocab size>/     the XLM-R Unigram tokenizer
    base/<hash of corpus key + model.tiny>-s<seed>/  model folder + pretrain_report.json

The corpus key (:func:`xlr.data.synthetic.corpus_key`) holds the generator's format version and
the lexicons' bytes as well as the config, so a corrected word retrains what was built on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xlr.config import Params, config_hash
from xlr.data.synthetic import corpus_key
from xlr.models.factory import (
    ModelBundle,
    create_model,
    load_model,
    model_tokenizer,
    weights_revision,
)
from xlr.paths import resolve_path

REPORT_NAME = "pretrain_report.json"  # the last file of a pretrained base: it marks it complete


def tokenizer_dir(params: Params) -> Path:
    """Where the tokenizer trained on the generated corpus lives."""
    key = config_hash(corpus_key(params.data.synthetic), params.model.tiny.vocab_size)
    return resolve_path(params.run.cache_dir) / "tokenizer" / key


def base_key(params: Params, base_seed: int) -> str:
    """What a base is: the tiny base's corpus, architecture, pretraining and seed, or the real
    model's config (open_clip name and pretrained tag; one base, the seed unused) with the
    content of its local weights (:func:`xlr.models.factory.weights_revision`), so a
    ``local-dir:`` folder or checkpoint file replaced in place is another base."""
    if params.model.kind != "tiny":
        revision = weights_revision(params.model)  # None: a tag or hub name pins the weights
        return config_hash(params.model, *([] if revision is None else [revision]))
    return f"{config_hash(corpus_key(params.data.synthetic), params.model.tiny)}-s{base_seed}"


def base_model_dir(params: Params, base_seed: int) -> Path:
    """Where the tiny base pretrained with ``base_seed`` lives."""
    return resolve_path(params.run.cache_dir) / "base" / base_key(params, base_seed)


def is_base_cached(params: Params, base_seed: int) -> bool:
    """Whether the tiny base of ``base_seed`` is built and pretrained (its report is the last
    file written before the folder is renamed into place)."""
    return (base_model_dir(params, base_seed) / REPORT_NAME).is_file()


def load_base(params: Params, base_seed: int) -> ModelBundle:
    """The model every arm of ``base_seed`` starts from: the cached tiny base, or the real
    open_clip model and pretrained tag (one base; the seed is unused)."""
    if params.model.kind != "tiny":
        return create_model(params.model)
    return load_model(_cached_base_dir(params, base_seed))


def load_base_tokenizer(params: Params, base_seed: int) -> Any:
    """The tokenizer of :func:`load_base`'s model, without loading the model."""
    if params.model.kind != "tiny":
        return model_tokenizer(params.model)
    return model_tokenizer(params.model, tiny_dir=_cached_base_dir(params, base_seed))


def _cached_base_dir(params: Params, base_seed: int) -> Path:
    if not is_base_cached(params, base_seed):
        raise FileNotFoundError(
            f"{base_model_dir(params, base_seed)}: the tiny base of seed {base_seed} is not "
            "pretrained yet; run notebook 02 or `xlr prepare PARAMS` first"
        )
    return base_model_dir(params, base_seed)
