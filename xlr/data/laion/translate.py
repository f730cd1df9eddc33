"""Machine translation of a LAION pool's English captions into the other training languages.

LAION gives each image one caption in its own language and, in the translated release, its
English translation (``ENG TEXT``), so a LAION pool is parallel only in X-en pairs
(:mod:`xlr.train.pairs`). Translating each image's English caption into every other training
language it lacks makes every pair of training languages parallel, as the cross-lingual batches
of the paper (arXiv 2408.10536) need. The translations are marked (``translated_by``: the
translator's identity) so reports can tell them from the captions people wrote.

A transformers sequence-to-sequence model (NLLB-200, M2M100 or per-pair Marian) translates
``batch_size`` captions per ``generate`` call, on the GPU when there is one. Every batch is
committed to an SQLite cache keyed by (translator, target language, English text) before the
next starts, so a re-run translates nothing twice and an interrupted run keeps what it finished.
The translator's identity names the model's content (:func:`model_revision`), not only its name,
so a model replaced in its folder or updated on the hub translates afresh.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from xlr.data.imagetext import ImageTextSet
from xlr.data.translate_settings import TranslateSection
from xlr.io import model_files_digest
from xlr.langs import canonical_code
from xlr.runtime import AUTOCAST_DTYPES, resolve_precision

PRECISION_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, **AUTOCAST_DTYPES}
LOOKUP_CHUNK = 500  # texts per cache query: under SQLite's oldest limit of 999 parameters
SOURCE_LANG = "en"  # what is translated: each image's English caption (TEXT or ENG TEXT)

# The study registry's languages in NLLB-200's codes (ISO 639-3 and script)
NLLB_CODES: dict[str, str] = {
    "en": "eng_Latn", "de": "deu_Latn", "nl": "nld_Latn", "sv": "swe_Latn", "da": "dan_Latn",
    "no": "nob_Latn", "fr": "fra_Latn", "es": "spa_Latn", "it": "ita_Latn", "pt": "por_Latn",
    "ro": "ron_Latn", "pl": "pol_Latn", "cs": "ces_Latn", "hr": "hrv_Latn", "ru": "rus_Cyrl",
    "uk": "ukr_Cyrl", "el": "ell_Grek", "hi": "hin_Deva", "bn": "ben_Beng", "fa": "pes_Arab",
    "tr": "tur_Latn", "hu": "hun_Latn", "fi": "fin_Latn", "ar": "arb_Arab", "he": "heb_Hebr",
    "zh": "zho_Hans", "ja": "jpn_Jpan", "ko": "kor_Hang", "vi": "vie_Latn", "th": "tha_Thai",
    "id": "ind_Latn", "tl": "tgl_Latn", "mi": "mri_Latn", "sw": "swh_Latn", "te": "tel_Telu",
    "qu": "quy_Latn",
}  # fmt: skip


class TranslationError(ValueError):
    """A translation the settings cannot do: a language the model family lacks, a model that
    does not load."""


def _family_languages(family: str) -> set[str] | None:
    """The codes a family's tokenizers know (transformers' own lists); None for Marian, whose
    languages are those of the per-pair models that exist."""
    if family == "nllb":
        from transformers.models.nllb.tokenization_nllb import FAIRSEQ_LANGUAGE_CODES

        return set(FAIRSEQ_LANGUAGE_CODES)
    if family == "m2m100":
        from transformers.models.m2m_100.tokenization_m2m_100 import FAIRSEQ_LANGUAGE_CODES

        return set(FAIRSEQ_LANGUAGE_CODES["m2m100"])
    return None


def model_language(family: str, lang: str, field: str = "data.train_langs") -> str:
    """``lang`` (a study code) as ``family`` names it: ``deu_Latn`` (NLLB), ``de`` (M2M100,
    Marian); an error naming ``field`` (where ``lang`` came from) when the family has no such
    language."""
    code = canonical_code(lang)
    known = _family_languages(family)
    mapped = NLLB_CODES.get(code) if family == "nllb" else code
    if known is not None and mapped not in known:
        raise TranslationError(
            f"{field} has {code!r}, which data.laion.translate.family {family!r} "
            f"cannot translate; drop it from {field}, or choose a family that has "
            f"it (nllb covers {', '.join(sorted(NLLB_CODES))})"
        )
    return str(mapped)


def model_revision(name: str) -> str | None:
    """What identifies the content of model ``name``: a local folder's
    :func:`xlr.io.model_files_digest`; for a hub name, the commit its ``main`` resolves to in the
    local Hugging Face cache (the snapshot folder's name, read offline), or None when the cache
    does not hold the model."""
    if Path(name).is_dir():
        return f"files-{model_files_digest(name)}"
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(name, "config.json")
    except ValueError:  # neither a folder nor a hub name: loading it says so
        return None
    return Path(found).parent.name if isinstance(found, str) else None


class TranslationCache:
    """Translations on disk, one SQLite row per (translator, target language, source text).

    SQLite commits each batch atomically, so a run killed mid-way leaves every committed batch
    and nothing half-written."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS translations (translator TEXT, lang TEXT, source TEXT, "
            "translation TEXT, PRIMARY KEY (translator, lang, source))"
        )
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    def lookup(self, translator: str, lang: str, texts: Iterable[str]) -> dict[str, str]:
        """The cached translations of ``texts`` (those that have one), ``LOOKUP_CHUNK`` texts a
        query rather than one a text (``benchmarks/bench_translation_cache.py``)."""
        texts = list(texts)
        found: dict[str, str] = {}
        for start in range(0, len(texts), LOOKUP_CHUNK):
            chunk = texts[start : start + LOOKUP_CHUNK]
            query = (
                "SELECT source, translation FROM translations WHERE translator = ? AND lang = ? "
                f"AND source IN ({', '.join('?' * len(chunk))})"
            )
            found.update(self._db.execute(query, (translator, lang, *chunk)).fetchall())
        return found

    def store(self, translator: str, lang: str, pairs: Sequence[tuple[str, str]]) -> None:
        """Add one batch of (source, translation) in one transaction."""
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO translations VALUES (?, ?, ?, ?)",
                [(translator, lang, source, out) for source, out in pairs],
            )


class Seq2SeqTranslator:
    """One source language (English unless said) into one target language at a time with a
    transformers seq2seq model, loaded on first use (a run whose every caption is cached loads
    none)."""

    def __init__(self, settings: TranslateSection, device: torch.device) -> None:
        self.settings = settings
        self.device = device
        self.precision = resolve_precision(device, settings.precision)
        if self.precision == "fp16" and device.type != "cuda":
            raise TranslationError(
                "data.laion.translate.precision: fp16 is for GPUs without bf16, and this runs on "
                f"{device}; use auto, fp32 or bf16"
            )
        self._loaded: dict[str, tuple[Any, Any]] = {}
        self._revisions: dict[str, str | None] = {}

    def identity(self, lang: str, source: str = SOURCE_LANG) -> str:
        """Who translates ``source`` into ``lang``: the model, its :func:`model_revision` and the
        generation settings that change its output (the cache key's first part, and the pool's
        ``translated_by``), and the source language when it is not English (the cache holds
        source texts, and one text read as another language translates otherwise). A hub model
        the local cache lacks is loaded (downloaded) first, so that the key names the commit
        that translates; should the cache still not resolve it, the key says ``rev=unpinned``
        and names the model alone."""
        settings = self.settings
        name = self._model_for(lang, source)
        if name not in self._revisions:
            revision = model_revision(name)
            if revision is None:
                self._load(name)
                revision = model_revision(name)
            self._revisions[name] = revision
        revision = self._revisions[name] or "unpinned"
        key = f"{name} rev={revision} beams={settings.num_beams} max={settings.max_new_tokens}"
        # fp32 and English keys as before these settings existed, so caches written then stay valid
        key = key if self.precision == "fp32" else f"{key} dtype={self.precision}"
        return key if source == SOURCE_LANG else f"{key} src={source}"

    def _model_for(self, lang: str, source: str) -> str:
        """The model that translates ``source`` into ``lang``; a Marian model translates English
        into its one target, so it refuses another source."""
        if source != SOURCE_LANG and self.settings.family == "marian":
            raise TranslationError(
                f"data.laion.translate.family 'marian' translates English into one language per "
                f"model and cannot translate {source!r}; round trips "
                "(data.laion.translate.paraphrase_via) need an nllb or m2m100 model"
            )
        return self.settings.model_for(lang)

    def _load(self, name: str) -> tuple[Any, Any]:
        """The tokenizer and model ``name``; a hub model at the commit :meth:`identity` keyed."""
        if name not in self._loaded:
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

            commit = self._revisions.get(name)
            pinned = {"revision": commit} if commit and not Path(name).is_dir() else {}
            try:
                tokenizer = AutoTokenizer.from_pretrained(name, **pinned)
                model = AutoModelForSeq2SeqLM.from_pretrained(
                    name, dtype=PRECISION_DTYPES[self.precision], **pinned
                )
            except (OSError, ValueError) as err:
                raise TranslationError(
                    f"data.laion.translate.model: {name!r} does not load as a seq2seq "
                    f"translation model ({err}); give a hub name the machine can fetch, or a "
                    "local folder saved with save_pretrained"
                ) from None
            self._loaded[name] = (tokenizer, model.to(self.device).eval())
        return self._loaded[name]

    @torch.no_grad()
    def translate(self, texts: list[str], lang: str, source: str = SOURCE_LANG) -> list[str]:
        """``texts`` (in ``source``) in ``lang``, one ``generate`` call."""
        settings = self.settings
        tokenizer, model = self._load(self._model_for(lang, source))
        kwargs: dict[str, Any] = {}
        if settings.family != "marian":
            tokenizer.src_lang = model_language(settings.family, source)
            target = model_language(settings.family, lang)
            token = f"__{target}__" if settings.family == "m2m100" else target  # M2M100: __de__
            bos = tokenizer.convert_tokens_to_ids(token)
            if bos is None or bos == tokenizer.unk_token_id:
                raise TranslationError(
                    f"data.laion.translate.model: the tokenizer of {settings.model_for(lang)!r} "
                    f"has no token {token!r} for {lang!r}; is data.laion.translate.family "
                    f"{settings.family!r} the model's family?"
                )
            kwargs["forced_bos_token_id"] = bos
        batch = tokenizer(texts, return_tensors="pt", padding=True, truncation=True)
        out = model.generate(
            **batch.to(self.device),
            num_beams=settings.num_beams,
            max_new_tokens=settings.max_new_tokens,
            **kwargs,
        )
        return [text.strip() for text in tokenizer.batch_decode(out, skip_special_tokens=True)]


def translate_texts(
    texts: Iterable[str],
    lang: str,
    translator: Seq2SeqTranslator,
    cache: TranslationCache,
    source: str = SOURCE_LANG,
) -> dict[str, str]:
    """Each distinct text of ``texts`` (in ``source``) in ``lang``: the cached ones read back,
    the rest translated ``batch_size`` at a time, each batch cached before the next."""
    who = translator.identity(lang, source)
    unique = list(dict.fromkeys(texts))
    found = cache.lookup(who, lang, unique)
    # by length, so a batch pads its captions to about their own length
    missing = sorted((text for text in unique if text not in found), key=len)
    size = translator.settings.batch_size
    for start in range(0, len(missing), size):
        batch = missing[start : start + size]
        pairs = list(zip(batch, translator.translate(batch, lang, source), strict=True))
        cache.store(who, lang, pairs)
        found.update(pairs)
    return found


TRANSLATION_COLUMNS: tuple[str, ...] = ("image_key", "lang", "caption", "translated_by")


def translate_pool(
    captions: pd.DataFrame,
    image_keys: Sequence[str],
    langs: Sequence[str],
    translator: Seq2SeqTranslator,
    cache_path: Path,
) -> pd.DataFrame:
    """Translations of each image's English caption 0 into every language of ``langs`` the image
    has no caption in: one row per image and language, :data:`TRANSLATION_COLUMNS`. An image
    without an English caption gets none; an empty translation is left out."""
    family = translator.settings.family
    targets = [canonical_code(lang) for lang in langs if canonical_code(lang) != SOURCE_LANG]
    for lang in targets:  # every language checked before any model loads
        model_language(family, lang)
    english = captions[(captions["lang"] == SOURCE_LANG) & (captions["caption_idx"] == 0)]
    source = english.set_index("image_id")["caption"]
    has = captions.groupby("image_id")["lang"].agg(set)
    rows = []
    with closing(TranslationCache(cache_path)) as cache:
        for lang in targets:
            images = [i for i in source.index if lang not in has[i]]
            done = translate_texts(source.loc[images], lang, translator, cache)
            who = translator.identity(lang)
            rows += [(image_keys[i], lang, done[source[i]], who) for i in images if done[source[i]]]
    return pd.DataFrame(rows, columns=list(TRANSLATION_COLUMNS))


def with_translations(pool: ImageTextSet, table: pd.DataFrame) -> ImageTextSet:
    """``pool`` with the :func:`translate_pool` rows of ``table`` added as caption 0 in their
    language, marked by ``translated_by``."""
    ids = pd.Series(np.arange(len(pool)), index=list(pool.image_keys))
    added = pd.DataFrame(
        {
            "image_id": ids.loc[table["image_key"]].to_numpy(),
            "lang": table["lang"].to_numpy(),
            "caption_idx": 0,
            "caption": table["caption"].to_numpy(),
            "translated_by": table["translated_by"].to_numpy(),
        }
    )
    captions = pd.concat([pool.captions, added], ignore_index=True)
    return replace(pool, captions=captions)
