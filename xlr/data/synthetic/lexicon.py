"""Lexicon files: one JSON file a language, read once and checked against its grammar.

Every word a caption uses lives in ``xlr/data/lexicons/{lang}.json``, so a linguist can correct
a word without reading Python; what stays code is each language's grammar (word order,
agreement, :mod:`xlr.data.synthetic.grammar`), which reads the words by role
(``nouns.circle.plural``, ``numerals.2``, ``positions.left``) and declares the sections it reads
(:class:`Section`); a file is validated against them when it is loaded.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LEXICON_DIR = Path(__file__).parents[1] / "lexicons"


class LexiconError(ValueError):
    """A lexicon file that is missing or does not fit its grammar; the message names the file,
    the field and the fix."""


@dataclass(frozen=True)
class Section:
    """What one section of a lexicon file holds: for every key, one word or named forms.

    ``what`` says what a key names ("shape", "count") in error messages. ``forms`` is empty when
    each key has a single word. ``choices`` closes a form to the values its grammar handles.
    """

    what: str
    keys: tuple[str, ...]
    forms: tuple[str, ...] = ()
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def template(self) -> str:
        """An entry as the file writes it, for error messages: ``{"gender": "m|f", ...}``."""
        if not self.forms:
            return '"..."'
        forms = (f'"{f}": "{"|".join(self.choices.get(f, ("...",)))}"' for f in self.forms)
        return "{" + ", ".join(forms) + "}"


@dataclass(frozen=True)
class Lexicon:
    """One language's words, read from its file and checked against its grammar's sections."""

    lang: str
    path: Path
    sections: Mapping[str, Mapping[str, str | Mapping[str, str]]]

    def word(self, section: str, key: str | int) -> str:
        """The one word ``section`` gives for ``key`` (a count may be passed as a number)."""
        value = self.sections[section][str(key)]
        assert isinstance(value, str), (self.path, section, key)
        return value

    def forms(self, section: str, key: str | int) -> Mapping[str, str]:
        """The named forms ``section`` gives for ``key`` (gender, singular, plural, ...)."""
        value = self.sections[section][str(key)]
        assert not isinstance(value, str), (self.path, section, key)
        return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object that gives a key twice is an editing slip json.loads would silently hide."""
    keys = [key for key, _ in pairs]
    if twice := sorted({key for key in keys if keys.count(key) > 1}):
        raise LexiconError(f"key {', '.join(map(repr, twice))} given twice in one object")
    return dict(pairs)


def _word_problems(value: Any, where: str, choices: tuple[str, ...] = ()) -> list[str]:
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        return [f"{where}: {value!r} is not a word; give a non-empty string, no outer spaces"]
    if choices and value not in choices:
        return [
            f"{where}: {value!r} is not one of {', '.join(choices)} (the grammar knows no other)"
        ]
    return []


def _section_problems(name: str, spec: Section, entries: Any) -> list[str]:
    """Every problem in one section: missing or unknown keys, wrong forms, words that aren't,
    one word for two keys."""
    if not isinstance(entries, dict):
        return [f"{name}: expected an object giving each {spec.what} {spec.template()}"]
    problems = [
        f'{name}: no entry for {spec.what} {key!r}; add "{key}": {spec.template()}'
        for key in spec.keys
        if key not in entries
    ]
    problems += [
        f"{name}.{key}: unknown {spec.what}; expected only {', '.join(spec.keys)} (remove it "
        "or correct the spelling)"
        for key in entries
        if key not in spec.keys
    ]
    for key in (k for k in spec.keys if k in entries):
        where, value = f"{name}.{key}", entries[key]
        if not spec.forms:
            problems += _word_problems(value, where)
            continue
        if not isinstance(value, dict):
            problems.append(f"{where}: expected the forms {spec.template()}, got {value!r}")
            continue
        for form in spec.forms:
            if form not in value:
                problems.append(f"{where}: missing form {form!r}; write {spec.template()}")
            else:
                problems += _word_problems(
                    value[form], f"{where}.{form}", spec.choices.get(form, ())
                )
        problems += [
            f"{where}.{form}: unknown form; the grammar reads only {', '.join(spec.forms)}"
            for form in value
            if form not in spec.forms
        ]
    return problems + _shared_words(name, spec, entries)


def _shared_words(name: str, spec: Section, entries: dict[str, Any]) -> list[str]:
    """Two keys with one word in the same form: captions could not tell their attributes apart,
    and a held-out scene would read like a training one (forms with closed choices, such as a
    gender, are meant to repeat and are not checked)."""
    problems = []
    for form in spec.forms or (None,):
        if form in spec.choices:
            continue
        owners: dict[str, list[str]] = {}
        for key in (k for k in spec.keys if k in entries):
            word = entries[key]
            if form is not None:
                word = word.get(form) if isinstance(word, dict) else None
            if isinstance(word, str) and word.strip():
                owners.setdefault(unicodedata.normalize("NFC", word), []).append(key)
        problems += [
            f"{name}: {' and '.join(keys)} share the word {word!r}"
            f"{'' if form is None else f' (form {form!r})'}; captions could not tell them "
            "apart, give each its own word"
            for word, keys in owners.items()
            if len(keys) > 1
        ]
    return problems


def _nfc(entry: Any) -> Any:
    """NFC throughout: an editor that saves decomposed accents must not change a caption."""
    if isinstance(entry, str):
        return unicodedata.normalize("NFC", entry)
    return {key: _nfc(value) for key, value in entry.items()}


def lexicon_digest(lexicon_dir: Path = LEXICON_DIR) -> str:
    """sha256 over every lexicon file's name and bytes: a corrected word changes the captions,
    so whatever is cached from a corpus (the corpus, its tokenizer, the bases) keys on it."""
    digest = hashlib.sha256()
    for path in sorted(Path(lexicon_dir).glob("*.json")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def read_lexicon(path: Path, lang: str, sections: Mapping[str, Section]) -> Lexicon:
    """Read one lexicon file and check it holds exactly ``sections``: every key, every form,
    and a word of its own for every key (per form).

    Raises :class:`LexiconError` listing every problem, each with the file, the field and the
    fix, so one edit-and-retry round mends them all.
    """
    if not path.is_file():
        raise LexiconError(
            f"{path}: no lexicon file for language {lang!r}; restore it from the xlr sources "
            f"(it ships as package data), or pass the folder that holds {path.name}"
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError as err:
        raise LexiconError(f"{path}: not UTF-8 ({err}); save it as UTF-8") from None
    except json.JSONDecodeError as err:
        raise LexiconError(
            f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); "
            "fix the syntax there"
        ) from None
    except LexiconError as err:
        raise LexiconError(f"{path}: {err}; keep one of them") from None
    if not isinstance(document, dict):
        raise LexiconError(f"{path}: expected a JSON object with sections {', '.join(sections)}")
    problems = [
        f'missing section "{name}": each {spec.what} {spec.template()}; add it'
        for name, spec in sections.items()
        if name not in document
    ]
    problems += [
        f"unknown section {name!r}; the {lang} grammar reads only {', '.join(sections)} "
        "(remove it or correct the spelling)"
        for name in document
        if name not in sections
    ]
    for name in (n for n in sections if n in document):
        problems += _section_problems(name, sections[name], document[name])
    if problems:
        listed = "\n  ".join(problems)
        raise LexiconError(f"{path}: {len(problems)} problem(s) in the {lang} lexicon:\n  {listed}")
    return Lexicon(lang, path, {name: _nfc(document[name]) for name in sections})
