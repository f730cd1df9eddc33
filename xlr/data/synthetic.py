"""The embedded default corpus: rendered compositional scenes, parallel captions in 14 languages.

Why generate a corpus: the study needs image-text pairs in many languages and scripts, parallel
captions to fine-tune and evaluate cross-lingual retrieval, a LAION-like long-tailed language
mix, and it must run offline in minutes. Scenes are compositional (shape, colour, size,
position, count), so a caption is a real description of its image; captions come from a
hand-written lexicon of real words with each language's word order and agreement, so related
languages share subwords (es/pt/it cognates, de/nl) and zero-shot transfer is a real effect.

Layout written by :func:`generate_corpus` (LAION's formats, so the real-data path reads it too)::

    manifest.json                     config, counts per pool and language, sha256 of every file
    images/{pool}/{image_id:08d}.jpg  the images, for a loopback HTTP server and img2dataset
    {pool}/metadata.parquet           LAION columns (URL, TEXT, LANGUAGE, similarity, punsafe,
                                      pwatermark, WIDTH, HEIGHT, ENG TEXT) + image_id,
                                      caption_idx, noise: one row per caption
    {pool}/scenes.parquet             image_id, shape, colour, size, position, count
    {pool}/shards/                    webdataset shards exactly as img2dataset writes them
    eval/captions.parquet             image_id, lang, caption_idx, caption (the clean eval set)

Pools: ``pretrain`` (LAION-like: one noisy caption per image in one language drawn from the
LAION-5B mix), ``finetune`` (``captions_per_image`` parallel noisy captions per image in every
language) and ``eval`` (the same, clean). ``image_id`` counts from 0 within each pool and is the
image's position in :func:`load_pool`'s set. The pools never share an image: every image is
rendered with its own background, jitter and pixel noise, so no two images are identical (the
tests check the JPEG hashes). Attribute tuples do repeat, within and across pools: there are
only 1,440 of them, and a held-out image with a seen attribute tuple is exactly the
compositional generalisation a retrieval test on this corpus asks for.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import shutil
import tempfile
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from xlr.config import NoiseSection, SyntheticSection
from xlr.data.imagetext import ArrayImages, ImageTextSet
from xlr.data.shards import Sample, read_shards, write_shards
from xlr.langs import laion_mix

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "heart")
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "orange", "purple", "white", "black")
SIZES: tuple[str, ...] = ("small", "large")
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "centre")
COUNTS: tuple[int, ...] = (1, 2, 3)
POOLS: tuple[str, ...] = ("pretrain", "finetune", "eval")
NOISE_KINDS: tuple[str, ...] = ("clean", "mismatch", "truncate", "boilerplate")
DEFAULT_BASE_URL = "http://127.0.0.1:8000/images"
JPEG_QUALITY = 90
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Scene:
    """What an image shows: ``count`` objects of one shape, colour and size at one position."""

    shape: str
    colour: str
    size: str
    position: str
    count: int


@dataclass(frozen=True)
class Template:
    """How caption variant ``k`` words a scene: which attributes it states and in what order."""

    size: bool  # state the size adjective
    position: bool  # state the position phrase
    position_first: bool  # front the position phrase ("on the left, two red circles")


# Variant k uses TEMPLATES[k] in every language, so caption k of an image is a translation.
TEMPLATES: tuple[Template, ...] = (
    Template(size=True, position=True, position_first=False),
    Template(size=False, position=True, position_first=True),
    Template(size=True, position=False, position_first=False),
    Template(size=False, position=True, position_first=False),
    Template(size=True, position=True, position_first=True),
)

Pieces = list[str]


def _place(noun_phrase: Pieces, position: Pieces, tpl: Template, comma: bool = True) -> Pieces:
    """Put the position phrase after the noun phrase, or front it (with a comma where written)."""
    if not tpl.position:
        return noun_phrase
    if tpl.position_first:
        return [*position, *([","] if comma else []), *noun_phrase]
    return [*noun_phrase, *position]


# --- English -----------------------------------------------------------------------------------
_EN_NOUNS = {
    "circle": ("circle", "circles"), "square": ("square", "squares"),
    "triangle": ("triangle", "triangles"), "star": ("star", "stars"),
    "cross": ("cross", "crosses"), "heart": ("heart", "hearts"),
}  # fmt: skip
_EN_POS = {
    "left": "on the left", "right": "on the right", "top": "at the top",
    "bottom": "at the bottom", "centre": "in the middle",
}  # fmt: skip


def _english(scene: Scene, tpl: Template) -> Pieces:
    """English: numeral or a/an, size, colour, noun (plural -s/-es), then a prepositional phrase."""
    adjectives = ([scene.size] if tpl.size else []) + [scene.colour]
    if scene.count == 1:
        numeral = "an" if adjectives[0][0] in "aeiou" else "a"
    else:
        numeral = ("two", "three")[scene.count - 2]
    noun = _EN_NOUNS[scene.shape][scene.count > 1]
    return _place([numeral, *adjectives, noun], [_EN_POS[scene.position]], tpl)


# --- German ------------------------------------------------------------------------------------
_DE_NOUNS = {  # gender, singular, plural
    "circle": ("m", "Kreis", "Kreise"), "square": ("n", "Quadrat", "Quadrate"),
    "triangle": ("n", "Dreieck", "Dreiecke"), "star": ("m", "Stern", "Sterne"),
    "cross": ("n", "Kreuz", "Kreuze"), "heart": ("n", "Herz", "Herzen"),
}  # fmt: skip
_DE_STEMS = {
    "red": "rot", "green": "grün", "blue": "blau", "yellow": "gelb", "orange": "orangefarben",
    "purple": "violett", "white": "weiß", "black": "schwarz", "small": "klein", "large": "groß",
}  # fmt: skip
_DE_POS = {
    "left": "links", "right": "rechts", "top": "oben", "bottom": "unten",
    "centre": "in der Mitte",
}  # fmt: skip


def _german(scene: Scene, tpl: Template) -> Pieces:
    """German: mixed declension after ``ein`` (-er/-es by gender), strong plural -e."""
    gender, singular, plural = _DE_NOUNS[scene.shape]
    if scene.count == 1:
        numeral, ending, noun = "ein", {"m": "er", "n": "es"}[gender], singular
    else:
        numeral, ending, noun = ("zwei", "drei")[scene.count - 2], "e", plural
    adjectives = ([scene.size] if tpl.size else []) + [scene.colour]
    words = [numeral, *(_DE_STEMS[a] + ending for a in adjectives), noun]
    return _place(words, [_DE_POS[scene.position]], tpl)


# --- Dutch -------------------------------------------------------------------------------------
_NL_NOUNS = {  # neuter (het-word), singular, plural
    "circle": (False, "cirkel", "cirkels"), "square": (True, "vierkant", "vierkanten"),
    "triangle": (False, "driehoek", "driehoeken"), "star": (False, "ster", "sterren"),
    "cross": (True, "kruis", "kruisen"), "heart": (True, "hart", "harten"),
}  # fmt: skip
_NL_ADJ = {  # bare, inflected (-e)
    "red": ("rood", "rode"), "green": ("groen", "groene"), "blue": ("blauw", "blauwe"),
    "yellow": ("geel", "gele"), "orange": ("oranje", "oranje"), "purple": ("paars", "paarse"),
    "white": ("wit", "witte"), "black": ("zwart", "zwarte"), "small": ("klein", "kleine"),
    "large": ("groot", "grote"),
}  # fmt: skip
_NL_POS = {
    "left": "links", "right": "rechts", "top": "bovenaan", "bottom": "onderaan",
    "centre": "in het midden",
}  # fmt: skip


def _dutch(scene: Scene, tpl: Template) -> Pieces:
    """Dutch: adjectives take -e except after ``een`` with a het-word; plural -s/-en."""
    neuter, singular, plural = _NL_NOUNS[scene.shape]
    bare = scene.count == 1 and neuter
    numeral = ("een", "twee", "drie")[scene.count - 1]
    noun = singular if scene.count == 1 else plural
    adjectives = ([scene.size] if tpl.size else []) + [scene.colour]
    words = [numeral, *(_NL_ADJ[a][0 if bare else 1] for a in adjectives), noun]
    return _place(words, [_NL_POS[scene.position]], tpl)


# --- Romance: French, Spanish, Italian, Portuguese ---------------------------------------------
@dataclass(frozen=True)
class _Romance:
    """One Romance language: gendered nouns, 4-form adjectives (m sg, f sg, m pl, f pl)."""

    nouns: dict[str, tuple[str, str, str]]  # shape -> gender, singular, plural
    adjectives: dict[str, tuple[str, str, str, str]]
    numerals: dict[int, tuple[str, str]]  # count -> masculine, feminine
    positions: dict[str, str]
    size_before_noun: bool  # French petit/grand precede the noun; es/it/pt put all after


def _romance(lang: _Romance, scene: Scene, tpl: Template) -> Pieces:
    """Numeral agreeing in gender, noun, colour (and size) after it, agreeing in gender/number."""
    gender, singular, plural = lang.nouns[scene.shape]
    feminine = gender == "f"
    form = int(feminine) + 2 * int(scene.count > 1)
    noun = singular if scene.count == 1 else plural
    colour = lang.adjectives[scene.colour][form]
    size = [lang.adjectives[scene.size][form]] if tpl.size else []
    numeral = lang.numerals[scene.count][int(feminine)]
    if lang.size_before_noun:
        words = [numeral, *size, noun, colour]
    else:
        words = [numeral, noun, colour, *size]
    return _place(words, [lang.positions[scene.position]], tpl)


_FR = _Romance(
    nouns={
        "circle": ("m", "cercle", "cercles"), "square": ("m", "carré", "carrés"),
        "triangle": ("m", "triangle", "triangles"), "star": ("f", "étoile", "étoiles"),
        "cross": ("f", "croix", "croix"), "heart": ("m", "cœur", "cœurs"),
    },
    adjectives={
        "red": ("rouge", "rouge", "rouges", "rouges"),
        "green": ("vert", "verte", "verts", "vertes"),
        "blue": ("bleu", "bleue", "bleus", "bleues"),
        "yellow": ("jaune", "jaune", "jaunes", "jaunes"),
        "orange": ("orange", "orange", "orange", "orange"),
        "purple": ("violet", "violette", "violets", "violettes"),
        "white": ("blanc", "blanche", "blancs", "blanches"),
        "black": ("noir", "noire", "noirs", "noires"),
        "small": ("petit", "petite", "petits", "petites"),
        "large": ("grand", "grande", "grands", "grandes"),
    },
    numerals={1: ("un", "une"), 2: ("deux", "deux"), 3: ("trois", "trois")},
    positions={
        "left": "à gauche", "right": "à droite", "top": "en haut", "bottom": "en bas",
        "centre": "au centre",
    },
    size_before_noun=True,
)  # fmt: skip
_ES = _Romance(
    nouns={
        "circle": ("m", "círculo", "círculos"), "square": ("m", "cuadrado", "cuadrados"),
        "triangle": ("m", "triángulo", "triángulos"), "star": ("f", "estrella", "estrellas"),
        "cross": ("f", "cruz", "cruces"), "heart": ("m", "corazón", "corazones"),
    },
    adjectives={
        "red": ("rojo", "roja", "rojos", "rojas"), "green": ("verde", "verde", "verdes", "verdes"),
        "blue": ("azul", "azul", "azules", "azules"),
        "yellow": ("amarillo", "amarilla", "amarillos", "amarillas"),
        "orange": ("naranja", "naranja", "naranja", "naranja"),
        "purple": ("morado", "morada", "morados", "moradas"),
        "white": ("blanco", "blanca", "blancos", "blancas"),
        "black": ("negro", "negra", "negros", "negras"),
        "small": ("pequeño", "pequeña", "pequeños", "pequeñas"),
        "large": ("grande", "grande", "grandes", "grandes"),
    },
    numerals={1: ("un", "una"), 2: ("dos", "dos"), 3: ("tres", "tres")},
    positions={
        "left": "a la izquierda", "right": "a la derecha", "top": "arriba", "bottom": "abajo",
        "centre": "en el centro",
    },
    size_before_noun=False,
)  # fmt: skip
_IT = _Romance(
    nouns={
        "circle": ("m", "cerchio", "cerchi"), "square": ("m", "quadrato", "quadrati"),
        "triangle": ("m", "triangolo", "triangoli"), "star": ("f", "stella", "stelle"),
        "cross": ("f", "croce", "croci"), "heart": ("m", "cuore", "cuori"),
    },
    adjectives={
        "red": ("rosso", "rossa", "rossi", "rosse"), "green": ("verde", "verde", "verdi", "verdi"),
        "blue": ("blu", "blu", "blu", "blu"), "yellow": ("giallo", "gialla", "gialli", "gialle"),
        "orange": ("arancione", "arancione", "arancioni", "arancioni"),
        "purple": ("viola", "viola", "viola", "viola"),
        "white": ("bianco", "bianca", "bianchi", "bianche"),
        "black": ("nero", "nera", "neri", "nere"),
        "small": ("piccolo", "piccola", "piccoli", "piccole"),
        "large": ("grande", "grande", "grandi", "grandi"),
    },
    numerals={1: ("un", "una"), 2: ("due", "due"), 3: ("tre", "tre")},
    positions={
        "left": "a sinistra", "right": "a destra", "top": "in alto", "bottom": "in basso",
        "centre": "al centro",
    },
    size_before_noun=False,
)  # fmt: skip
_PT = _Romance(
    nouns={
        "circle": ("m", "círculo", "círculos"), "square": ("m", "quadrado", "quadrados"),
        "triangle": ("m", "triângulo", "triângulos"), "star": ("f", "estrela", "estrelas"),
        "cross": ("f", "cruz", "cruzes"), "heart": ("m", "coração", "corações"),
    },
    adjectives={
        "red": ("vermelho", "vermelha", "vermelhos", "vermelhas"),
        "green": ("verde", "verde", "verdes", "verdes"), "blue": ("azul", "azul", "azuis", "azuis"),
        "yellow": ("amarelo", "amarela", "amarelos", "amarelas"),
        "orange": ("laranja", "laranja", "laranja", "laranja"),
        "purple": ("roxo", "roxa", "roxos", "roxas"),
        "white": ("branco", "branca", "brancos", "brancas"),
        "black": ("preto", "preta", "pretos", "pretas"),
        "small": ("pequeno", "pequena", "pequenos", "pequenas"),
        "large": ("grande", "grande", "grandes", "grandes"),
    },
    numerals={1: ("um", "uma"), 2: ("dois", "duas"), 3: ("três", "três")},
    positions={
        "left": "à esquerda", "right": "à direita", "top": "em cima", "bottom": "em baixo",
        "centre": "no centro",
    },
    size_before_noun=False,
)  # fmt: skip


# --- Polish ------------------------------------------------------------------------------------
_PL_NOUNS = {  # gender, singular, plural
    "circle": ("n", "koło", "koła"), "square": ("m", "kwadrat", "kwadraty"),
    "triangle": ("m", "trójkąt", "trójkąty"), "star": ("f", "gwiazda", "gwiazdy"),
    "cross": ("m", "krzyż", "krzyże"), "heart": ("n", "serce", "serca"),
}  # fmt: skip
_PL_ADJ = {  # masculine, feminine, neuter, plural (non-masculine-personal)
    "red": ("czerwony", "czerwona", "czerwone", "czerwone"),
    "green": ("zielony", "zielona", "zielone", "zielone"),
    "blue": ("niebieski", "niebieska", "niebieskie", "niebieskie"),
    "yellow": ("żółty", "żółta", "żółte", "żółte"),
    "orange": ("pomarańczowy", "pomarańczowa", "pomarańczowe", "pomarańczowe"),
    "purple": ("fioletowy", "fioletowa", "fioletowe", "fioletowe"),
    "white": ("biały", "biała", "białe", "białe"),
    "black": ("czarny", "czarna", "czarne", "czarne"),
    "small": ("mały", "mała", "małe", "małe"), "large": ("duży", "duża", "duże", "duże"),
}  # fmt: skip
_PL_POS = {
    "left": "po lewej", "right": "po prawej", "top": "na górze", "bottom": "na dole",
    "centre": "na środku",
}  # fmt: skip


def _polish(scene: Scene, tpl: Template) -> Pieces:
    """Polish: no article; dwa/dwie by gender; 2-3 take the nominative plural."""
    gender, singular, plural = _PL_NOUNS[scene.shape]
    form = "mfn".index(gender) if scene.count == 1 else 3
    numeral = {1: [], 2: ["dwie" if gender == "f" else "dwa"], 3: ["trzy"]}[scene.count]
    adjectives = ([scene.size] if tpl.size else []) + [scene.colour]
    noun = singular if scene.count == 1 else plural
    words = [*numeral, *(_PL_ADJ[a][form] for a in adjectives), noun]
    return _place(words, [_PL_POS[scene.position]], tpl)


# --- Russian -----------------------------------------------------------------------------------
_RU_NOUNS = {  # gender, nominative singular, genitive singular (after 2 and 3)
    "circle": ("m", "круг", "круга"), "square": ("m", "квадрат", "квадрата"),
    "triangle": ("m", "треугольник", "треугольника"), "star": ("f", "звезда", "звезды"),
    "cross": ("m", "крест", "креста"), "heart": ("n", "сердце", "сердца"),
}  # fmt: skip
_RU_ADJ = {  # nominative m, f, n; genitive plural; nominative plural
    "red": ("красный", "красная", "красное", "красных", "красные"),
    "green": ("зелёный", "зелёная", "зелёное", "зелёных", "зелёные"),
    "blue": ("синий", "синяя", "синее", "синих", "синие"),
    "yellow": ("жёлтый", "жёлтая", "жёлтое", "жёлтых", "жёлтые"),
    "orange": ("оранжевый", "оранжевая", "оранжевое", "оранжевых", "оранжевые"),
    "purple": ("фиолетовый", "фиолетовая", "фиолетовое", "фиолетовых", "фиолетовые"),
    "white": ("белый", "белая", "белое", "белых", "белые"),
    "black": ("чёрный", "чёрная", "чёрное", "чёрных", "чёрные"),
    "small": ("маленький", "маленькая", "маленькое", "маленьких", "маленькие"),
    "large": ("большой", "большая", "большое", "больших", "большие"),
}  # fmt: skip
_RU_POS = {
    "left": "слева", "right": "справа", "top": "сверху", "bottom": "снизу", "centre": "в центре",
}  # fmt: skip


def _russian(scene: Scene, tpl: Template) -> Pieces:
    """Russian: after два/две/три the noun is genitive singular and the adjective genitive
    plural (nominative plural with feminine nouns, the usual modern form)."""
    gender, nominative, genitive = _RU_NOUNS[scene.shape]
    if scene.count == 1:
        numeral, form, noun = [], "mfn".index(gender), nominative
    else:
        two = "две" if gender == "f" else "два"
        numeral = [(two, "три")[scene.count - 2]]
        form, noun = (4 if gender == "f" else 3), genitive
    adjectives = ([scene.size] if tpl.size else []) + [scene.colour]
    words = [*numeral, *(_RU_ADJ[a][form] for a in adjectives), noun]
    return _place(words, [_RU_POS[scene.position]], tpl)


# --- Turkish -----------------------------------------------------------------------------------
_TR_WORDS = {
    "circle": "daire", "square": "kare", "triangle": "üçgen", "star": "yıldız", "cross": "haç",
    "heart": "kalp", "red": "kırmızı", "green": "yeşil", "blue": "mavi", "yellow": "sarı",
    "orange": "turuncu", "purple": "mor", "white": "beyaz", "black": "siyah", "small": "küçük",
    "large": "büyük", "left": "solda", "right": "sağda", "top": "üstte", "bottom": "altta",
    "centre": "ortada",
}  # fmt: skip


def _turkish(scene: Scene, tpl: Template) -> Pieces:
    """Turkish: the noun stays singular after a numeral; positions are locative-case nouns,
    either fronted or as the sentence-final predicate (SOV)."""
    numeral = ("bir", "iki", "üç")[scene.count - 1]
    adjectives = ([scene.size] if tpl.size else []) + [scene.colour]
    words = [numeral, *(_TR_WORDS[a] for a in adjectives), _TR_WORDS[scene.shape]]
    return _place(words, [_TR_WORDS[scene.position]], tpl, comma=False)


# --- Chinese -----------------------------------------------------------------------------------
_ZH_WORDS = {
    "circle": "圆形", "square": "正方形", "triangle": "三角形", "star": "星形", "cross": "十字",
    "heart": "心形", "red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色",
    "orange": "橙色", "purple": "紫色", "white": "白色", "black": "黑色", "small": "小",
    "large": "大", "left": "左边", "right": "右边", "top": "上方", "bottom": "下方",
    "centre": "中间",
}  # fmt: skip


def _chinese(scene: Scene, tpl: Template) -> Pieces:
    """Chinese: numeral + measure word 个, colour + 的, size fused with the noun; position
    fronted as an existential (左边有...) or as the predicate (...在左边)."""
    size = [_ZH_WORDS[scene.size]] if tpl.size else []
    numeral = ("一", "两", "三")[scene.count - 1]
    noun_phrase = [numeral, "个", _ZH_WORDS[scene.colour], "的", *size, _ZH_WORDS[scene.shape]]
    place = _ZH_WORDS[scene.position]
    if not tpl.position:
        return noun_phrase
    if tpl.position_first:
        return [place, "有", *noun_phrase]
    return [*noun_phrase, "在", place]


# --- Japanese ----------------------------------------------------------------------------------
_JA_WORDS = {
    "circle": "丸", "square": "四角", "triangle": "三角", "star": "星", "cross": "十字",
    "heart": "ハート", "red": "赤い", "green": "緑の", "blue": "青い", "yellow": "黄色い",
    "orange": "オレンジ色の", "purple": "紫の", "white": "白い", "black": "黒い",
    "small": "小さな", "large": "大きな", "left": "左", "right": "右", "top": "上",
    "bottom": "下", "centre": "中央",
}  # fmt: skip


def _japanese(scene: Scene, tpl: Template) -> Pieces:
    """Japanese: counter つ; 左に赤い丸が二つ (position first), 赤い丸が二つ左にある
    (position as predicate), 二つの赤い丸 (noun phrase alone)."""
    numeral = ("一つ", "二つ", "三つ")[scene.count - 1]
    size = [_JA_WORDS[scene.size]] if tpl.size else []
    noun = [*size, _JA_WORDS[scene.colour], _JA_WORDS[scene.shape]]
    place = _JA_WORDS[scene.position]
    if not tpl.position:
        return [numeral, "の", *noun]
    if tpl.position_first:
        return [place, "に", *noun, "が", numeral]
    return [*noun, "が", numeral, place, "に", "ある"]


# --- Arabic ------------------------------------------------------------------------------------
_AR_NOUNS = {  # gender, singular, dual (nominative), plural
    "circle": ("f", "دائرة", "دائرتان", "دوائر"), "square": ("m", "مربع", "مربعان", "مربعات"),
    "triangle": ("m", "مثلث", "مثلثان", "مثلثات"), "star": ("f", "نجمة", "نجمتان", "نجوم"),
    "cross": ("m", "صليب", "صليبان", "صلبان"), "heart": ("m", "قلب", "قلبان", "قلوب"),
}  # fmt: skip
_AR_ADJ = {  # masculine, feminine, masculine dual, feminine dual
    "red": ("أحمر", "حمراء", "أحمران", "حمراوان"),
    "green": ("أخضر", "خضراء", "أخضران", "خضراوان"),
    "blue": ("أزرق", "زرقاء", "أزرقان", "زرقاوان"),
    "yellow": ("أصفر", "صفراء", "أصفران", "صفراوان"),
    "orange": ("برتقالي", "برتقالية", "برتقاليان", "برتقاليتان"),
    "purple": ("بنفسجي", "بنفسجية", "بنفسجيان", "بنفسجيتان"),
    "white": ("أبيض", "بيضاء", "أبيضان", "بيضاوان"),
    "black": ("أسود", "سوداء", "أسودان", "سوداوان"),
    "small": ("صغير", "صغيرة", "صغيران", "صغيرتان"),
    "large": ("كبير", "كبيرة", "كبيران", "كبيرتان"),
}  # fmt: skip
_AR_POS = {
    "left": "على اليسار", "right": "على اليمين", "top": "في الأعلى", "bottom": "في الأسفل",
    "centre": "في الوسط",
}  # fmt: skip


def _arabic(scene: Scene, tpl: Template) -> Pieces:
    """Arabic: adjectives follow the noun; two is the dual (noun and adjectives); three is
    ثلاثة/ثلاث with reversed gender polarity plus the plural, whose (non-human) adjectives
    take the feminine singular."""
    gender, singular, dual, plural = _AR_NOUNS[scene.shape]
    feminine = gender == "f"
    if scene.count == 1:
        numeral, noun, form = [], singular, int(feminine)
    elif scene.count == 2:
        numeral, noun, form = [], dual, 2 + int(feminine)
    else:
        numeral, noun, form = ["ثلاث" if feminine else "ثلاثة"], plural, 1
    adjectives = [scene.colour] + ([scene.size] if tpl.size else [])
    words = [*numeral, noun, *(_AR_ADJ[a][form] for a in adjectives)]
    return _place(words, [_AR_POS[scene.position]], tpl, comma=False)


# --- Hindi -------------------------------------------------------------------------------------
_HI_NOUNS = {  # all masculine: singular, plural (direct case)
    "circle": ("वृत्त", "वृत्त"), "square": ("वर्ग", "वर्ग"), "triangle": ("त्रिभुज", "त्रिभुज"),
    "star": ("तारा", "तारे"), "cross": ("क्रॉस", "क्रॉस"), "heart": ("दिल", "दिल"),
}  # fmt: skip
_HI_ADJ = {  # masculine singular, masculine plural
    "red": ("लाल", "लाल"), "green": ("हरा", "हरे"), "blue": ("नीला", "नीले"),
    "yellow": ("पीला", "पीले"), "orange": ("नारंगी", "नारंगी"), "purple": ("बैंगनी", "बैंगनी"),
    "white": ("सफ़ेद", "सफ़ेद"), "black": ("काला", "काले"), "small": ("छोटा", "छोटे"),
    "large": ("बड़ा", "बड़े"),
}  # fmt: skip
_HI_POS = {
    "left": "बाईं ओर", "right": "दाईं ओर", "top": "ऊपर", "bottom": "नीचे", "centre": "बीच में",
}  # fmt: skip


def _hindi(scene: Scene, tpl: Template) -> Pieces:
    """Hindi: -ā adjectives and nouns inflect to -e in the plural; postpositional place
    phrases, fronted or before the final copula है/हैं (SOV)."""
    plural = scene.count > 1
    numeral = ("एक", "दो", "तीन")[scene.count - 1]
    adjectives = ([scene.size] if tpl.size else []) + [scene.colour]
    words = [numeral, *(_HI_ADJ[a][plural] for a in adjectives), _HI_NOUNS[scene.shape][plural]]
    place = [_HI_POS[scene.position]]
    if tpl.position and not tpl.position_first:
        return [*words, *place, "हैं" if plural else "है"]
    return _place(words, place, tpl, comma=False)


_BUILDERS: dict[str, Callable[[Scene, Template], Pieces]] = {
    "en": _english, "de": _german, "nl": _dutch,
    "fr": lambda s, t: _romance(_FR, s, t), "es": lambda s, t: _romance(_ES, s, t),
    "it": lambda s, t: _romance(_IT, s, t), "pt": lambda s, t: _romance(_PT, s, t),
    "pl": _polish, "ru": _russian, "tr": _turkish, "zh": _chinese, "ja": _japanese,
    "ar": _arabic, "hi": _hindi,
}  # fmt: skip
UNSPACED: frozenset[str] = frozenset({"zh", "ja"})  # scripts written without word spaces


def _builder(lang: str) -> Callable[[Scene, Template], Pieces]:
    if lang not in _BUILDERS:
        raise ValueError(
            f"no caption lexicon for language {lang!r}; the generated corpus speaks "
            f"{', '.join(_BUILDERS)} (set data.synthetic.langs to a subset of these)"
        )
    return _BUILDERS[lang]


def caption_pieces(scene: Scene, lang: str, variant: int) -> Pieces:
    """The words (morphemes for zh/ja) of caption ``variant`` of ``scene`` in ``lang``."""
    if not 0 <= variant < len(TEMPLATES):
        raise ValueError(f"caption variant {variant} out of range 0..{len(TEMPLATES) - 1}")
    return [unicodedata.normalize("NFC", p) for p in _builder(lang)(scene, TEMPLATES[variant])]


def join_pieces(lang: str, pieces: Sequence[str]) -> str:
    """Write pieces as text: no spaces in zh/ja, commas attached to the word before."""
    if lang in UNSPACED:
        return "".join(pieces)
    return " ".join(pieces).replace(" ,", ",")


def describe(scene: Scene, lang: str, variant: int = 0) -> str:
    """Caption ``variant`` of ``scene`` in ``lang``; variant k is parallel across languages."""
    return join_pieces(lang, caption_pieces(scene, lang, variant))


def all_scenes() -> list[Scene]:
    """Every attribute combination (1,440 of them), in a fixed order."""
    return [Scene(*combo) for combo in itertools.product(SHAPES, COLOURS, SIZES, POSITIONS, COUNTS)]


@cache
def _lexicon_words(lang: str) -> tuple[str, ...]:
    words: set[str] = set()
    for scene in all_scenes():
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


# --- Rendering ---------------------------------------------------------------------------------
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
    "yellow": (240, 220, 40), "orange": (245, 140, 20), "purple": (140, 50, 180),
    "white": (242, 242, 242), "black": (18, 18, 18),
}  # fmt: skip
_RADIUS = {"small": 0.075, "large": 0.13}  # fraction of the image side
_ANCHORS = {  # centre of the group and whether it spreads vertically
    "left": (0.22, 0.5, True), "right": (0.78, 0.5, True), "top": (0.5, 0.22, False),
    "bottom": (0.5, 0.78, False), "centre": (0.5, 0.5, False),
}  # fmt: skip
_SUPERSAMPLE = 4  # draw masks at 4x and box-filter down: antialiased edges at 16-128 px


def sample_scenes(rng: np.random.Generator, n: int) -> list[Scene]:
    """``n`` scenes with every attribute drawn uniformly and independently."""
    attributes = (SHAPES, COLOURS, SIZES, POSITIONS, COUNTS)
    picks = [rng.integers(len(values), size=n) for values in attributes]
    return [
        Scene(*(values[i] for values, i in zip(attributes, row, strict=True)))
        for row in zip(*picks, strict=True)
    ]


def _object_centres(scene: Scene, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Centres (fractions of the side) of the ``count`` objects: a row or column at the anchor."""
    ax, ay, vertical = _ANCHORS[scene.position]
    offsets = (np.arange(scene.count) - (scene.count - 1) / 2) * 2.3 * radius
    centres = np.zeros((scene.count, 2)) + (ax, ay)
    centres[:, 1 if vertical else 0] += offsets
    centres += rng.uniform(-0.03, 0.03, size=centres.shape)
    return np.clip(centres, radius, 1 - radius)


def _star(x: float, y: float, r: float) -> list[tuple[float, float]]:
    angles = -np.pi / 2 + np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, r, 0.42 * r)
    return list(zip(x + radii * np.cos(angles), y + radii * np.sin(angles), strict=True))


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, x: float, y: float, r: float) -> None:
    """Fill one shape of radius ``r`` px centred at (x, y) into a mask."""
    if shape == "circle":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    elif shape == "square":
        s = 0.85 * r
        draw.rectangle((x - s, y - s, x + s, y + s), fill=255)
    elif shape == "triangle":
        draw.polygon([(x, y - r), (x + 0.95 * r, y + 0.8 * r), (x - 0.95 * r, y + 0.8 * r)], 255)
    elif shape == "star":
        draw.polygon(_star(x, y, r), fill=255)
    elif shape == "cross":
        t = 0.33 * r
        draw.rectangle((x - r, y - t, x + r, y + t), fill=255)
        draw.rectangle((x - t, y - r, x + t, y + r), fill=255)
    elif shape == "heart":
        lobe = 0.5 * r
        for cx in (x - lobe, x + lobe):
            draw.ellipse((cx - lobe, y - 0.3 * r - lobe, cx + lobe, y - 0.3 * r + lobe), fill=255)
        draw.polygon([(x - 0.97 * r, y - 0.15 * r), (x + 0.97 * r, y - 0.15 * r), (x, y + r)], 255)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A grey, slightly tinted linear gradient: varied, and in contrast with every colour."""
    base = rng.uniform(75.0, 175.0) + rng.uniform(-14.0, 14.0, size=3)
    angle, amplitude = rng.uniform(0.0, 2 * np.pi), rng.uniform(0.0, 35.0)
    ramp = np.linspace(-0.5, 0.5, size)
    gradient = amplitude * (np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None])
    return base[None, None, :] + gradient[:, :, None]


def render_scene(scene: Scene, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``scene`` as ``uint8 [image_size, image_size, 3]``: antialiased shapes on a varied
    background, colour and size jittered, plus pixel noise, so no two images are identical."""
    big = image_size * _SUPERSAMPLE
    radius = _RADIUS[scene.size] * rng.uniform(0.9, 1.1)
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    for cx, cy in _object_centres(scene, radius, rng):
        _draw_shape(draw, scene.shape, cx * big, cy * big, radius * big)
    alpha = np.asarray(mask.reduce(_SUPERSAMPLE), dtype=np.float32)[:, :, None] / 255.0
    colour = np.asarray(PALETTE[scene.colour], dtype=np.float32) + rng.uniform(-12, 12, size=3)
    pixels = _background(image_size, rng) * (1.0 - alpha) + colour * alpha
    pixels += rng.normal(0.0, 4.0, size=pixels.shape)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def encode_jpeg(pixels: np.ndarray) -> bytes:
    """JPEG at a fixed quality: Pillow's encoder is deterministic, so bytes are reproducible."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


# --- Web-like noise ----------------------------------------------------------------------------
BOILERPLATE: tuple[str, ...] = (
    "IMG_{n}.jpg {caption}",
    "{caption} - stock photo",
    "{caption} | royalty free vector illustration",
    "{upper}!!!",
    "DSC{n:05d} {caption}",
    "{caption}, high resolution, free download",
)


@dataclass(frozen=True)
class Caption:
    """One alt-text: the text, its English translation (LAION's ``ENG TEXT``) and its noise."""

    text: str
    eng_text: str
    noise: str  # one of NOISE_KINDS


def _tokens(lang: str, pieces: Sequence[str]) -> list[str]:
    return list(pieces) if lang in UNSPACED else join_pieces(lang, pieces).split()


def _truncated(lang: str, pieces: Sequence[str], fraction: float) -> str:
    """The first ``fraction`` of the caption's words (at least one, never all): cut mid-phrase."""
    tokens = _tokens(lang, pieces)
    keep = min(max(1, round(fraction * len(tokens))), len(tokens) - 1)
    return join_pieces(lang, tokens[:keep]).rstrip(", ")


def _random_other_scene(scene: Scene, rng: np.random.Generator) -> Scene:
    while (other := sample_scenes(rng, 1)[0]) == scene:
        continue
    return other


def noisy_caption(
    scene: Scene, lang: str, variant: int, kind: str, rng: np.random.Generator
) -> Caption:
    """Caption ``variant`` of ``scene`` in ``lang`` with one kind of web noise applied to it and,
    identically, to its English translation (as M2M100 would translate the noisy text)."""
    if kind == "mismatch":
        scene = _random_other_scene(scene, rng)
    pieces, eng = caption_pieces(scene, lang, variant), caption_pieces(scene, "en", variant)
    if kind in ("clean", "mismatch"):
        return Caption(join_pieces(lang, pieces), join_pieces("en", eng), kind)
    if kind == "truncate":
        fraction = rng.uniform(0.25, 0.85)
        return Caption(_truncated(lang, pieces, fraction), _truncated("en", eng, fraction), kind)
    if kind == "boilerplate":
        template = BOILERPLATE[rng.integers(len(BOILERPLATE))]
        number = int(rng.integers(1000, 10000))

        def wrap(text: str) -> str:
            return template.format(caption=text, upper=text.upper(), n=number)

        return Caption(wrap(join_pieces(lang, pieces)), wrap(join_pieces("en", eng)), kind)
    raise ValueError(f"unknown noise kind {kind!r}; known: {', '.join(NOISE_KINDS)}")


def noise_probabilities(noise: NoiseSection) -> np.ndarray:
    """Probabilities of ``NOISE_KINDS`` for one caption; the three noise shares must fit in 1."""
    shares = np.array([noise.mismatch, noise.truncate, noise.boilerplate])
    if shares.sum() > 1.0:
        raise ValueError(
            f"data.synthetic.noise shares sum to {shares.sum():.3f} > 1 (mismatch + truncate + "
            "boilerplate is the share of noisy captions); lower them"
        )
    return np.concatenate([[1.0 - shares.sum()], shares])


# Mean CLIP similarity and its range per noise kind: matching pairs stay above 0.26 (the cut
# LAION-5B applied to laion2B-multi), mismatched ones fall well below it.
_SIMILARITY = {
    "clean": (0.34, 0.26, 0.45),
    "truncate": (0.30, 0.26, 0.40),
    "boilerplate": (0.29, 0.26, 0.40),
    "mismatch": (0.15, 0.05, 0.22),
}


def _scores(kind: str, rng: np.random.Generator) -> tuple[float, float, float]:
    """LAION-like (similarity, punsafe, pwatermark): similarity low for mismatched captions,
    watermark likely for stock-photo boilerplate."""
    mean, low, high = _SIMILARITY[kind]
    similarity = float(np.clip(rng.normal(mean, 0.025), low, high))
    punsafe = float(rng.beta(1.0, 200.0))
    pwatermark = float(rng.beta(4.0, 4.0) if kind == "boilerplate" else rng.beta(1.0, 20.0))
    return round(similarity, 6), round(punsafe, 6), round(pwatermark, 6)


# --- Pools -------------------------------------------------------------------------------------
_STREAMS = {"scenes": 0, "captions": 1, "noise": 2, "render": 3}


def _rng(cfg: SyntheticSection, pool: str, stream: str) -> np.random.Generator:
    """One independent generator per (seed, pool, purpose): changing the pretrain size leaves
    the eval pool unchanged, and rendering never shifts the caption draws."""
    return np.random.default_rng([cfg.seed, POOLS.index(pool), _STREAMS[stream]])


@dataclass(frozen=True)
class CaptionRow:
    """One caption of one image, with LAION's per-pair scores."""

    image_id: int
    lang: str
    caption_idx: int
    caption: Caption
    similarity: float
    punsafe: float
    pwatermark: float


def pool_size(cfg: SyntheticSection, pool: str) -> int:
    """Number of images in a pool."""
    sizes = {
        "pretrain": cfg.pretrain_images,
        "finetune": cfg.finetune_images,
        "eval": cfg.eval_images,
    }
    if pool not in sizes:
        raise ValueError(f"unknown pool {pool!r}; the corpus has pools {', '.join(POOLS)}")
    return sizes[pool]


def pool_captions(cfg: SyntheticSection, pool: str, scenes: Sequence[Scene]) -> list[CaptionRow]:
    """The caption rows of a pool, ordered by image, language (config order) and index.

    ``pretrain``: one caption per image, language drawn from the LAION-5B mix (or uniform),
    template drawn uniformly. ``finetune``/``eval``: caption k in every language uses template k.
    Noise never touches ``eval``.
    """
    langs = list(cfg.langs)
    draws = _rng(cfg, pool, "captions")
    if pool == "pretrain":
        mix = laion_mix(langs) if cfg.mix == "laion" else {lang: 1.0 / len(langs) for lang in langs}
        chosen = draws.choice(len(langs), size=len(scenes), p=[mix[lang] for lang in langs])
        variants = draws.integers(cfg.captions_per_image, size=len(scenes))
        slots = [
            (i, langs[c], int(v)) for i, (c, v) in enumerate(zip(chosen, variants, strict=True))
        ]
    else:
        per_image = list(itertools.product(langs, range(cfg.captions_per_image)))
        slots = [(i, lang, k) for i in range(len(scenes)) for lang, k in per_image]
    noise_rng = _rng(cfg, pool, "noise")
    if pool == "eval":
        kinds = np.zeros(len(slots), dtype=int)
    else:
        kinds = noise_rng.choice(
            len(NOISE_KINDS), size=len(slots), p=noise_probabilities(cfg.noise)
        )
    rows = []
    for (image_id, lang, variant), kind in zip(slots, kinds, strict=True):
        kind_name = NOISE_KINDS[kind]
        caption = noisy_caption(scenes[image_id], lang, variant, kind_name, noise_rng)
        caption_idx = 0 if pool == "pretrain" else variant
        rows.append(
            CaptionRow(image_id, lang, caption_idx, caption, *_scores(kind_name, noise_rng))
        )
    return rows


def _metadata_table(rows: Sequence[CaptionRow], pool: str, size: int, base_url: str) -> pa.Table:
    """LAION's metadata columns (and the translated release's ``ENG TEXT``), one row a caption."""
    return pa.table(
        {
            "URL": [f"{base_url}/{pool}/{r.image_id:08d}.jpg" for r in rows],
            "TEXT": [r.caption.text for r in rows],
            "LANGUAGE": [r.lang for r in rows],
            "similarity": pa.array([r.similarity for r in rows], pa.float64()),
            "punsafe": pa.array([r.punsafe for r in rows], pa.float64()),
            "pwatermark": pa.array([r.pwatermark for r in rows], pa.float64()),
            "WIDTH": pa.array([size] * len(rows), pa.int64()),
            "HEIGHT": pa.array([size] * len(rows), pa.int64()),
            "ENG TEXT": [r.caption.eng_text for r in rows],
            "image_id": pa.array([r.image_id for r in rows], pa.int64()),
            "caption_idx": pa.array([r.caption_idx for r in rows], pa.int64()),
            "noise": [r.caption.noise for r in rows],
        }
    )


def _scenes_table(scenes: Sequence[Scene]) -> pa.Table:
    return pa.table(
        {
            "image_id": pa.array(range(len(scenes)), pa.int64()),
            "shape": [s.shape for s in scenes],
            "colour": [s.colour for s in scenes],
            "size": [s.size for s in scenes],
            "position": [s.position for s in scenes],
            "count": pa.array([s.count for s in scenes], pa.int64()),
        }
    )


def _shard_columns(parallel: bool) -> pa.Schema:
    """Additional columns img2dataset would carry over (``save_additional_columns``)."""
    fields = [
        pa.field("image_id", pa.int64()),
        pa.field("caption_idx", pa.int64()),
        pa.field("LANGUAGE", pa.string()),
        pa.field("ENG TEXT", pa.string()),
        pa.field("similarity", pa.float64()),
        pa.field("punsafe", pa.float64()),
        pa.field("pwatermark", pa.float64()),
    ]
    if parallel:
        fields.append(pa.field("translations", pa.map_(pa.string(), pa.list_(pa.string()))))
    return pa.schema(fields)


def _samples(
    cfg: SyntheticSection,
    pool: str,
    scenes: Sequence[Scene],
    rows: Sequence[CaptionRow],
    image_dir: Path,
    base_url: str,
    progress: bool,
) -> Iterator[Sample]:
    """Render each image, write its file, and yield its shard sample.

    The sample's ``.txt`` is the pretrain caption, or for the parallel pools caption 0 in the
    first configured language; ``translations`` then holds every language's captions.
    """
    by_image: list[list[CaptionRow]] = [[] for _ in scenes]
    for row in rows:
        by_image[row.image_id].append(row)
    render_rng = _rng(cfg, pool, "render")
    for image_id in tqdm(range(len(scenes)), desc=f"render {pool}", disable=not progress):
        jpg = encode_jpeg(render_scene(scenes[image_id], cfg.image_size, render_rng))
        (image_dir / f"{image_id:08d}.jpg").write_bytes(jpg)
        first = by_image[image_id][0]
        columns: dict[str, Any] = {
            "image_id": image_id,
            "caption_idx": first.caption_idx,
            "LANGUAGE": first.lang,
            "ENG TEXT": first.caption.eng_text,
            "similarity": first.similarity,
            "punsafe": first.punsafe,
            "pwatermark": first.pwatermark,
        }
        if pool != "pretrain":
            translations: dict[str, list[str]] = {}
            for row in by_image[image_id]:
                translations.setdefault(row.lang, []).append(row.caption.text)
            columns["translations"] = translations
        url = f"{base_url}/{pool}/{image_id:08d}.jpg"
        yield Sample(url, first.caption.text, jpg, cfg.image_size, cfg.image_size, columns)


def _write_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _write_pool(
    cfg: SyntheticSection, pool: str, root: Path, base_url: str, progress: bool
) -> dict[str, int]:
    """Write one pool's files under ``root``; returns its caption count per language."""
    scenes = sample_scenes(_rng(cfg, pool, "scenes"), pool_size(cfg, pool))
    rows = pool_captions(cfg, pool, scenes)
    _write_parquet(
        _metadata_table(rows, pool, cfg.image_size, base_url), root / pool / "metadata.parquet"
    )
    _write_parquet(_scenes_table(scenes), root / pool / "scenes.parquet")
    if pool == "eval":
        captions = pa.table(
            {
                "image_id": pa.array([r.image_id for r in rows], pa.int64()),
                "lang": [r.lang for r in rows],
                "caption_idx": pa.array([r.caption_idx for r in rows], pa.int64()),
                "caption": [r.caption.text for r in rows],
            }
        )
        _write_parquet(captions, root / "eval" / "captions.parquet")
    image_dir = root / "images" / pool
    image_dir.mkdir(parents=True, exist_ok=True)
    samples = _samples(cfg, pool, scenes, rows, image_dir, base_url, progress)
    write_shards(
        samples, root / pool / "shards", cfg.shard_size, _shard_columns(pool != "pretrain")
    )
    counts: dict[str, int] = {lang: 0 for lang in cfg.langs}
    for row in rows:
        counts[row.lang] += 1
    return counts


# --- The corpus on disk ------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest_config(cfg: SyntheticSection, base_url: str) -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "base_url": base_url, **cfg.model_dump(mode="json")}


class CorpusError(ValueError):
    """A corpus directory that is missing, incomplete or not a corpus; the message says the fix."""


def read_manifest(corpus_dir: Path) -> dict[str, Any]:
    """The corpus manifest, or a :class:`CorpusError` naming the path and the fix."""
    path = Path(corpus_dir) / "manifest.json"
    if not path.is_file():
        raise CorpusError(
            f"{path}: no corpus manifest; generate the corpus with "
            f"xlr.data.synthetic.generate_corpus(cfg, {str(corpus_dir)!r}) first"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not {"config", "counts", "files"} <= set(manifest):
            raise ValueError("missing config, counts or files")
    except (ValueError, TypeError) as err:
        raise CorpusError(
            f"{path}: corrupt corpus manifest ({err}); delete {corpus_dir} and generate it again"
        ) from None
    return manifest


def _is_complete(corpus_dir: Path, manifest: dict[str, Any]) -> bool:
    """Every listed file present with its recorded size (hashing 100k images per call is not
    worth it; a size mismatch catches truncation, the usual way a copy goes wrong)."""
    return all(
        (corpus_dir / rel).is_file() and (corpus_dir / rel).stat().st_size == entry["bytes"]
        for rel, entry in manifest["files"].items()
    )


def _cached(out_dir: Path, config: dict[str, Any]) -> bool:
    """Whether ``out_dir`` already holds a complete corpus of this exact config."""
    if not out_dir.exists():
        return False
    if not (out_dir / "manifest.json").is_file():
        if any(out_dir.iterdir()):
            raise CorpusError(
                f"{out_dir}: exists, is not empty and holds no corpus manifest; refusing to "
                "overwrite it. Choose another output directory or delete this one"
            )
        return False
    manifest = read_manifest(out_dir)
    return manifest["config"] == config and _is_complete(out_dir, manifest)


def _build(cfg: SyntheticSection, root: Path, config: dict[str, Any], progress: bool) -> None:
    """Write every pool and the manifest into ``root`` (a fresh temporary directory)."""
    counts = {pool: _write_pool(cfg, pool, root, config["base_url"], progress) for pool in POOLS}
    files = {
        path.relative_to(root).as_posix(): {"sha256": _sha256(path), "bytes": path.stat().st_size}
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
    manifest = {"config": config, "counts": counts, "files": files}
    text = json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False)
    (root / "manifest.json").write_text(text + "\n", encoding="utf-8")


def _replace_dir(built: Path, out_dir: Path) -> None:
    """Move ``built`` to ``out_dir``; an older corpus there is moved aside first, then removed."""
    if not out_dir.exists():
        os.replace(built, out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    os.replace(out_dir, old / out_dir.name)
    os.replace(built, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def generate_corpus(
    cfg: SyntheticSection,
    out_dir: Path,
    progress: bool = True,
    base_url: str = DEFAULT_BASE_URL,
) -> Path:
    """Generate the corpus of ``cfg`` into ``out_dir`` and return ``out_dir``.

    Deterministic: the same config gives byte-identical files. Atomic: the corpus is built in a
    hidden temporary directory next to ``out_dir`` and renamed into place, so a crash never
    leaves half a corpus. Cached: when ``out_dir`` already holds a complete corpus of the same
    config (``manifest.json``), nothing is written. ``base_url`` is the prefix of every URL
    (serve ``out_dir/images`` there to run the img2dataset path offline).
    """
    out_dir = Path(out_dir)
    config = _manifest_config(cfg, base_url.rstrip("/"))
    if _cached(out_dir, config):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        _build(cfg, tmp, config, progress)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _decode(jpg: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(jpg)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def load_pool(corpus_dir: Path, pool: str) -> ImageTextSet:
    """One pool as an :class:`ImageTextSet`, read from its webdataset shards.

    ``pretrain`` has one caption row per image (its language, index 0); ``finetune`` and
    ``eval`` have every language x caption index. Images are decoded into memory
    (:class:`ArrayImages`), ordered by ``image_id``.
    """
    corpus_dir = Path(corpus_dir)
    manifest = read_manifest(corpus_dir)
    if pool not in manifest["counts"]:
        raise CorpusError(
            f"{corpus_dir}: unknown pool {pool!r}; this corpus has {', '.join(manifest['counts'])}"
        )
    shard_dir = corpus_dir / pool / "shards"
    size, count = manifest["config"]["image_size"], manifest["config"][f"{pool}_images"]
    pixels = np.zeros((count, size, size, 3), dtype=np.uint8)  # filled in place: one copy
    seen = np.zeros(count, dtype=bool)
    records = []
    for sample in read_shards(shard_dir):
        meta = sample["json"]
        image_id = meta["image_id"]
        if not 0 <= image_id < count or seen[image_id]:
            raise CorpusError(
                f"{shard_dir}: unexpected image_id {image_id} in sample {sample['key']}; "
                f"delete {corpus_dir} and generate it again"
            )
        pixels[image_id], seen[image_id] = _decode(sample["jpg"]), True
        if pool == "pretrain":
            records.append((image_id, meta["LANGUAGE"], 0, sample["txt"]))
        else:
            for lang, captions in meta["translations"].items():
                records.extend((image_id, lang, k, text) for k, text in enumerate(captions))
    expected = sum(manifest["counts"][pool].values())
    if not seen.all() or len(records) != expected:
        raise CorpusError(
            f"{shard_dir}: {seen.sum()} images and {len(records)} captions in the shards, the "
            f"manifest says {count} and {expected}; delete {corpus_dir} and generate it again"
        )
    captions = pd.DataFrame(records, columns=["image_id", "lang", "caption_idx", "caption"])
    captions = captions.sort_values("image_id", kind="stable").reset_index(drop=True)
    keys = [f"{image_id:08d}.jpg" for image_id in range(count)]
    return ImageTextSet(f"synthetic-{pool}", keys, ArrayImages(pixels), captions)
