"""An XLM-R-style Unigram tokenizer built offline from captions, for the tiny stand-in model.

The real ``xlm-roberta-base`` tokenizer comes from the hub; the tiny model needs one trained on
the generated corpus instead, saved so that ``transformers.AutoTokenizer.from_pretrained(folder)``
and open_clip's ``HFTokenizer`` load it like the real one: special tokens in XLM-R order
(``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, ``<mask>`` last), ``<s> ... </s>`` framing and
SentencePiece's ``▁`` word marker.

Three fixes over a plain ``tokenizers`` Unigram training run (see shared/NOTES.md):

* NFKC normalisation, as XLM-R's SentencePiece model does, kept on save: the folder records the
  generic ``TokenizersBackend`` class, because ``XLMRobertaTokenizer`` rebuilds its backend from
  the vocabulary and drops any normaliser and pre-tokenizer that is not its own;
* Chinese and Japanese characters are isolated before the model sees them (as mBERT does), so the
  trainer cannot memorise whole unspaced clauses as single pieces;
* every word form of the lexicon (``seed_words``) is one piece and every character of the corpus
  is in the vocabulary, so generated captions are never split into letters and ``<unk>`` only
  appears for characters the corpus never used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd
from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram
from tokenizers.trainers import UnigramTrainer
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from xlr.io import atomic_dir

SPECIAL_TOKENS: tuple[str, ...] = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0..3, as in XLM-R
MASK_TOKEN = "<mask>"  # the last id, as in XLM-R
UNK_ID = SPECIAL_TOKENS.index("<unk>")
WORD_MARK = "▁"  # SentencePiece's meta symbol for "a word starts here"
# Scripts written without spaces; U+30FC (the long-vowel mark) is script "Common" in Unicode.
CJK_CHAR = r"[\p{Han}\p{Hiragana}\p{Katakana}\x{30FC}]"
MAX_PIECE_LENGTH = 16


def _pipeline(model: Unigram) -> Tokenizer:
    """A backend with XLM-R's framing around ``model``: NFKC, ``▁`` words, isolated CJK."""
    backend = Tokenizer(model)
    backend.normalizer = normalizers.NFKC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement=WORD_MARK, prepend_scheme="always"),
            pre_tokenizers.Split(Regex(f"{WORD_MARK}?{CJK_CHAR}"), behavior="isolated"),
        ]
    )
    backend.decoder = decoders.Metaspace(replacement=WORD_MARK, prepend_scheme="always")
    bos, eos = SPECIAL_TOKENS[0], SPECIAL_TOKENS[2]
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, 0), (eos, 2)],
    )
    return backend


def _pre_tokens(backend: Tokenizer, text: str) -> list[str]:
    """The units the Unigram model segments: normalised words with ``▁``, single CJK chars."""
    normalised = backend.normalizer.normalize_str(text)
    return [piece for piece, _ in backend.pre_tokenizer.pre_tokenize_str(normalised)]


def _train_pieces(backend: Tokenizer, texts: Sequence[str], vocab_size: int) -> dict[str, float]:
    """Multi-character Unigram pieces and log-probability scores that EM finds on ``texts``.

    Single characters are left out: the trainer gives the characters EM pruned scores in
    hash-map order, which changes from run to run, and the ids with them; :func:`_seeded_vocab`
    adds every character back in a fixed order.
    """
    trainer = UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        unk_token=SPECIAL_TOKENS[UNK_ID],
        max_piece_length=MAX_PIECE_LENGTH,
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer, length=len(texts))
    vocab = json.loads(backend.to_str())["model"]["vocab"]
    # EM also sums floats in hash-map order: rounding makes builds byte-identical.
    return {
        piece: round(score, 8)
        for piece, score in vocab
        if len(piece) > 1 and piece not in SPECIAL_TOKENS
    }


def _seeded_vocab(
    trained: dict[str, float], words: set[str], chars: set[str], vocab_size: int
) -> list[tuple[str, float]]:
    """Trained pieces plus every seed word and character, cut to ``vocab_size`` where possible.

    Seed words get the best trained score: scores are negative log-probabilities, so one piece
    at the maximum beats any split into two or more pieces and a lexicon word stays one token.
    Characters score below every piece, a last resort that keeps text off ``<unk>`` while
    preferring the fewest pieces. Seeds and characters are never cut; the lowest-scoring trained
    pieces are, so the vocabulary exceeds ``vocab_size`` only when seeds and characters do.
    """
    best = max(trained.values(), default=-1.0)
    worst = min(trained.values(), default=best)
    required = {word: max(trained.get(word, best), best) for word in words}
    required |= {char: worst - 1.0 for char in chars - required.keys()}
    optional = sorted(
        ((piece, score) for piece, score in trained.items() if piece not in required),
        key=lambda item: (-item[1], item[0]),
    )
    room = max(vocab_size - len(SPECIAL_TOKENS) - 1 - len(required), 0)
    pieces = sorted([*required.items(), *optional[:room]], key=lambda item: (-item[1], item[0]))
    return [*((token, 0.0) for token in SPECIAL_TOKENS), *pieces, (MASK_TOKEN, 0.0)]


def build_tokenizer(
    texts: Iterable[str],
    out_dir: str | os.PathLike[str],
    vocab_size: int,
    seed_words: Iterable[str] = (),
) -> Path:
    """Train an XLM-R-style Unigram tokenizer on ``texts`` and save it to ``out_dir``.

    ``seed_words`` are word forms that must each be a single token (the generator's lexicon);
    they are also added to the training text. ``vocab_size`` is the target size including the
    five special tokens. The folder is written atomically and replaces an existing one; load it
    with :func:`load_tokenizer`, ``AutoTokenizer.from_pretrained`` or open_clip's ``HFTokenizer``.
    """
    texts = [text for text in texts if text.strip()]
    words = [word for word in dict.fromkeys(seed_words) if word.strip()]
    if not texts:
        raise ValueError(f"{out_dir}: no non-empty texts to train a tokenizer on")
    corpus = texts + words
    splitter = _pipeline(Unigram())
    seeds = {piece for word in words for piece in _pre_tokens(splitter, word)}
    normalised = splitter.normalizer.normalize_str("".join(corpus))
    chars = {char for char in normalised if not char.isspace()} | {WORD_MARK}
    # The trainer refuses a target below its alphabet; the cut in _seeded_vocab honours it.
    target = max(vocab_size, len(chars) + len(SPECIAL_TOKENS) + 1)
    trained = _train_pieces(_pipeline(Unigram()), corpus, target)
    vocab = _seeded_vocab(trained, seeds, chars, vocab_size)
    backend = _pipeline(Unigram(vocab, unk_id=UNK_ID, byte_fallback=False))
    wrapper = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
        cls_token="<s>", sep_token="</s>", mask_token=MASK_TOKEN,
    )  # fmt: skip
    with atomic_dir(out_dir, overwrite=True) as tmp:
        wrapper.save_pretrained(tmp)
    return Path(out_dir)


def load_tokenizer(folder: str | os.PathLike[str]) -> PreTrainedTokenizerBase:
    """Load a tokenizer folder offline, with an error that says how to make one if it is absent."""
    folder = Path(folder)
    if not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(
            f"{folder}: no tokenizer.json; build one with xlr.models.tokenizer.build_tokenizer "
            "(or xlr.train.pretrain.ensure_tokenizer for a params file)"
        )
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def tokenization_stats(
    tokenizer: PreTrainedTokenizerBase, texts_by_lang: Mapping[str, Sequence[str]]
) -> pd.DataFrame:
    """Per-language tokens per text (mean and max, no ``<s>``/``</s>``) and ``<unk>`` share.

    Why: a tokenizer that splits a language into letters or maps it to ``<unk>`` silently caps
    what any model can learn in that language; check this before blaming the training arm. The
    max tells whether captions fit the text context length.
    """
    rows = []
    for lang, texts in texts_by_lang.items():
        ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        lengths = [len(row) for row in ids]
        unknown = sum(row.count(tokenizer.unk_token_id) for row in ids)
        rows.append(
            {
                "lang": lang,
                "texts": len(ids),
                "tokens_per_text": sum(lengths) / max(len(ids), 1),
                "max_tokens": max(lengths, default=0),
                "unk_rate": unknown / max(sum(lengths), 1),
            }
        )
    return pd.DataFrame(rows)
