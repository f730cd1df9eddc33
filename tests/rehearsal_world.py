"""What ``params/rehearsal.yaml`` names, built offline under a project root: the real
``xlm-roberta-base-ViT-B-32`` architecture with random weights, LAION-shaped metadata whose URLs
point at a loopback server, the three benchmarks in their published layouts, and a tiny random
M2M100 for ``data.laion.translate`` with its translation cache seeded (:func:`seed_translations`).

The text tower's config is the published ``xlm-roberta-base`` ``config.json`` (the sizes the
study's numbers depend on), written here because the hub is out of reach. Its tokenizer is a
stand-in: an XLM-R-framed Unigram trained on the metadata's captions (ids far below 250,002);
the real run uses the hub's SentencePiece tokenizer, which only changes which ids a caption
gets, not the architecture, LoRA targets or parameter counts checked here.
"""

from __future__ import annotations

import shutil
from contextlib import closing
from pathlib import Path

import pandas as pd
from mt_models import build_mt_model
from test_benchmarks import multi30k_tree, xm3600_tree, xtd10_tree
from transformers import XLMRobertaConfig

from xlr.config import Params, SyntheticSection
from xlr.data.laion.inputs import ENG_TEXT, KNOWN_SCHEMAS
from xlr.data.laion.translate import SOURCE_LANG, Seq2SeqTranslator, TranslationCache
from xlr.data.synthetic import generate_corpus, load_pool
from xlr.models.factory import write_random_model_dir
from xlr.models.tokenizer import build_tokenizer
from xlr.paths import resolve_path
from xlr.runtime import resolve_device

MODEL = "xlm-roberta-base-ViT-B-32"
# paths params/rehearsal.yaml names, relative to the project root
MODEL_DIR = "data/models/xlm-roberta-base-ViT-B-32-random"
METADATA = "data/laion/laion2B-multi/part-00000.parquet"
MT_DIR = "data/models/m2m100-tiny"
BENCHMARKS = "data/benchmarks"
SERVED = "www"  # the folder the loopback server serves; URLs start at {base_url}/corpus/images
TOKENIZER_VOCAB = 2000


def xlmr_base_config() -> XLMRobertaConfig:
    """``xlm-roberta-base``'s published config.json (the fields that size or frame the model)."""
    return XLMRobertaConfig(
        vocab_size=250002,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        hidden_act="gelu",
        max_position_embeddings=514,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        bos_token_id=0,
        pad_token_id=1,
        eos_token_id=2,
    )


def write_study_model(captions: list[str], tokenizer_dir: Path, model_dir: Path) -> Path:
    """``xlm-roberta-base-ViT-B-32`` with random weights in ``model_dir``, its stand-in
    tokenizer trained on ``captions`` (also ``benchmarks/bench_train.py --study-model``'s)."""
    tokenizer = build_tokenizer(captions, tokenizer_dir, TOKENIZER_VOCAB)
    return write_random_model_dir(MODEL, xlmr_base_config(), tokenizer, model_dir, seed=0)


def build_rehearsal_world(root: Path, base_url: str, corpus: SyntheticSection) -> None:
    """Write the metadata (images served from ``root / SERVED`` at ``base_url``), the model
    folder and the benchmarks under ``root``."""
    served = generate_corpus(
        corpus, root / SERVED / "corpus", progress=False, base_url=f"{base_url}/corpus/images"
    )
    metadata = root / METADATA
    metadata.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(served / "pretrain" / "metadata.parquet", metadata)
    captions = load_pool(served, "pretrain").captions["caption"].tolist()
    write_study_model(captions, root / "data" / "tokenizer", root / MODEL_DIR)
    build_mt_model(root / MT_DIR, "m2m100")
    xtd10_tree(root / BENCHMARKS / "xtd10")
    xm3600_tree(root / BENCHMARKS / "xm3600")
    multi30k_tree(root / BENCHMARKS / "multi30k")


RELAION_NAMES = KNOWN_SCHEMAS["relaion-research-safe"]  # our column names -> Re-LAION's
WIDE_INPUTS = {  # folders, as the real params name them
    "english": "data/laion/relaion2B-en-research-safe",
    "metadata": "data/laion/relaion2B-multi-research-safe",
    "translations": "data/laion/laion2B-multi-joined-translated-to-en",
}


def write_release_folders(root: Path) -> dict[str, list[str]]:
    """The metadata split as the real study's inputs are (:data:`WIDE_INPUTS`): English rows in
    Re-LAION's English release (no language column), the others in its multilingual release,
    both with Re-LAION's column names, and the translated release (2022's names, ``ENG TEXT``)
    of the non-English rows; returns ``data.laion.inputs`` naming them."""
    metadata = pd.read_parquet(root / METADATA)
    relaion = metadata.drop(columns=[ENG_TEXT]).rename(columns=RELAION_NAMES)
    english = relaion["language"] == SOURCE_LANG
    parts = {
        "english": relaion[english].drop(columns="language"),
        "metadata": relaion[~english],
        "translations": metadata[metadata["LANGUAGE"] != SOURCE_LANG],
    }
    for role, rows in parts.items():
        folder = root / WIDE_INPUTS[role]
        folder.mkdir(parents=True, exist_ok=True)
        rows.to_parquet(folder / "part-00000.parquet", index=False)
    return {role: [folder] for role, folder in WIDE_INPUTS.items()}


def widen(raw: dict, real: dict, inputs: dict[str, list[str]]) -> dict:
    """``params/rehearsal.yaml`` (``raw``) with what the real params (``real``) set that it
    leaves out: every arm and alpha, the tuning grids, the loader workers, the adapters'
    defaults (every fallback, ``adapters_hybrid``), Re-LAION's columns over folder ``inputs``
    and the real filters (image sizes and similarity lowered to the generated images')."""
    wide = {**raw, "train": dict(raw["train"]), "data": dict(raw["data"])}
    for key in ("arms", "alphas", "tune", "loader_workers"):
        wide["train"][key] = real["train"][key]
    wide.pop("adapters", None)
    laion = wide["data"]["laion"] = dict(raw["data"]["laion"])
    laion["columns"], laion["inputs"] = real["data"]["laion"]["columns"], inputs
    low = {"min_similarity": raw["data"]["laion"]["filters"]["min_similarity"],
           "min_width": 16, "min_height": 16}  # fmt: skip
    laion["filters"] = real["data"]["laion"]["filters"] | low
    return wide


def seed_translations(params: Params) -> None:
    """Cache a distinct stand-in translation (``"<English> (de)"``) of every English caption of
    the metadata in each training language, under the identity of ``params``' translator, as if
    the model had made them: a tiny random model translates every caption alike, which would
    join all images into one group that the validation split rightly refuses. The round trips
    are left to the model (alike too: mono's targets only, never grouped or evaluated)."""
    laion, device = params.data.laion, resolve_device(params.run.device)
    assert laion is not None and laion.translate is not None, "the rehearsal translates"
    metadata = pd.read_parquet(resolve_path(METADATA))  # the 2022 names, as written
    english = metadata.loc[metadata["LANGUAGE"] == SOURCE_LANG, "TEXT"].tolist()
    english = sorted({*english, *metadata["ENG TEXT"].dropna()})
    translator = Seq2SeqTranslator(laion.translate, device)
    cache = resolve_path(params.run.cache_dir) / "translations.sqlite"
    with closing(TranslationCache(cache)) as store:
        for lang in params.data.train_langs:
            if lang != SOURCE_LANG:
                pairs = [(text, f"{text} ({lang})") for text in english]
                store.store(translator.identity(lang), lang, pairs)
