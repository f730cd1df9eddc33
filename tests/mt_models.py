"""Tiny randomly initialised translation models saved as local folders, built offline: a
sentencepiece model trained on a few captions, the family's real tokenizer over it, and an M2M100
network (NLLB-200 is the same architecture) or a Marian one, a few units wide."""

from __future__ import annotations

import io
import json
from pathlib import Path

import sentencepiece as spm
import torch
from transformers import (
    M2M100Config,
    M2M100ForConditionalGeneration,
    M2M100Tokenizer,
    MarianConfig,
    MarianMTModel,
    MarianTokenizer,
    NllbTokenizer,
)

TEXTS = [
    "a red circle left of a blue star", "two small dogs in the park", "a cat on the table",
    "the old house by the sea", "people walking in the city at night",
]  # fmt: skip


def _sentencepiece(folder: Path) -> Path:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TEXTS * 10), model_writer=model, vocab_size=40,
        hard_vocab_limit=False, character_coverage=1.0, minloglevel=2,
    )  # fmt: skip
    path = folder / "sentencepiece.model"
    path.write_bytes(model.getvalue())
    return path


def _vocab(folder: Path, pieces: Path, specials: list[str]) -> Path:
    processor = spm.SentencePieceProcessor(model_file=str(pieces))
    vocab = {token: i for i, token in enumerate(specials)}
    for i in range(processor.get_piece_size()):
        vocab.setdefault(processor.id_to_piece(i), len(vocab))
    path = folder / "vocab.json"
    path.write_text(json.dumps(vocab))
    return path


def build_marian_model(folder: Path) -> Path:
    """A per-pair Marian folder (``Helsinki-NLP/opus-mt-en-xx``'s shape), seeded weights."""
    folder.mkdir(parents=True, exist_ok=True)
    pieces = _sentencepiece(folder)
    vocab = _vocab(folder, pieces, ["</s>", "<unk>", "<pad>"])
    tokenizer = MarianTokenizer(source_spm=str(pieces), target_spm=str(pieces), vocab=str(vocab))
    config = MarianConfig(
        vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    MarianMTModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_mt_model(folder: Path, family: str) -> Path:
    """A folder ``from_pretrained`` reads: ``family`` ``m2m100`` or ``nllb``, seeded weights."""
    folder.mkdir(parents=True, exist_ok=True)
    pieces = _sentencepiece(folder)
    if family == "m2m100":
        vocab = _vocab(folder, pieces, ["<s>", "<pad>", "</s>", "<unk>"])
        tokenizer = M2M100Tokenizer(str(vocab), str(pieces))
    else:
        tokenizer = NllbTokenizer(vocab_file=str(pieces))
    config = M2M100Config(
        vocab_size=512, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id, bos_token_id=0,
        eos_token_id=2, decoder_start_token_id=2,
    )  # fmt: skip
    torch.manual_seed(0)
    M2M100ForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
