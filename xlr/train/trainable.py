"""What trains in each arm: the model surgery before the loop (README, "The arms").

* ``full`` (:func:`unlock_text_tower`): the whole text tower;
* ``lora`` (:func:`add_shared_lora`): one shared peft LoRA on the text tower;
* per-language adapters (:func:`add_language_adapters`): one LoRA per training language.

The image tower is locked in all three (open_clip's ``lock_image``), and the logit scale (the
loss temperature) follows one policy for every arm, ``train.logit_scale``: it trains or it is
locked at the base's value. Both LoRA settings build their peft LoRA through :func:`add_lora` on
the layers :func:`xlr.models.adapters.lora_targets` picks, so a shared LoRA and an adapter of the
same ``LoraSection`` have the same shape: the adapter claims compare like with like.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from xlr.config import LoraSection
from xlr.langs import canonical_code
from xlr.models.adapters import lora_targets


def count_trainable(model: nn.Module) -> int:
    """Number of parameters that receive gradients."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def freeze(model: nn.Module) -> None:
    """Lock every parameter of ``model``: surgery then unlocks what trains."""
    for param in model.parameters():
        param.requires_grad_(False)


def add_lora(text: nn.Module, lora: LoraSection, key: str, name: str = "default") -> nn.Module:
    """The text tower ``text`` with a LoRA ``name`` shaped by ``lora``: wrapped by peft the
    first time, the adapter added beside the others when it is wrapped already.

    ``key`` is the params section ``lora`` came from (``train.lora``), named in errors. peft is
    imported here: it takes seconds to import, and only LoRA arms need it.
    """
    from peft import LoraConfig, PeftModel, get_peft_model

    base = text.get_base_model() if isinstance(text, PeftModel) else text
    try:
        targets = lora_targets(base, lora)
    except ValueError as err:
        raise ValueError(f"{key}: {err}") from err
    _check_rank(base, targets, lora, key)
    config = LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
        bias="none",
    )  # fmt: skip
    if isinstance(text, PeftModel):
        text.add_adapter(name, config)
        return text
    return get_peft_model(text, config, adapter_name=name)


def set_logit_scale(model: nn.Module, policy: str) -> None:
    """Apply ``train.logit_scale`` (``train`` or ``lock``) after the surgery of any arm."""
    model.logit_scale.requires_grad_(policy == "train")


def unlock_text_tower(model: nn.Module, logit_scale: str = "train") -> int:
    """The ``full`` setting: the text tower (transformer and projection) trains, and the logit
    scale by ``logit_scale``; the image tower and anything else stay locked.

    Returns the trainable parameter count.
    """
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith("text."))
    set_logit_scale(model, logit_scale)
    return count_trainable(model)


def add_shared_lora(model: nn.Module, lora: LoraSection, logit_scale: str = "train") -> int:
    """The ``lora`` setting: one peft LoRA on the text tower, and the logit scale by
    ``logit_scale``.

    peft freezes only the module it wraps, so the whole model is locked here first: ``full``
    and ``lora`` differ only in how the text tower may change. Returns the trainable parameter
    count: ``r * (in + out)`` per targeted linear layer, plus one for a trained logit scale.
    """
    freeze(model)
    model.text = add_lora(model.text, lora, "train.lora")
    set_logit_scale(model, logit_scale)
    return count_trainable(model)


def language_seed(seed: int, lang: str) -> int:
    """The seed of one language's adapter (init, batches, dropout): a function of the run seed
    and the language alone, so no adapter depends on which other languages are trained."""
    return int(np.random.SeedSequence([seed, *lang.encode()]).generate_state(1)[0])


def _check_rank(text: nn.Module, targets: Sequence[str], lora: LoraSection, key: str) -> None:
    """Refuse a rank above the width of a targeted layer: peft accepts it, but the update
    ``B @ A`` then has more parameters than the full-rank change it approximates."""
    for name in targets:
        module = text.get_submodule(name)
        width = min(module.in_features, module.out_features)
        if lora.r > width:
            raise ValueError(
                f"{key}.r = {lora.r} exceeds the width {width} of text.{name}; a LoRA rank must "
                f"be at most the smaller of a targeted layer's input and output features: lower "
                f"{key}.r"
            )


def add_language_adapters(
    model: nn.Module, langs: Sequence[str], lora: LoraSection, seed: int
) -> int:
    """Freeze ``model`` and give its text tower one LoRA per language, named by its code.

    Each adapter is initialised under :func:`language_seed`. Returns the trainable parameter
    count of one adapter, the first language's adapter being the active one (the caller sets
    the logit-scale policy).
    """
    codes = [canonical_code(lang) for lang in langs]
    if not codes or len(set(codes)) != len(codes):
        raise ValueError(f"adapter languages must be distinct and at least one, got {list(langs)}")
    freeze(model)
    text = model.text
    for lang in codes:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(language_seed(seed, lang))
            text = add_lora(text, lora, "adapters.lora", name=lang)
    model.text = text
    text.set_adapter(codes[0])
    return count_trainable(model)
