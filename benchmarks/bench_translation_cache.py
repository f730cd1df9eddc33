"""Reading cached translations back: :meth:`TranslationCache.lookup` (``LOOKUP_CHUNK`` texts a
query) against one query a text, the plain alternative, over the same SQLite cache.

A re-run of notebook 01 on a LAION sample reads every caption's translation back from the cache
before it translates anything; ``--texts`` LAION-length captions (``--langs`` target languages
cached, the lookups of one language timed), all of them cached.

    python benchmarks/bench_translation_cache.py [--texts 200000] [--langs 4]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

import numpy as np
from timing import best_times

from xlr.data.laion.translate import TranslationCache


def captions(n: int) -> list[str]:
    """``n`` distinct captions of LAION's typical length (40-120 characters)."""
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(5000)]
    return [" ".join(rng.choice(words, int(rng.integers(8, 25)))) + f" #{i}" for i in range(n)]


def per_text(db: sqlite3.Connection, translator: str, lang: str, texts: list[str]) -> dict:
    """The plain lookup: one query a text."""
    query = (
        "SELECT source, translation FROM translations "
        "WHERE translator = ? AND lang = ? AND source = ?"
    )
    found = {}
    for text in texts:
        row = db.execute(query, (translator, lang, text)).fetchone()
        if row is not None:
            found[row[0]] = row[1]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=200_000)
    parser.add_argument("--langs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    texts = captions(args.texts)
    langs = [f"l{i}" for i in range(args.langs)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.sqlite"
        with closing(TranslationCache(path)) as cache, closing(sqlite3.connect(path)) as db:
            for lang in langs:
                cache.store("mt", lang, [(text, f"{lang}: {text}") for text in texts])
            results = {}

            def chunked() -> None:
                results["chunked"] = cache.lookup("mt", langs[0], texts)

            def plain() -> None:
                results["plain"] = per_text(db, "mt", langs[0], texts)

            t_chunked, t_plain = best_times([chunked, plain], args.repeats)
    if results["chunked"] != results["plain"] or len(results["plain"]) != len(texts):
        raise AssertionError("the two lookups read different translations")
    print(
        f"{args.texts} cached texts x {args.langs} languages, one language read back, "
        f"best of {args.repeats}"
    )
    print(
        f"one query a text {t_plain:.2f} s  chunked {t_chunked:.2f} s  "
        f"chunked/plain {t_chunked / t_plain:.2f}"
    )


if __name__ == "__main__":
    main()
