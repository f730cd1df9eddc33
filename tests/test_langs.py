"""The language registry: aliases, shares and the nearest-language fallback."""

import pytest

from xlr.config import SYNTHETIC_LANGS
from xlr.langs import (
    LANGUAGES,
    UnknownLanguageError,
    canonical_code,
    get_language,
    laion_mix,
    nearest_language,
)


def test_dataset_aliases() -> None:
    assert canonical_code("jp") == "ja"  # XTD10
    assert canonical_code("fil") == "tl"  # Crossmodal-3600
    assert canonical_code("quz") == "qu"
    assert canonical_code("iw") == "he"
    assert canonical_code(" EN ") == "en"
    with pytest.raises(UnknownLanguageError, match="'klingon'"):
        canonical_code("klingon")


def test_crossmodal3600_languages_are_all_registered() -> None:
    xm3600 = (
        "ar bn cs da de el en es fa fi fil fr he hi hr hu id it ja ko mi nl no pl pt quz ro ru "
        "sv sw te th tr uk vi zh"
    ).split()
    assert len({canonical_code(c) for c in xm3600}) == 36


def test_synthetic_languages_span_scripts_and_families() -> None:
    langs = [get_language(c) for c in SYNTHETIC_LANGS]
    assert len(langs) >= 12
    assert len({lang.script for lang in langs}) >= 4
    assert len({lang.family for lang in langs}) >= 4


def test_laion_mix_is_long_tailed_and_normalised() -> None:
    mix = laion_mix(SYNTHETIC_LANGS)
    assert sum(mix.values()) == pytest.approx(1.0)
    assert max(mix, key=mix.get) == "en"
    assert 0.5 < mix["en"] < 0.7
    assert min(mix.values()) < 0.01  # LAION's long tail: at least one rare language
    assert all(0 < lang.laion_share < 1 for lang in LANGUAGES.values())


@pytest.mark.parametrize(
    ("target", "candidates", "expected"),
    [
        ("pt", ["en", "de", "es", "ru", "zh"], "es"),  # same branch and script
        ("nl", ["en", "de", "es"], "en"),  # Germanic; English has the larger share
        ("uk", ["en", "pl", "ru"], "ru"),  # Slavic and Cyrillic beats Slavic alone
        ("pl", ["en", "es", "ru"], "ru"),  # same branch, other script
        ("ja", ["en", "de", "zh"], "en"),  # no shared branch or script: largest share
        ("ar", ["en", "fa", "zh"], "fa"),  # shared script
    ],
)
def test_nearest_language(target: str, candidates: list[str], expected: str) -> None:
    assert nearest_language(target, candidates) == expected


def test_nearest_language_needs_another_candidate() -> None:
    with pytest.raises(ValueError, match="no candidate"):
        nearest_language("de", ["de"])
