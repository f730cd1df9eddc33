"""The embedded default corpus: rendered compositional scenes, parallel captions in 14 languages.

Why generate a corpus: the study needs image-text pairs in many languages and scripts, parallel
captions to fine-tune and evaluate cross-lingual retrieval, a LAION-like long-tailed language
mix, and it must run offline in minutes. Scenes are compositional (shape, colour, size,
position, count), so a caption is a real description of its image; captions come from
hand-written lexicons of real words (package data, ``xlr/data/lexicons/{lang}.json``) put in
each language's word order and agreement (code), so related languages share subwords (es/pt/it
cognates, de/nl) and zero-shot transfer is a real effect.

The modules, in the order a corpus is made: :mod:`~xlr.data.synthetic.scenes` (what an image
shows), :mod:`~xlr.data.synthetic.lexicon` (the lexicon files, loaded and validated),
:mod:`~xlr.data.synthetic.grammar` (captions in each language), :mod:`~xlr.data.synthetic.render`
(scenes to pixels), :mod:`~xlr.data.synthetic.noise` (web-like caption noise) and
:mod:`~xlr.data.synthetic.corpus` (pools written to disk in LAION's formats, and read back).
"""

from xlr.data.synthetic.corpus import (
    DEFAULT_BASE_URL,
    FORMAT_VERSION,
    POOLS,
    CaptionRow,
    CorpusError,
    generate_corpus,
    load_pool,
    pool_captions,
    pool_size,
    read_manifest,
)
from xlr.data.synthetic.grammar import (
    GRAMMARS,
    TEMPLATES,
    UNSPACED,
    Grammar,
    Pieces,
    Template,
    caption_pieces,
    describe,
    join_pieces,
    lexicon_words,
    load_lexicon,
)
from xlr.data.synthetic.lexicon import LEXICON_DIR, Lexicon, LexiconError, Section, read_lexicon
from xlr.data.synthetic.noise import (
    BOILERPLATE,
    NOISE_KINDS,
    Caption,
    noise_probabilities,
    noisy_caption,
    pair_scores,
)
from xlr.data.synthetic.render import JPEG_QUALITY, PALETTE, encode_jpeg, render_scene
from xlr.data.synthetic.scenes import (
    COLOURS,
    COUNTS,
    POSITIONS,
    SHAPES,
    SIZES,
    Scene,
    all_scenes,
    sample_scenes,
)

__all__ = [
    "BOILERPLATE", "COLOURS", "COUNTS", "DEFAULT_BASE_URL", "FORMAT_VERSION", "GRAMMARS",
    "JPEG_QUALITY", "LEXICON_DIR", "NOISE_KINDS", "PALETTE", "POOLS", "POSITIONS", "SHAPES",
    "SIZES", "TEMPLATES", "UNSPACED", "Caption", "CaptionRow", "CorpusError", "Grammar",
    "Lexicon", "LexiconError", "Pieces", "Scene", "Section", "Template", "all_scenes",
    "caption_pieces", "describe", "encode_jpeg", "generate_corpus", "join_pieces",
    "lexicon_words", "load_lexicon", "load_pool", "noise_probabilities", "noisy_caption",
    "pair_scores", "pool_captions", "pool_size", "read_lexicon", "read_manifest",
    "render_scene", "sample_scenes",
]  # fmt: skip
