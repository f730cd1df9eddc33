"""The rehearsal: every notebook at the real study's architecture, on CPU, offline.

``params/rehearsal.yaml`` is the real study's params (``params/laion5b_xlmr_b32.yaml``) shrunk
in data and steps but not in model: open_clip's ``xlm-roberta-base-ViT-B-32`` with random
weights, LAION-shaped metadata downloaded by img2dataset from a loopback server, XTD10,
Crossmodal-3600 and Multi30K in their published layouts (:mod:`rehearsal_world`). ``xlr
reproduce``'s own code path runs notebooks 01-06 into a temporary project root; the checks
are what the tiny model cannot show: the LoRA targets, parameter counts and projection names
at real size, each against a count derived here from the configs, not read back from xlr.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from loopback import serve_folder
from open_clip.hf_model import HFTextEncoder
from rehearsal_world import (
    MODEL_DIR,
    SERVED,
    build_rehearsal_world,
    seed_translations,
    widen,
    write_release_folders,
    xlmr_base_config,
)
from safetensors.torch import load_file

from xlr.arms import ADAPTERS_DIR, LORA_DIR, SUMMARY_FILE, Arm
from xlr.config import LoraSection, Params, SyntheticSection, load_params
from xlr.data.overview import caption_sources
from xlr.data.prepare import finetune_pool
from xlr.models.factory import ModelBundle, create_model
from xlr.paths import report_dir
from xlr.report import NotebookFailed, reproduce, study_notebooks
from xlr.train.pairs import pair_graph

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params" / "rehearsal.yaml"
REAL_PARAMS = ROOT / "params" / "laion5b_xlmr_b32.yaml"
# the LAION-shaped metadata: enough rows that the quotas are met after the filters
CORPUS = SyntheticSection(pretrain_images=200, finetune_images=20, eval_images=10, shard_size=100)

pytestmark = pytest.mark.slow


def rehearsal_params(root: Path) -> Path:
    """``params/rehearsal.yaml``, or a copy under ``root`` changed by the environment: on a GPU
    machine (``benchmarks/gpu_check.sh``) ``XLR_REHEARSAL_DEVICE`` as ``run.device`` and
    ``XLR_REHEARSAL_PRECISION`` as the training and evaluation precision;
    ``XLR_REHEARSAL_WIDE=1`` widens it to the real study's settings (:func:`widen`, with its
    inputs in Re-LAION's release folders), a run too long for the suite (README)."""
    device = os.environ.get("XLR_REHEARSAL_DEVICE")
    precision = os.environ.get("XLR_REHEARSAL_PRECISION")
    wide = os.environ.get("XLR_REHEARSAL_WIDE") == "1"
    if device is None and precision is None and not wide:
        return PARAMS
    raw = yaml.safe_load(PARAMS.read_text(encoding="utf-8"))
    if wide:
        real = yaml.safe_load(REAL_PARAMS.read_text(encoding="utf-8"))
        raw = widen(raw, real, write_release_folders(root))
    if device is not None:
        raw["run"]["device"] = device
    if precision is not None:
        raw["train"]["precision"] = raw["eval"]["precision"] = precision
    copy = root / "params" / PARAMS.name
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return copy


@dataclass(frozen=True)
class Rehearsal:
    """The temporary project root, the params, and how ``reproduce`` ended (None: it finished)."""

    root: Path
    params: Params
    failure: NotebookFailed | None


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rehearsal]:
    root = tmp_path_factory.mktemp("rehearsal_root")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XLR_ROOT", str(root))
        (root / SERVED).mkdir()
        failure = None
        with serve_folder(root / SERVED) as url:
            build_rehearsal_world(root, url, CORPUS)
            params_file = rehearsal_params(root)
            seed_translations(load_params(params_file))
            try:
                reproduce(params_file)
            except NotebookFailed as err:  # the architecture checks below still read 01-03
                failure = err
        yield Rehearsal(root, load_params(params_file), failure)
    # up to 6 GB of weights and a checkpoint (measured: 5.8 GB); the reports stay for a look
    for heavy in (root / "runs", root / MODEL_DIR):
        shutil.rmtree(heavy, ignore_errors=True)


@pytest.fixture(scope="module")
def base(rehearsal: Rehearsal) -> ModelBundle:
    """The study's base model as the notebooks build it, from ``model`` in the params."""
    return create_model(rehearsal.params.model)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def xlmr_params(hidden: int, layers: int, ffn: int, vocab: int, positions: int) -> int:
    """Parameters of an XLM-R encoder without its pooler: open_clip builds the tower with
    ``add_pooling_layer=False`` when it pools itself (mean pooling here)."""
    linear = lambda n_in, n_out: n_in * n_out + n_out  # noqa: E731
    norm = 2 * hidden
    embeddings = (vocab + positions + 1) * hidden + norm  # words, positions, one token type
    layer = 4 * linear(hidden, hidden) + norm + linear(hidden, ffn) + linear(ffn, hidden) + norm
    return embeddings + layers * layer


def vit_params(width: int, layers: int, patch: int, image: int, embed: int) -> int:
    """Parameters of open_clip's ViT: patch conv (no bias), class token, positions, pre/post
    norms, pre-norm blocks with a 4x MLP, and the projection to the joint space (no bias)."""
    tokens = (image // patch) ** 2 + 1
    block = 2 * 2 * width + (3 * width * width + 3 * width) + (width * width + width)
    block += (width * 4 * width + 4 * width) + (4 * width * width + width)
    return (
        3 * patch * patch * width
        + width
        + tokens * width
        + 2 * 2 * width
        + layers * block
        + (width * embed)
    )


def _reported(params: Params, notebook: Path) -> bool:
    out = report_dir(params)
    return all((out / f"{notebook.stem}{s}").is_file() for s in (".ipynb", ".html", ".nocode.html"))


def test_every_notebook_ran_and_wrote_its_report(rehearsal: Rehearsal) -> None:
    """All six, on the LAION path with its validation split (tuning and controls read it)."""
    if rehearsal.failure is not None:
        raise rehearsal.failure
    assert all(_reported(rehearsal.params, nb) for nb in study_notebooks())
    assert (report_dir(rehearsal.params) / "index.html").is_file()


def test_the_pool_is_translated_and_mono_has_round_trips(rehearsal: Rehearsal) -> None:
    """The real study's data path: machine translations pair every two training languages,
    and each language's images have round trips for mono's text-text target."""
    params = rehearsal.params
    pool = finetune_pool(params)
    sources = caption_sources(pool)
    langs = params.data.train_langs
    assert (sources.loc[["de", "fr"], "machine-translated"] > 0).all()
    assert (sources.loc[langs, "round trip"] > 0).all()
    graph = pair_graph(pool.captions, langs, params.train.batch_size)
    assert not graph.dropped and all(graph.paraphrases[lang] for lang in langs)


def test_the_text_tower_is_xlm_roberta_base(base: ModelBundle) -> None:
    text = base.model.text
    assert isinstance(text, HFTextEncoder) and text.config.model_type == "xlm-roberta"
    config = xlmr_base_config()
    assert text.config.vocab_size == 250002
    assert text.transformer.embeddings.word_embeddings.weight.shape == (250002, 768)
    expected = xlmr_params(768, 12, 3072, 250002, 514)
    # xlm-roberta-base as published is 278,043,648 with its pooler (768 * 768 + 768)
    assert expected == 278_043_648 - (768 * 768 + 768)
    assert _count(text.transformer) == expected
    assert text.config.num_hidden_layers == config.num_hidden_layers


def test_the_image_tower_is_vit_b_32(base: ModelBundle) -> None:
    vision = base.model_cfg["vision_cfg"]
    expected = vit_params(vision["width"], vision["layers"], vision["patch_size"],
                          vision["image_size"], base.model_cfg["embed_dim"])  # fmt: skip
    assert expected == 87_849_216
    assert _count(base.model.visual) == expected


def test_the_text_projection_is_a_two_layer_mlp(base: ModelBundle) -> None:
    """open_clip's ``mlp`` projection: 768 -> (768 + 512) / 2 -> 512, GELU between, no bias;
    ``lora.projection`` adapts exactly these two."""
    linears = {
        name: tuple(module.weight.shape)
        for name, module in base.model.named_modules()
        if name.startswith("text.proj") and isinstance(module, torch.nn.Linear)
    }
    assert linears == {"text.proj.0": (640, 768), "text.proj.2": (512, 640)}
    assert all(base.model.get_submodule(name).bias is None for name in linears)


def _summary(params: Params, arm: Arm) -> dict:
    return json.loads((arm.directory(params) / SUMMARY_FILE).read_text())


def _lora_targets(lora: LoraSection) -> set[str]:
    """The layers a LoRA on ``lora.target_modules`` adapts in XLM-R base, from its config."""
    return {
        f"transformer.encoder.layer.{i}.attention.self.{name}"
        for i in range(xlmr_base_config().num_hidden_layers)
        for name in lora.target_modules
    }


def _check_saved_lora(folder: Path, lora: LoraSection) -> int:
    """The layers and rank of the LoRA peft saved in ``folder``; returns its parameter count.

    The layers are read from the tensors' names: from 20 targets on, peft records
    ``target_modules`` as the shortest suffixes that match them (here ``query`` and ``value``),
    not as the full names xlr passes, so the config alone does not say which layers.
    """
    config = json.loads((folder / "adapter_config.json").read_text())
    tensors = load_file(folder / "adapter_model.safetensors")
    layers = {re.sub(r"^base_model\.model\.|\.lora_[AB]\.weight$", "", key) for key in tensors}
    assert layers == _lora_targets(lora) and config["r"] == lora.r
    assert all(t.shape in {(lora.r, 768), (768, lora.r)} for t in tensors.values())
    return sum(t.numel() for t in tensors.values())


def test_the_shared_lora_adapts_query_and_value_of_every_layer(rehearsal: Rehearsal) -> None:
    """24 targets (12 layers x query, value) and r * (768 + 768) parameters each: 294,912,
    plus one for the logit scale, which trains in every arm (``train.logit_scale: train``)."""
    params = rehearsal.params
    lora = params.train.lora
    assert len(_lora_targets(lora)) == 24 and lora.target_modules == ["query", "value"]
    hidden = xlmr_base_config().hidden_size
    lora_params = len(_lora_targets(lora)) * lora.r * (hidden + hidden)
    assert lora_params == 294_912  # r = 8
    arm = Arm("hybrid", alpha=params.train.alphas[0], trained="lora", base_seed=0, seed=0)
    assert _check_saved_lora(arm.directory(params) / LORA_DIR, lora) == lora_params
    assert params.train.logit_scale == "train"
    assert _summary(params, arm)["trainable_params"] == lora_params + 1


def test_each_language_adapter_is_shaped_like_the_shared_lora(rehearsal: Rehearsal) -> None:
    params = rehearsal.params
    lora = params.adapters.lora
    hidden = xlmr_base_config().hidden_size
    folder = Arm("adapters", base_seed=0, seed=0).directory(params) / ADAPTERS_DIR
    for lang in params.data.train_langs:
        saved = _check_saved_lora(folder / lang, lora)
        assert saved == len(_lora_targets(lora)) * lora.r * (hidden + hidden)


def test_full_fine_tuning_trains_the_whole_text_tower(rehearsal: Rehearsal) -> None:
    """XLM-R (embeddings included), the projection and the logit scale, out of a CLIP that is
    the two towers and the scale."""
    params = rehearsal.params
    arm = Arm("hybrid", alpha=params.train.alphas[0], trained="full", base_seed=0, seed=0)
    projection = 768 * 640 + 640 * 512
    expected = xlmr_params(768, 12, 3072, 250002, 514) + projection + 1
    assert _summary(params, arm)["trainable_params"] == expected
    vit = vit_params(768, 12, 32, 224, 512)
    assert _summary(params, arm)["total_params"] == expected + vit  # the whole CLIP: 366,121,473
