"""The base models every arm starts from: where the cached tiny bases live, and loading one.

The tiny base is pretrained once per ``run.base_seeds`` entry by :mod:`xlr.train.pretrain` and
cached by config hash; the real study has one base, the open_clip model and pretrained tag of
``model``. Training and evaluation both load bases through :func:`load_base`.

Cache layout under ``run.cache_dir``::

    tokenizer/<hash of corpus + vocab size>/     the XLM-R Unigram tokenizer
    base/<hash of corpus + model.tiny>-s<seed>/  model folder + pretrain_report.json
"""

from __future__ import annotations

from pathlib import Path

from xlr.config import Params, config_hash, resolve_path
from xlr.models.factory import ModelBundle, create_model, load_model

REPORT_NAME = "pretrain_report.json"  # the last file of a pretrained base: it marks it complete


def tokenizer_dir(params: Params) -> Path:
    """Where the tokenizer trained on the generated corpus lives."""
    key = config_hash(params.data.synthetic, params.model.tiny.vocab_size)
    return resolve_path(params.run.cache_dir) / "tokenizer" / key


def base_model_dir(params: Params, base_seed: int) -> Path:
    """Where the tiny base pretrained with ``base_seed`` lives."""
    key = config_hash(params.data.synthetic, params.model.tiny)
    return resolve_path(params.run.cache_dir) / "base" / f"{key}-s{base_seed}"


def is_base_cached(params: Params, base_seed: int) -> bool:
    """Whether the tiny base of ``base_seed`` is built and pretrained (its report is the last
    file written before the folder is renamed into place)."""
    return (base_model_dir(params, base_seed) / REPORT_NAME).is_file()


def load_base(params: Params, base_seed: int) -> ModelBundle:
    """The model every arm of ``base_seed`` starts from: the cached tiny base, or the real
    open_clip model and pretrained tag (one base; the seed is unused)."""
    if params.model.kind != "tiny":
        return create_model(params.model)
    if not is_base_cached(params, base_seed):
        raise FileNotFoundError(
            f"{base_model_dir(params, base_seed)}: the tiny base of seed {base_seed} is not "
            "pretrained yet; run notebook 02 or `xlr prepare PARAMS` first"
        )
    return load_model(base_model_dir(params, base_seed))
