"""What trains in each arm: the model surgery before the loop (DESIGN, Training arms).

* ``full`` (:func:`unlock_text_tower`): the whole text tower and the logit scale;
* ``lora`` (:func:`add_shared_lora`): one shared peft LoRA on the XLM-R text tower, and the
  logit scale;
* per-language adapters (:func:`add_language_adapters`): one LoRA per training language, the
  rest of the model frozen.

The image tower is locked in all three (open_clip's ``lock_image``). Both LoRA settings build
their peft LoRA through :func:`add_lora`, so a shared LoRA and an adapter of the same
``LoraSection`` have the same shape: the adapter claims compare like with like.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from xlr.config import LoraSection
from xlr.langs import canonical_code


def count_trainable(model: nn.Module) -> int:
    """Number of parameters that receive gradients."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def freeze(model: nn.Module) -> None:
    """Lock every parameter of ``model``: surgery then unlocks what trains."""
    for param in model.parameters():
        param.requires_grad_(False)


def add_lora(
    transformer: nn.Module, lora: LoraSection, key: str, name: str = "default"
) -> nn.Module:
    """``transformer`` with a LoRA ``name`` shaped by ``lora``: wrapped by peft the first time,
    the adapter added beside the others when it is wrapped already.

    ``key`` is the params section ``lora`` came from (``train.lora``), named in errors. peft is
    imported here: it takes seconds to import, and only LoRA arms need it.
    """
    from peft import LoraConfig, PeftModel, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
    )
    try:
        if isinstance(transformer, PeftModel):
            transformer.add_adapter(name, config)
            return transformer
        return get_peft_model(transformer, config, adapter_name=name)
    except ValueError as err:
        raise ValueError(f"{key}.target_modules {lora.target_modules}: {err}") from err


def unlock_text_tower(model: nn.Module) -> int:
    """The ``full`` setting: the text tower (transformer and projection) and the logit scale
    train; the image tower and anything else stay locked.

    Returns the trainable parameter count.
    """
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith("text.") or name == "logit_scale")
    return count_trainable(model)


def add_shared_lora(model: nn.Module, lora: LoraSection) -> int:
    """The ``lora`` setting: one peft LoRA on the XLM-R text tower, plus the logit scale.

    peft freezes only the module it wraps (``text.transformer``), so the image tower and the
    text projection are locked here first. The logit scale (the loss temperature) trains, as
    in the ``full`` setting: it changes no embedding, and with it locked a LoRA step large
    enough to move the tower degrades retrieval instead (measured on the synthetic study). So
    ``full`` and ``lora`` differ only in how the text tower may change. Returns the trainable
    parameter count: ``r * (in + out)`` per targeted linear layer, plus one.
    """
    freeze(model)
    model.text.transformer = add_lora(model.text.transformer, lora, "train.lora")
    model.logit_scale.requires_grad_(True)
    return count_trainable(model)


def language_seed(seed: int, lang: str) -> int:
    """The seed of one language's adapter (init, batches, dropout): a function of the run seed
    and the language alone, so no adapter depends on which other languages are trained."""
    return int(np.random.SeedSequence([seed, *lang.encode()]).generate_state(1)[0])


def _check_rank(transformer: nn.Module, lora: LoraSection) -> None:
    """Refuse a rank above the width of a targeted layer: peft accepts it, but the update
    ``B @ A`` then has more parameters than the full-rank change it approximates."""
    for name, module in transformer.named_modules():
        targeted = any(name == t or name.endswith(f".{t}") for t in lora.target_modules)
        if targeted and isinstance(module, nn.Linear):
            width = min(module.in_features, module.out_features)
            if lora.r > width:
                raise ValueError(
                    f"adapters.lora.r = {lora.r} exceeds the width {width} of "
                    f"text.transformer.{name}; a LoRA rank must be at most the smaller of a "
                    "targeted layer's input and output features: lower adapters.lora.r"
                )


def add_language_adapters(
    model: nn.Module, langs: Sequence[str], lora: LoraSection, seed: int
) -> int:
    """Freeze ``model`` and give its XLM-R text tower one LoRA per language, named by its code.

    Only ``text.transformer`` is wrapped; the image tower, projection and logit scale stay
    locked. Each adapter is initialised under :func:`language_seed`. Returns the trainable
    parameter count of one adapter, the first language's adapter being the active one.
    """
    codes = [canonical_code(lang) for lang in langs]
    if not codes or len(set(codes)) != len(codes):
        raise ValueError(f"adapter languages must be distinct and at least one, got {list(langs)}")
    _check_rank(model.text.transformer, lora)
    freeze(model)
    transformer = model.text.transformer
    for lang in codes:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(language_seed(seed, lang))
            transformer = add_lora(transformer, lora, "adapters.lora", name=lang)
    model.text.transformer = transformer
    transformer.set_adapter(codes[0])
    return count_trainable(model)
