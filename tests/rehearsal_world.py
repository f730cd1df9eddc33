"""What ``params/rehearsal.yaml`` names, built offline under a project root: the real
``xlm-roberta-base-ViT-B-32`` architecture with random weights, LAION-shaped metadata whose URLs
point at a loopback server, and the three benchmarks in their published layouts.

The text tower's config is the published ``xlm-roberta-base`` ``config.json`` (the sizes the
study's numbers depend on), written here because the hub is out of reach. Its tokenizer is a
stand-in: an XLM-R-framed Unigram trained on the metadata's captions (ids far below 250,002);
the real run uses the hub's SentencePiece tokenizer, which only changes which ids a caption
gets, not the architecture, LoRA targets or parameter counts checked here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from test_benchmarks import multi30k_tree, xm3600_tree, xtd10_tree
from transformers import XLMRobertaConfig

from xlr.config import SyntheticSection
from xlr.data.synthetic import generate_corpus, load_pool
from xlr.models.factory import write_random_model_dir
from xlr.models.tokenizer import build_tokenizer

MODEL = "xlm-roberta-base-ViT-B-32"
# paths params/rehearsal.yaml names, relative to the project root
MODEL_DIR = "data/models/xlm-roberta-base-ViT-B-32-random"
METADATA = "data/laion/laion2B-multi/part-00000.parquet"
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
    xtd10_tree(root / BENCHMARKS / "xtd10")
    xm3600_tree(root / BENCHMARKS / "xm3600")
    multi30k_tree(root / BENCHMARKS / "multi30k")
