"""``data.laion.translate``: which machine-translation model turns the sample's English captions
into the other training languages, and how it runs.

Its own module (not :mod:`xlr.config`) so that the translation code and the params schema share
one definition without the schema growing; :mod:`xlr.config` imports it. Nothing here imports
transformers: a params file is checked without loading a model.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from xlr.langs import UnknownLanguageError, canonical_code
from xlr.paths import resolve_path

PositiveInt = Annotated[int, Field(gt=0)]

# A Hugging Face hub repository id: "name" or "owner/name", letters, digits, "-", "_", "."
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")
MARIAN_TARGET = "{lang}"  # where a Marian model name takes the target language


def _local_path(model: str) -> Path:
    """``model`` read as a local path: ``~`` expanded first, then a relative path from the
    project root (the other order would make ``~/models/nllb`` ``<root>/~/models/nllb``)."""
    return resolve_path(Path(model).expanduser())


def _looks_like_a_path(model: str) -> bool:
    """A name for a local folder: one that exists (``models/nllb-600M`` from the project root,
    though it also reads as a hub id ``owner/name``), or a name written as a file path
    (absolute, ./ or ../, ~, or more than one folder deep)."""
    bare = model.replace(MARIAN_TARGET, "xx")
    if _local_path(model).is_dir():
        return True
    return bare.startswith(("/", ".", "~")) or not _HUB_ID.match(bare)


class TranslateSection(BaseModel):
    """A transformers sequence-to-sequence MT model and its batching.

    ``model`` is a hub name (``facebook/nllb-200-distilled-600M``, ``facebook/m2m100_418M``) or a
    local folder that ``from_pretrained`` reads (a relative one from the project root);
    ``family`` says how the model names languages (``nllb``: ``deu_Latn``; ``m2m100``: ``de``;
    ``marian``: one model per target, so ``model`` holds ``{lang}``, e.g.
    ``Helsinki-NLP/opus-mt-en-{lang}``). ``batch_size`` captions go through ``generate`` at
    once, with ``num_beams`` beams and at most ``max_new_tokens`` tokens out. ``precision`` is
    the dtype the model's weights load in (``auto``: bf16 on CUDA, fp32 on the CPU, as
    ``eval.precision``); a translation made in another dtype than fp32 is keyed by it.

    ``paraphrase_via`` (nllb or m2m100) gives each fine-tuning caption a second caption in its
    own language, its round trip through the first of these languages that is not its own, as
    the text-text target of a ``mono`` batch (:mod:`xlr.data.laion.paraphrase`): LAION has one
    caption per image and language, so without it mono batches train the image-text term alone
    while the pair batches also train the text-text term (README, "The arms").
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    model: str
    family: Literal["nllb", "m2m100", "marian"]
    batch_size: PositiveInt = 32
    max_new_tokens: PositiveInt = 128
    num_beams: PositiveInt = 1
    # left out of params hashes at its default: runs from before it existed keep their identity
    # (what it changes reaches an arm through the pool's content digest anyway)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        default="auto", exclude_if=lambda v: v == "auto"
    )

    # left out of params hashes when unset, as precision is
    paraphrase_via: list[str] | None = Field(default=None, exclude_if=lambda v: v is None)

    @field_validator("paraphrase_via")
    @classmethod
    def _two_distinct_pivots(cls, pivots: list[str] | None) -> list[str] | None:
        if pivots is None:
            return None
        try:
            codes = [canonical_code(lang) for lang in pivots]
        except UnknownLanguageError as err:
            raise ValueError(str(err)) from None
        if len(set(codes)) < 2 or len(set(codes)) != len(codes):
            raise ValueError(
                f"data.laion.translate.paraphrase_via {pivots} must list at least two distinct "
                "languages: a caption goes through the first that is not its own, so the first "
                "language's own captions need a second (e.g. [nl, de])"
            )
        return codes

    @field_validator("model")
    @classmethod
    def _hub_name_or_folder(cls, model: str) -> str:
        # a Marian folder per target is checked when its target is translated
        folder = _local_path(model)
        if _looks_like_a_path(model) and MARIAN_TARGET not in model and not folder.is_dir():
            raise ValueError(
                f"data.laion.translate.model {model!r} is written as a path but "
                f"{folder} is not a folder; give a folder that "
                "from_pretrained reads (config.json, tokenizer, weights) or a hub name such as "
                "facebook/nllb-200-distilled-600M"
            )
        return model

    @model_validator(mode="after")
    def _marian_names_its_target(self) -> TranslateSection:
        per_target = MARIAN_TARGET in self.model
        if per_target != (self.family == "marian"):
            raise ValueError(
                f"data.laion.translate.model {self.model!r} with family {self.family!r}: a "
                f"Marian model translates one pair, so its name holds {MARIAN_TARGET} (e.g. "
                "Helsinki-NLP/opus-mt-en-{lang}), and only a Marian name does; fix model or family"
            )
        if self.paraphrase_via is not None and self.family == "marian":
            raise ValueError(
                "data.laion.translate.paraphrase_via needs a model that translates between any "
                "two languages (family nllb or m2m100); a Marian model translates English into "
                "one language. Drop paraphrase_via or change the model"
            )
        return self

    def pivot(self, lang: str) -> str:
        """The language ``lang``'s captions make their round trip through."""
        assert self.paraphrase_via is not None, "pivot() is for settings with paraphrase_via"
        return next(pivot for pivot in self.paraphrase_via if pivot != lang)

    def model_for(self, lang: str) -> str:
        """The model (hub name or resolved folder) that translates English into ``lang``."""
        name = self.model.replace(MARIAN_TARGET, lang)
        return str(_local_path(name)) if _looks_like_a_path(name) else name
