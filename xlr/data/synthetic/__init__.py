"""The embedded default corpus: rendered compositional scenes, parallel captions in 14 languages.

Why generate a corpus: the study needs image-text pairs in many languages and scripts, parallel
captions to fine-tune and evaluate cross-lingual retrieval, a LAION-like long-tailed language
mix, and it must run offline in minutes. A scene is a group of one to three objects beside a
reference object ("two small red circles to the left of a large blue star": shape, colour and
size of each, the count, the relation), a world of 91,200 compositions, so a caption is a real
description of its image and evaluation can hold out whole compositions: the val and eval pools
show scenes, and say captions, that no training image or text does. Captions come from
hand-written lexicons of real words (package data, ``xlr/data/lexicons/{lang}.json``) put in
each language's word order, agreement and case (code), so related languages share subwords
(es/pt/it cognates, de/nl) and zero-shot transfer is a real effect.

The modules, in the order a corpus is made: :mod:`~xlr.data.synthetic.scenes` (what an image
shows, the world and its held-out split), :mod:`~xlr.data.synthetic.lexicon` (the lexicon files,
loaded and validated), :mod:`~xlr.data.synthetic.grammar` (captions in each language, from
:mod:`~xlr.data.synthetic.phrases`, :mod:`~xlr.data.synthetic.europe` and
:mod:`~xlr.data.synthetic.asia`), :mod:`~xlr.data.synthetic.render` (scenes to pixels),
:mod:`~xlr.data.synthetic.noise` (web-like caption noise), :mod:`~xlr.data.synthetic.pools`
(what each pool holds), :mod:`~xlr.data.synthetic.corpus` (pools written to disk in LAION's
formats, and read back) and :mod:`~xlr.data.synthetic.audit` (what a held-out pool shares with
training: nothing, on a corpus of this world).
"""

from xlr.data.synthetic.audit import check_held_out, corpus_overlaps, overlaps
from xlr.data.synthetic.corpus import (
    DEFAULT_BASE_URL,
    FORMAT_VERSION,
    CorpusError,
    corpus_key,
    generate_corpus,
    load_pool,
    read_manifest,
    scene_of,
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
from xlr.data.synthetic.lexicon import (
    LEXICON_DIR,
    Lexicon,
    LexiconError,
    Section,
    lexicon_digest,
    read_lexicon,
)
from xlr.data.synthetic.noise import (
    BOILERPLATE,
    NOISE_KINDS,
    Caption,
    noise_probabilities,
    noisy_caption,
    pair_scores,
)
from xlr.data.synthetic.pools import (
    HELD_OUT_POOLS,
    POOLS,
    CaptionRow,
    pool_captions,
    pool_rng,
    pool_scenes,
    pool_size,
    pretrain_mix,
    world_split,
)
from xlr.data.synthetic.render import JPEG_QUALITY, PALETTE, encode_jpeg, render_scene
from xlr.data.synthetic.scenes import (
    COLOURS,
    COUNTS,
    POSITIONS,
    RELATIONS,
    SHAPES,
    SIZES,
    Scene,
    Thing,
    WorldSplit,
    all_scenes,
    all_things,
    covering_scenes,
    is_canonical,
    sample_scenes,
    split_world,
)

__all__ = [
    "BOILERPLATE", "COLOURS", "COUNTS", "DEFAULT_BASE_URL", "FORMAT_VERSION", "GRAMMARS",
    "HELD_OUT_POOLS", "JPEG_QUALITY", "LEXICON_DIR", "NOISE_KINDS", "PALETTE", "POOLS",
    "POSITIONS", "RELATIONS", "SHAPES", "SIZES", "TEMPLATES", "UNSPACED", "Caption",
    "CaptionRow", "CorpusError", "Grammar", "Lexicon", "LexiconError", "Pieces", "Scene",
    "Section", "Template", "Thing", "WorldSplit", "all_scenes", "all_things", "caption_pieces",
    "check_held_out", "corpus_key", "corpus_overlaps", "covering_scenes", "describe",
    "encode_jpeg", "generate_corpus", "is_canonical", "join_pieces", "lexicon_digest",
    "lexicon_words", "load_lexicon", "load_pool",
    "noise_probabilities", "noisy_caption", "overlaps", "pair_scores", "pool_captions",
    "pool_rng", "pool_scenes", "pool_size", "pretrain_mix", "read_lexicon", "read_manifest",
    "render_scene", "sample_scenes", "scene_of", "split_world", "world_split",
]  # fmt: skip
