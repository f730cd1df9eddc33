"""Captions: each language's word order and agreement over the words of its lexicon file.

Variant ``k`` of a caption follows :data:`TEMPLATES` ``[k]`` in every language, so caption ``k``
of an image is a translation of caption ``k`` in any other language. Every variant states every
attribute of the scene, so a caption's text names its composition: the held-out split of
:mod:`~xlr.data.synthetic.scenes` holds out text as well as pictures. The grammars themselves
live in :mod:`~xlr.data.synthetic.europe` and :mod:`~xlr.data.synthetic.asia`; what they share
(templates, sections, clause shapes) in :mod:`~xlr.data.synthetic.phrases`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

from xlr.data.synthetic import asia, europe
from xlr.data.synthetic.lexicon import LEXICON_DIR, Lexicon, read_lexicon
from xlr.data.synthetic.phrases import TEMPLATES, Grammar, Pieces, Template
from xlr.data.synthetic.scenes import Scene, covering_scenes

__all__ = [
    "GRAMMARS", "TEMPLATES", "UNSPACED", "Grammar", "Pieces", "Template", "caption_pieces",
    "describe", "join_pieces", "lexicon_words", "load_lexicon",
]  # fmt: skip

GRAMMARS: dict[str, Grammar] = {**europe.GRAMMARS, **asia.GRAMMARS}
UNSPACED: frozenset[str] = frozenset({"zh", "ja"})  # scripts written without word spaces


def _grammar(lang: str) -> Grammar:
    if lang not in GRAMMARS:
        raise ValueError(
            f"no caption lexicon for language {lang!r}; the generated corpus speaks "
            f"{', '.join(GRAMMARS)} (set data.synthetic.langs to a subset of these; a new "
            "language needs its grammar in code as well as its lexicon file)"
        )
    return GRAMMARS[lang]


@cache
def load_lexicon(lang: str, folder: Path = LEXICON_DIR) -> Lexicon:
    """``lang``'s lexicon, ``folder/{lang}.json``, checked against its grammar; read once."""
    return read_lexicon(Path(folder) / f"{lang}.json", lang, _grammar(lang).sections)


def caption_pieces(scene: Scene, lang: str, variant: int) -> Pieces:
    """The words (morphemes for zh/ja) of caption ``variant`` of ``scene`` in ``lang``."""
    if not 0 <= variant < len(TEMPLATES):
        raise ValueError(f"caption variant {variant} out of range 0..{len(TEMPLATES) - 1}")
    return _grammar(lang).build(load_lexicon(lang), scene, TEMPLATES[variant])


def join_pieces(lang: str, pieces: Sequence[str]) -> str:
    """Write pieces as text: no spaces in zh/ja, commas attached to the word before."""
    if lang in UNSPACED:
        return "".join(pieces)
    return " ".join(pieces).replace(" ,", ",")


def describe(scene: Scene, lang: str, variant: int = 0) -> str:
    """Caption ``variant`` of ``scene`` in ``lang``; variant k is parallel across languages."""
    return join_pieces(lang, caption_pieces(scene, lang, variant))


@cache
def _lexicon_words(lang: str) -> tuple[str, ...]:
    words: set[str] = set()
    for scene in covering_scenes():
        for variant in range(len(TEMPLATES)):
            for piece in caption_pieces(scene, lang, variant):
                words.update(piece.split())
    words.discard(",")
    return tuple(sorted(words))


def lexicon_words(lang: str) -> list[str]:
    """Every word form the lexicon can emit in ``lang`` (morphemes in zh/ja), sorted.

    Why: the tiny model's tokenizer seeds its vocabulary with these, so no lexicon word is
    split into characters or mapped to the unknown token.
    """
    return list(_lexicon_words(lang))
