"""Language registry: every language the study, its benchmarks and LAION-5B talk about.

One table answers the questions the pipeline keeps asking about a language: which code is
canonical (ISO 639-1 where one exists), which aliases real datasets use for it (XTD10 writes
Japanese as ``jp``, Crossmodal-3600 writes Filipino as ``fil`` and Cusco Quechua as ``quz``),
which script and family it belongs to (the adapter arm's ``nearest`` fallback and the bias
analysis group by these), and roughly how much of LAION-5B it is (the long-tailed pretraining
mix of the embedded default follows it).

``laion_share`` is the language's approximate fraction of all 5.85B LAION-5B pairs: English is
laion2B-en (2.32B of 5.85B); every other language is its share of laion2B-multi (2.26B) as read
off the language histogram LAION published, times 2.26/5.85. They are rounded and meant for
sampling defaults and plots, not as measurements.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Language:
    """One language: canonical code, display name, script, family and LAION-5B share."""

    code: str
    name: str
    script: str
    branch: str  # closest family level used for transfer: Germanic, Romance, Slavic, ...
    family: str  # top-level family: Indo-European, Turkic, Sino-Tibetan, ...
    laion_share: float  # approximate fraction of all LAION-5B pairs
    aliases: tuple[str, ...] = field(default=())


_LANGUAGES: tuple[Language, ...] = (
    Language("en", "English", "Latin", "Germanic", "Indo-European", 0.397),
    Language("de", "German", "Latin", "Germanic", "Indo-European", 0.0255),
    Language("nl", "Dutch", "Latin", "Germanic", "Indo-European", 0.0135),
    Language("sv", "Swedish", "Latin", "Germanic", "Indo-European", 0.0046),
    Language("da", "Danish", "Latin", "Germanic", "Indo-European", 0.0023),
    Language("no", "Norwegian", "Latin", "Germanic", "Indo-European", 0.0015, ("nb", "nn")),
    Language("fr", "French", "Latin", "Romance", "Indo-European", 0.0286),
    Language("es", "Spanish", "Latin", "Romance", "Indo-European", 0.0255),
    Language("it", "Italian", "Latin", "Romance", "Indo-European", 0.0178),
    Language("pt", "Portuguese", "Latin", "Romance", "Indo-European", 0.0170),
    Language("ro", "Romanian", "Latin", "Romance", "Indo-European", 0.0035),
    Language("pl", "Polish", "Latin", "Slavic", "Indo-European", 0.0154),
    Language("cs", "Czech", "Latin", "Slavic", "Indo-European", 0.0062),
    Language("hr", "Croatian", "Latin", "Slavic", "Indo-European", 0.0008),
    Language("ru", "Russian", "Cyrillic", "Slavic", "Indo-European", 0.0410),
    Language("uk", "Ukrainian", "Cyrillic", "Slavic", "Indo-European", 0.0035),
    Language("el", "Greek", "Greek", "Hellenic", "Indo-European", 0.0027),
    Language("hi", "Hindi", "Devanagari", "Indo-Aryan", "Indo-European", 0.0012),
    Language("bn", "Bengali", "Bengali", "Indo-Aryan", "Indo-European", 0.0004),
    Language("fa", "Persian", "Arabic", "Iranian", "Indo-European", 0.0031),
    Language("tr", "Turkish", "Latin", "Turkic", "Turkic", 0.0073),
    Language("hu", "Hungarian", "Latin", "Uralic", "Uralic", 0.0031),
    Language("fi", "Finnish", "Latin", "Uralic", "Uralic", 0.0019),
    Language("ar", "Arabic", "Arabic", "Semitic", "Afro-Asiatic", 0.0039),
    Language("he", "Hebrew", "Hebrew", "Semitic", "Afro-Asiatic", 0.0012, ("iw",)),
    Language("zh", "Chinese", "Han", "Sinitic", "Sino-Tibetan", 0.0243, ("zh-cn", "cmn")),
    Language("ja", "Japanese", "Japanese", "Japonic", "Japonic", 0.0228, ("jp",)),
    Language("ko", "Korean", "Hangul", "Koreanic", "Koreanic", 0.0046),
    Language("vi", "Vietnamese", "Latin", "Vietic", "Austroasiatic", 0.0073),
    Language("th", "Thai", "Thai", "Tai", "Kra-Dai", 0.0019),
    Language("id", "Indonesian", "Latin", "Malayic", "Austronesian", 0.0054),
    Language("tl", "Filipino", "Latin", "Philippine", "Austronesian", 0.0004, ("fil",)),
    Language("mi", "Maori", "Latin", "Polynesian", "Austronesian", 0.00002),
    Language("sw", "Swahili", "Latin", "Bantu", "Niger-Congo", 0.00008),
    Language("te", "Telugu", "Telugu", "Dravidian", "Dravidian", 0.00012),
    Language("qu", "Quechua", "Latin", "Quechuan", "Quechuan", 0.000004, ("quz",)),
)

LANGUAGES: dict[str, Language] = {lang.code: lang for lang in _LANGUAGES}
_ALIASES: dict[str, str] = {
    alias: lang.code for lang in _LANGUAGES for alias in (lang.code, *lang.aliases)
}


class UnknownLanguageError(ValueError):
    """A language code that is neither a registered code nor a known alias."""


def canonical_code(code: str) -> str:
    """Map a dataset's language code (``jp``, ``fil``, ``EN``) to the registry's canonical code."""
    key = code.strip().lower().replace("_", "-")
    if key in _ALIASES:
        return _ALIASES[key]
    raise UnknownLanguageError(
        f"unknown language code {code!r}; known codes: {', '.join(sorted(LANGUAGES))} "
        f"(aliases: {', '.join(sorted(set(_ALIASES) - set(LANGUAGES)))})"
    )


def get_language(code: str) -> Language:
    """The registry entry for a code or alias."""
    return LANGUAGES[canonical_code(code)]


def laion_mix(codes: Iterable[str]) -> dict[str, float]:
    """LAION-5B shares of ``codes`` renormalised to sum to one: the long-tailed pretraining mix."""
    shares = {canonical_code(c): get_language(c).laion_share for c in codes}
    total = sum(shares.values())
    if total <= 0:
        raise ValueError("laion_mix needs at least one language")
    return {code: share / total for code, share in shares.items()}


def nearest_language(code: str, candidates: Sequence[str]) -> str:
    """The candidate most likely to transfer to ``code``.

    Why this order: cross-lingual transfer in multilingual encoders follows shared subwords
    first (same branch *and* script: es -> pt), then relatedness (same branch: ru -> pl), then
    script alone (shared characters: ja -> zh), then the wider family; ties go to the candidate
    with the larger LAION-5B share, i.e. the better-trained one.
    """
    target = get_language(code)
    pool = [get_language(c) for c in candidates if canonical_code(c) != target.code]
    if not pool:
        raise ValueError(f"no candidate languages other than {code!r} to choose a neighbour from")

    def closeness(lang: Language) -> tuple[int, float]:
        if lang.branch == target.branch and lang.script == target.script:
            level = 4
        elif lang.branch == target.branch:
            level = 3
        elif lang.script == target.script and lang.family == target.family:
            level = 2
        elif lang.script == target.script or lang.family == target.family:
            level = 1
        else:
            level = 0
        return level, lang.laion_share

    return max(pool, key=closeness).code
