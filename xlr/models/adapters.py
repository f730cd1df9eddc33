"""LoRA on a CLIP's text tower: which layers it adapts, and per-language adapters as saved,
loaded and routed.

Training writes them (:mod:`xlr.train.adapters`) and evaluation reads them
(:class:`xlr.eval.encoders.AdapterEncoder`); what both must agree on lives here: the folder
layout (``adapters/<lang>/`` as peft's ``save_pretrained`` writes it, see
:data:`xlr.arms.ADAPTERS_DIR`), which parameters belong to which adapter, the ``average``
adapter and which adapter encodes a language. peft wraps the whole text tower (``model.text``:
XLM-R and the projection open_clip puts on top of it), so a LoRA may adapt the projection too.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from xlr.arms import ADAPTERS_DIR
from xlr.config import Fallback, LoraSection
from xlr.langs import canonical_code, nearest_language
from xlr.models.factory import ModelBundle

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")  # what one adapter stores
AVERAGE = "average"  # the derived adapter of held-out languages; never a language code
BASE = "base"  # the route with every adapter off
NEAREST = "nearest:"  # prefix of a route through the nearest trained language's adapter


# Feed-forward pair of every XLM-R layer (``encoder.layer.N.``): not ``attention.output.dense``
_FFN = re.compile(r"transformer\.encoder\.layer\.\d+\.(intermediate|output)\.dense")
_PROJECTION = re.compile(r"proj(\.\d+)?")


def lora_targets(text: nn.Module, lora: LoraSection) -> list[str]:
    """Full names, inside the text tower ``text`` (``model.text``), of the linear layers a LoRA
    shaped by ``lora`` adapts: XLM-R layers named by ``target_modules`` (peft's rule: the name or
    its last parts), with ``ffn`` every layer's feed-forward pair, with ``projection`` the text
    projection's linear layers. Exact names, so peft adapts exactly these; from 20 names on it
    records them in ``adapter_config.json`` as the shortest suffixes that match only them
    (``query``, ``value`` at xlm-roberta-base's 24), and the saved tensors keep the full names."""
    names = []
    for name, module in text.named_modules():
        # a layer another adapter already adapts keeps its linear as peft's ``base_layer``
        if not isinstance(getattr(module, "base_layer", module), nn.Linear):
            continue
        in_transformer = name.startswith("transformer.")
        named = in_transformer and any(
            name == f"transformer.{t}" or name.endswith(f".{t}") for t in lora.target_modules
        )
        ffn = lora.ffn and _FFN.fullmatch(name) is not None
        projection = lora.projection and _PROJECTION.fullmatch(name) is not None
        if named or ffn or projection:
            names.append(name)
    if not names:
        raise ValueError(
            f"LoRA target_modules {lora.target_modules} match no linear layer of the text tower; "
            "use XLM-R layer names such as query, key, value, dense"
        )
    return names


def adapter_route(lang: str, langs: Sequence[str], fallback: Fallback) -> str:
    """Which text weights encode ``lang`` given adapters for ``langs``: its own adapter
    (``de``), or by ``fallback`` ``base`` (adapters off), ``nearest:es``
    (:func:`xlr.langs.nearest_language` among ``langs``) or ``average``."""
    code = canonical_code(lang)
    if code in langs:
        return code
    if fallback == "nearest":
        return f"{NEAREST}{nearest_language(code, list(langs))}"
    return AVERAGE if fallback == "average" else BASE


def adapter_tensors(text: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The parameters of each adapter of a peft-wrapped tower, by adapter name (the name
    follows ``lora_A``/``lora_B`` in peft's parameter names)."""
    tensors: dict[str, list[nn.Parameter]] = {}
    for name, param in text.named_parameters():
        parts = name.split(".")
        lora = [i for i, part in enumerate(parts) if part.startswith("lora_")]
        if lora:
            tensors.setdefault(parts[lora[0] + 1], []).append(param)
    return tensors


def lora_deltas(text: nn.Module, adapter: str) -> dict[str, torch.Tensor]:
    """The weight update ``B @ A * scaling`` of ``adapter`` in every layer it adapts, by layer.

    What an adapter changes, independent of how its rank is factored: the quantity to compare
    between adapters (the ``average`` adapter is the mean of the languages' updates).
    """
    from peft.tuners.lora import LoraLayer

    deltas = {}
    for name, module in text.named_modules():
        if isinstance(module, LoraLayer) and adapter in module.lora_A:
            a, b = module.lora_A[adapter].weight, module.lora_B[adapter].weight
            deltas[name] = (b @ a * module.scaling[adapter]).detach()
    if not deltas:
        raise KeyError(f"no adapter {adapter!r} in this model")
    return deltas


def add_average_adapter(text: nn.Module, langs: Sequence[str]) -> None:
    """Add the ``average`` adapter: the exact mean of the languages' LoRA updates.

    peft's ``cat`` combination stacks the scaled factors (rank ``sum r``), so its update is the
    weighted sum of the languages' updates; ``linear`` averages A and B separately, which is not
    the mean update, and ``svd`` truncates it. Idempotent.
    """
    if AVERAGE in text.peft_config:
        return
    weights = [1.0 / len(langs)] * len(langs)
    text.add_weighted_adapter(list(langs), weights, AVERAGE, combination_type="cat")


def adapter_bytes(folder: Path) -> int:
    """Bytes one saved LoRA takes on disk: its config and its weights."""
    return sum((folder / name).stat().st_size for name in ADAPTER_FILES)


def saved_adapter_langs(folder: str | os.PathLike[str]) -> list[str]:
    """The languages with a saved adapter under an arm folder's ``adapters/``."""
    root = Path(folder) / ADAPTERS_DIR
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root}: no adapters here; train them first (xlr.train.adapters.train_adapters, "
            "notebook 03) or point at an adapter arm's folder"
        )
    return sorted(path.parent.name for path in root.glob(f"*/{ADAPTER_FILES[0]}"))


def _check_layout(text: nn.Module, folder: Path) -> None:
    """Refuse an adapter whose layers the text tower lacks: peft would leave them at their
    zero initialisation with a warning, and the arm would evaluate as the base model."""
    prefix = "base_model.model."
    for key in load_file(folder / ADAPTER_FILES[1]):
        layer = key.removeprefix(prefix).split(".lora_")[0]
        try:
            text.get_submodule(layer)
        except AttributeError:
            raise ValueError(
                f"{folder}: this adapter adapts {layer!r}, which the text tower lacks; it was "
                "saved by an older xlr (LoRA inside text.transformer) or for another model: "
                "train the arm again"
            ) from None


def load_adapters(
    base: ModelBundle, folder: str | os.PathLike[str], langs: Sequence[str] | None = None
) -> ModelBundle:
    """A frozen copy of ``base`` with the adapters saved in ``folder`` (an arm folder), all of
    them or those of ``langs``; outputs match the trained model's exactly."""
    from peft import PeftModel

    root = Path(folder) / ADAPTERS_DIR
    available = saved_adapter_langs(folder)
    wanted = available if langs is None else [canonical_code(lang) for lang in langs]
    missing = [lang for lang in wanted if lang not in available]
    if missing or not wanted:
        raise FileNotFoundError(
            f"{root}: no adapter directory for {missing or 'any language'} (found "
            f"{available}); train those languages or drop them from langs"
        )
    model = copy.deepcopy(base.model)
    for param in model.parameters():
        param.requires_grad_(False)
    for lang in wanted:
        _check_layout(model.text, root / lang)
    text = PeftModel.from_pretrained(model.text, root / wanted[0], adapter_name=wanted[0])
    for lang in wanted[1:]:
        text.load_adapter(root / lang, adapter_name=lang)
    model.text = text
    return dataclasses.replace(base, model=model.eval())


def saved_params(folder: Path) -> int:
    return sum(t.numel() for t in load_file(folder / ADAPTER_FILES[1]).values())
