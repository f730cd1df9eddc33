"""One model factory: real open_clip CLIPs by name and tag, and the tiny offline stand-in.

Models are data (open_clip's habit): a model folder holds ``open_clip_config.json`` (the towers),
the XLM-R ``config.json`` and tokenizer files of the text tower, and the weights in
``open_clip_model.safetensors``. Its text config names the folder's own path, so plain
``open_clip.create_model_and_transforms("local-dir:<folder>")`` (and CLIP_benchmark) load it
where it was saved; :func:`load_model` also loads it after a move, because it reads the text
tower from wherever the folder now is, and builds that tower from its config, never from the hub.

The study's model is any open_clip CLIP with a multilingual Hugging Face text tower
(:func:`check_multilingual`): an open_clip name (``xlm-roberta-base-ViT-B-32``) with a
pretrained tag or a local checkpoint, a ``local-dir:`` folder or an ``hf-hub:`` repository.

The tiny stand-in is ``xlm-roberta-base-ViT-B-32`` shrunk: the same CustomTextCLIP with a ViT
image tower and a Hugging Face XLM-R text tower (mean pooling, MLP projection), sized by
``model.tiny`` and seeded, so everything downstream (LoRA on ``query``/``value``, tokenizers,
locking) runs unchanged on either.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.hf_model import HFTextEncoder
from safetensors.torch import save_file
from transformers import XLMRobertaConfig

from xlr.config import ModelSection, TinyModelSection
from xlr.io import atomic_dir, model_files_digest
from xlr.models.tokenizer import load_tokenizer
from xlr.paths import resolve_path

OPEN_CLIP_CONFIG = "open_clip_config.json"
HF_CONFIG = "config.json"
WEIGHTS = "open_clip_model.safetensors"  # the first name open_clip's local-dir loader looks for
LOCAL_DIR = "local-dir:"
HF_HUB = "hf-hub:"
# Hugging Face model types of the multilingual text towers open_clip builds (its xlm-roberta-*
# and mt5-* CLIPs); with any other tower the study's languages would be unequal by design
MULTILINGUAL_TEXT_TOWERS: tuple[str, ...] = ("xlm-roberta", "xlm-roberta-xl", "mt5", "umt5")
Transform = Callable[[Any], torch.Tensor]  # PIL image -> normalised tensor


@dataclass
class ModelBundle:
    """A CLIP with what it takes to feed it: image transforms, tokenizer, and its config.

    ``tokenizer`` maps a list of strings to a ``(n, context_length)`` id tensor (open_clip's
    ``HFTokenizer`` for XLM-R towers); ``model_cfg`` is the open_clip model config it was built
    from, kept so :func:`save_model_dir` can write a folder that rebuilds it.
    """

    model: torch.nn.Module
    preprocess_train: Transform
    preprocess_val: Transform
    tokenizer: Callable[..., torch.Tensor]
    name: str
    model_cfg: dict[str, Any]


def tiny_model_cfg(tiny: TinyModelSection, image_size: int, folder: Path) -> dict[str, Any]:
    """The open_clip model config of the stand-in, shaped like xlm-roberta-base-ViT-B-32's."""
    return {
        "embed_dim": tiny.embed_dim,
        "vision_cfg": {
            "image_size": image_size,
            "layers": tiny.vision_layers,
            "width": tiny.vision_width,
            "head_width": tiny.vision_width // tiny.vision_heads,
            "patch_size": tiny.patch_size,
        },
        "text_cfg": {
            "hf_model_name": str(folder),
            "hf_tokenizer_name": str(folder),
            "hf_pooler_type": "mean_pooler",
            "hf_proj_type": "mlp",
            "context_length": tiny.context_length,
        },
    }


def tiny_text_config(tiny: TinyModelSection, vocab_size: int) -> XLMRobertaConfig:
    """A small XLM-R: XLM-R's ids and norms, ``model.tiny``'s sizes.

    ``max_position_embeddings`` is context length + 2 because RoBERTa position ids start after
    the padding index (1); open_clip reads the text context length from it.
    """
    return XLMRobertaConfig(
        vocab_size=vocab_size,
        hidden_size=tiny.text_hidden,
        num_hidden_layers=tiny.text_layers,
        num_attention_heads=tiny.text_heads,
        intermediate_size=tiny.text_intermediate,
        max_position_embeddings=tiny.context_length + 2,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        bos_token_id=0,
        pad_token_id=1,
        eos_token_id=2,
    )


def _require_model_dir(folder: Path) -> None:
    """Fail early, naming the missing file and how to make the folder."""
    for name in (OPEN_CLIP_CONFIG, HF_CONFIG, "tokenizer.json", WEIGHTS):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"{folder}: not a model folder (no {name}); write one with "
                "xlr.models.factory.write_tiny_model_dir or xlr.models.factory.save_model_dir"
            )


def _text_cfg_at(text_cfg: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``text_cfg`` with its HF config and tokenizer read from ``folder``."""
    return text_cfg | {"hf_model_name": str(folder), "hf_tokenizer_name": str(folder)}


def _build(
    folder: Path, device: str, precision: str, seed: int = 0
) -> tuple[torch.nn.Module, Transform, Transform]:
    """open_clip's own local-dir factory (model, train and val transforms), run from ``folder``.

    Construction draws random weights (overwritten when the folder has weights) from ``seed`` in
    a forked RNG, so neither writing nor loading a model moves the caller's random stream.

    The text config is passed again with the folder's current path because open_clip would read
    the recorded one; ``hf_model_pretrained`` must be False in it, since passing ``text_cfg``
    replaces the value ``pretrained_text=False`` would set: the tower comes from its config and
    any weights from the folder's safetensors, never from the hub.
    """
    model_cfg = json.loads((folder / OPEN_CLIP_CONFIG).read_text())["model_cfg"]
    text_cfg = _text_cfg_at(model_cfg["text_cfg"], folder) | {"hf_model_pretrained": False}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return open_clip.create_model_and_transforms(
            f"{LOCAL_DIR}{folder}",
            device=device,
            precision=precision,
            pretrained_text=False,
            text_cfg=text_cfg,  # open_clip's **model_kwargs override the file's model_cfg
        )


def _save_weights(model: torch.nn.Module, folder: Path) -> None:
    """Weights only, as safetensors: loading them never unpickles code."""
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    save_file(state, folder / WEIGHTS)


def write_tiny_model_dir(
    tiny: TinyModelSection,
    tokenizer_dir: str | os.PathLike[str],
    image_size: int,
    out_dir: str | os.PathLike[str],
    seed: int,
) -> Path:
    """Write a randomly initialised tiny CLIP folder, deterministic in ``seed``.

    The XLM-R vocabulary is the tokenizer's size, so the folder fits the corpus it was trained
    on. Weights are drawn under ``torch.manual_seed(seed)`` without touching the caller's RNG
    state. The folder is written atomically and replaces an existing one.
    """
    tokenizer = load_tokenizer(tokenizer_dir)
    final = Path(out_dir).resolve()
    model_cfg = tiny_model_cfg(tiny, image_size, final)
    text_config = tiny_text_config(tiny, len(tokenizer))
    return _write_random_dir(model_cfg, text_config, tokenizer_dir, final, seed)


def write_random_model_dir(
    name: str,
    text_config: XLMRobertaConfig,
    tokenizer_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    seed: int,
) -> Path:
    """Write open_clip model ``name`` at its real size with random weights, offline.

    The towers are open_clip's own config of ``name`` (``xlm-roberta-base-ViT-B-32``: ViT-B/32,
    mean pooling, MLP projection); only the text tower's config and tokenizer come from the
    caller instead of the hub, which is what lets a test build the real architecture without a
    network (``text_config`` the published ``xlm-roberta-base`` config, ``tokenizer_dir`` any
    XLM-R-framed tokenizer whose ids fit its vocabulary). Deterministic in ``seed``; atomic.
    """
    model_cfg = open_clip.get_model_config(name)
    if model_cfg is None or "hf_model_name" not in model_cfg.get("text_cfg", {}):
        raise ValueError(
            f"{name!r}: not an open_clip model with a Hugging Face text tower; "
            "see open_clip.list_models() for the xlm-roberta-* and mt5-* ones"
        )
    final = Path(out_dir).resolve()
    model_cfg = model_cfg | {"text_cfg": _text_cfg_at(model_cfg["text_cfg"], final)}
    return _write_random_dir(model_cfg, text_config, tokenizer_dir, final, seed)


def _write_random_dir(
    model_cfg: dict[str, Any],
    text_config: XLMRobertaConfig,
    tokenizer_dir: str | os.PathLike[str],
    final: Path,
    seed: int,
) -> Path:
    """A model folder of ``model_cfg`` whose text tower is ``text_config`` and the tokenizer in
    ``tokenizer_dir``, with weights drawn from ``seed``; ids the tokenizer can emit must fit
    the tower's vocabulary."""
    tokenizer = load_tokenizer(tokenizer_dir)
    if tokenizer.pad_token_id != 1:
        raise ValueError(f"{tokenizer_dir}: pad id {tokenizer.pad_token_id}, XLM-R needs 1")
    if len(tokenizer) > text_config.vocab_size:
        raise ValueError(
            f"{tokenizer_dir}: {len(tokenizer)} tokens, more than the text tower's vocabulary "
            f"({text_config.vocab_size}); train a smaller tokenizer"
        )
    with atomic_dir(final, overwrite=True) as tmp:
        tokenizer.save_pretrained(tmp)
        text_config.save_pretrained(tmp)
        config = {
            "model_cfg": model_cfg,
            "preprocess_cfg": {"mean": OPENAI_DATASET_MEAN, "std": OPENAI_DATASET_STD},
        }
        (tmp / OPEN_CLIP_CONFIG).write_text(json.dumps(config, indent=2))
        model, _, _ = _build(tmp, "cpu", "fp32", seed)
        _save_weights(model, tmp)
    return final


def load_model(
    folder: str | os.PathLike[str], device: str = "cpu", precision: str = "fp32"
) -> ModelBundle:
    """Load a model folder (tiny or saved) offline; reloading gives bit-identical outputs.

    The model comes back in training mode, as open_clip returns it; call ``.eval()`` to encode.
    """
    folder = Path(folder).resolve()
    _require_model_dir(folder)
    model_cfg = json.loads((folder / OPEN_CLIP_CONFIG).read_text())["model_cfg"]
    model, preprocess_train, preprocess_val = _build(folder, device, precision)
    tokenizer = open_clip.get_tokenizer(f"{LOCAL_DIR}{folder}")
    return ModelBundle(
        model, preprocess_train, preprocess_val, tokenizer, f"{LOCAL_DIR}{folder}", model_cfg
    )


def save_model_dir(bundle: ModelBundle, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``bundle`` as a self-contained model folder that :func:`load_model` reloads exactly.

    Works for the tiny model and for real ``xlm-roberta-*`` CLIPs alike (the text tower's config
    and tokenizer are written next to the weights). LoRA adapters must be merged first: the
    weights are the plain open_clip state dict. Atomic; replaces an existing folder.
    """
    text = getattr(bundle.model, "text", None)
    if not isinstance(text, HFTextEncoder):
        raise TypeError(
            f"{bundle.name}: save_model_dir saves CLIPs with a Hugging Face text tower "
            "(open_clip 'xlm-roberta-*' models and the tiny model)"
        )
    final = Path(out_dir).resolve()
    model_cfg = bundle.model_cfg | {"text_cfg": _text_cfg_at(bundle.model_cfg["text_cfg"], final)}
    config = {
        "model_cfg": model_cfg,
        "preprocess_cfg": open_clip.get_model_preprocess_cfg(bundle.model),
    }
    with atomic_dir(final, overwrite=True) as tmp:
        text.config.save_pretrained(tmp)
        bundle.tokenizer.save_pretrained(tmp)
        (tmp / OPEN_CLIP_CONFIG).write_text(json.dumps(config, indent=2))
        _save_weights(bundle.model, tmp)
    return final


def _check_tiny_dir(tiny: TinyModelSection, folder: Path) -> None:
    """Refuse a folder built from other ``model.tiny`` sizes than the params ask for."""
    _require_model_dir(folder)
    stored = json.loads((folder / OPEN_CLIP_CONFIG).read_text())["model_cfg"]
    expected = tiny_model_cfg(tiny, stored["vision_cfg"]["image_size"], folder)
    text = json.loads((folder / HF_CONFIG).read_text())
    hf_expected = tiny_text_config(tiny, text["vocab_size"]).to_dict()
    sizes = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    same_text = all(text[key] == hf_expected[key] for key in sizes)
    same_cfg = all(stored[key] == expected[key] for key in ("embed_dim", "vision_cfg")) and (
        stored["text_cfg"]["context_length"] == tiny.context_length
    )
    if not (same_text and same_cfg):
        raise ValueError(
            f"{folder}: built with other model.tiny sizes than the params give; rebuild it "
            "(bases are cached by a hash of model.tiny: a stale path is the usual cause)"
        )


def check_multilingual(model: torch.nn.Module, name: str) -> None:
    """Refuse a CLIP whose text tower is not a multilingual Hugging Face model.

    Checked on the built model because an open_clip name, a ``local-dir:`` folder and an
    ``hf-hub:`` repository each say what their text tower is only in a config open_clip reads.
    open_clip's own text transformer reads CLIP's English BPE vocabulary, and an English Hugging
    Face tower (``roberta``) is no better for a study of languages.
    """
    text = getattr(model, "text", None)
    kind = text.config.model_type if isinstance(text, HFTextEncoder) else None
    if kind in MULTILINGUAL_TEXT_TOWERS:
        return
    tower = (
        f"a Hugging Face {kind!r} model"
        if kind
        else "open_clip's own transformer over CLIP's English BPE vocabulary"
    )
    raise ValueError(
        f"model.name {name!r}: its text tower is {tower}, not multilingual; the study needs a "
        f"Hugging Face text tower of type {', '.join(MULTILINGUAL_TEXT_TOWERS)}: an open_clip "
        "'xlm-roberta-*' model, or a local-dir:/hf-hub: model whose text_cfg.hf_model_name names "
        "one"
    )


def _located(name: str) -> str:
    """``name`` with a relative ``local-dir:`` path made absolute against the project root."""
    if not name.startswith(LOCAL_DIR):
        return name
    return f"{LOCAL_DIR}{resolve_path(name.removeprefix(LOCAL_DIR))}"


def _pretrained(section: ModelSection, name: str) -> str | None:
    """The ``pretrained`` argument for open_clip: a known tag as given, a local checkpoint
    resolved against the project root, None for a ``local-dir:``/``hf-hub:`` model (its weights
    come with it: a ``model.pretrained`` set for one would be ignored, so it is refused)."""
    tag = section.pretrained
    if name.startswith((LOCAL_DIR, HF_HUB)):
        if tag is not None and "pretrained" in section.model_fields_set:
            raise ValueError(
                f"model.pretrained {tag!r}: model.name {section.name!r} brings its own weights "
                "and open_clip would ignore it; remove model.pretrained (or set it to null)"
            )
        return None
    if tag is None or open_clip.get_pretrained_cfg(name, tag):
        return tag
    checkpoint = resolve_path(tag)
    return str(checkpoint) if checkpoint.is_file() else tag  # open_clip names a bad tag


def weights_revision(section: ModelSection) -> str | None:
    """The content digest (:func:`xlr.io.model_files_digest`) of the local weights an open_clip
    ``model`` section loads: its ``local-dir:`` folder, or its ``model.pretrained`` checkpoint
    file; None for the tiny model, an open_clip tag or an ``hf-hub:`` repository, which their
    names pin. Why: a folder or checkpoint replaced in place keeps its name, and whatever is
    cached on the base (image features, checkpoints of its arms) must not outlive it."""
    if section.kind == "tiny":
        return None
    name = _located(section.name)
    if name.startswith(LOCAL_DIR):
        folder = Path(name.removeprefix(LOCAL_DIR))
        return model_files_digest(folder) if folder.is_dir() else None
    tag = section.pretrained
    if name.startswith(HF_HUB) or tag is None or open_clip.get_pretrained_cfg(name, tag):
        return None
    checkpoint = resolve_path(tag)
    return model_files_digest(checkpoint) if checkpoint.is_file() else None


def _not_loaded(name: str, pretrained: str | None, err: Exception) -> RuntimeError:
    """The error of an open_clip model (or its tokenizer) that did not load, with the fixes."""
    return RuntimeError(
        f"model.name {name!r} with model.pretrained {pretrained!r} did not load: {err}. A "
        "tag must be one of open_clip.list_pretrained_tags_by_model(name) and a local "
        "checkpoint a file (relative paths start at the project root); offline, the weights "
        "and the text tower's config and tokenizer must already be in the Hugging Face cache "
        "(README, Offline nodes); otherwise use model.kind 'tiny'"
    )


def _open_clip_bundle(
    name: str, pretrained: str | None, device: str, precision: str
) -> ModelBundle:
    """A model open_clip builds by name, with its tokenizer and model config."""
    try:
        model, preprocess_train, preprocess_val = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, device=device, precision=precision
        )
        tokenizer = open_clip.get_tokenizer(name)
    except (OSError, RuntimeError, ValueError) as err:
        raise _not_loaded(name, pretrained, err) from err
    model_cfg = open_clip.get_model_config(name)
    return ModelBundle(model, preprocess_train, preprocess_val, tokenizer, name, model_cfg or {})


def _model_source(
    section: ModelSection, tiny_dir: str | os.PathLike[str] | None
) -> tuple[bool, str]:
    """Where :func:`create_model` reads the ``model`` section's CLIP: (True, a model folder
    :func:`load_model` reads) or (False, a name open_clip builds)."""
    if section.kind == "tiny":
        if tiny_dir is None:
            raise ValueError(
                "model.kind 'tiny' needs tiny_dir: a folder from write_tiny_model_dir or a "
                "pretrained base (xlr.models.bases.base_model_dir)"
            )
        return True, str(Path(tiny_dir).resolve())
    name = _located(section.name)
    folder = Path(name.removeprefix(LOCAL_DIR))
    if name.startswith(LOCAL_DIR) and (folder / HF_CONFIG).is_file():  # a folder saved here
        return True, str(folder)
    return False, name


def create_model(
    section: ModelSection,
    *,
    tiny_dir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    precision: str = "fp32",
) -> ModelBundle:
    """The CLIP the ``model`` section names.

    ``kind: tiny`` loads ``tiny_dir`` (a folder from :func:`write_tiny_model_dir`, usually the
    cached pretrained base) after checking it matches ``model.tiny``. ``kind: open_clip`` loads
    ``model.name`` through open_clip: an open_clip name with ``model.pretrained`` (a tag, or a
    checkpoint file, relative to the project root), an ``hf-hub:`` repository, or a
    ``local-dir:`` folder (relative to the project root; one this module saved is read by
    :func:`load_model`). Either way the text tower must be multilingual
    (:func:`check_multilingual`).
    """
    is_folder, where = _model_source(section, tiny_dir)
    if section.kind == "tiny":
        _check_tiny_dir(section.tiny, Path(where))
        return load_model(where, device, precision)
    if is_folder:
        bundle = load_model(where, device, precision)
    else:
        bundle = _open_clip_bundle(where, _pretrained(section, where), device, precision)
    check_multilingual(bundle.model, section.name)
    return bundle


def model_tokenizer(
    section: ModelSection, *, tiny_dir: str | os.PathLike[str] | None = None
) -> Any:
    """The tokenizer of the CLIP :func:`create_model` builds, without building it: what a
    token cache needs, where the real study's model is 1.4 GB of weights to read for nothing.
    The model section is refused as :func:`create_model` refuses it, bar the multilingual check,
    which needs the model."""
    is_folder, where = _model_source(section, tiny_dir)
    if is_folder:
        return open_clip.get_tokenizer(f"{LOCAL_DIR}{where}")
    pretrained = _pretrained(section, where)
    try:
        return open_clip.get_tokenizer(where)
    except (OSError, RuntimeError, ValueError) as err:
        raise _not_loaded(where, pretrained, err) from err
