"""Loaders for the public multilingual retrieval benchmarks, read from files laid out as published.

XTD10, Crossmodal-3600 and Multi30K (task 1, test 2016) each arrive in their own layout; every
loader here reads that layout from a local root and returns the one shape the metrics know,
:class:`~xlr.data.imagetext.ImageTextSet` (images plus a long captions table). Nothing is
downloaded: a missing file is an error naming the expected path and where the dataset is
published.

Benchmarks are fixed test sets, so bad input (a caption file shorter than the image list,
invalid UTF-8, a damaged ``.gz``, a blank or non-string caption, an unknown language key) is an
error naming the file and the line or key, never a silent skip: skipping would quietly change the
benchmark being reported.

A study evaluates each benchmark in the languages it shares with the study (``langs``): the
others are left out, and only a benchmark sharing none is an error.
Crossmodal-3600 keeps *every* caption of every image (``caption_idx`` 0, 1, ...), not just the
first as CLIP_benchmark does.

Each loader declares how its languages relate (:attr:`ImageTextSet.parallel`): XTD10 and
Multi30K captions are translations of one another line by line (parallel); Crossmodal-3600's
were written by native speakers per language, independently (``parallel=False``).
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pandas as pd

from xlr.data.imagetext import CAPTION_COLUMNS, FileImages, ImageTextSet
from xlr.langs import UnknownLanguageError, canonical_code

XTD10_URL = "https://github.com/adobe-research/Cross-lingual-Test-Dataset-XTD10"
# XTD10's test_image_names.txt lists 800 COCO_train2014_* files, then 200 COCO_val2014_* ones.
COCO_SOURCE = (
    "http://images.cocodataset.org/zips/train2014.zip and val2014.zip (XTD10 names 800 train2014 "
    "and 200 val2014 images)"
)
XM3600_URL = (
    "https://google.github.io/crossmodal-3600 (captions.zip for captions.jsonl, images.tgz for "
    "images/)"
)
MULTI30K_URL = "https://github.com/multi30k/dataset (data/task1/raw, data/task1/image_splits)"
FLICKR30K_URL = "https://shannon.cs.illinois.edu/DenotationGraph/ (Flickr30k images)"

XTD10_LANGS: tuple[str, ...] = ("en", "de", "fr", "es", "it", "jp", "ko", "pl", "ru", "tr", "zh")
# The XTD10 repository keeps the German and French captions (from MIC) and the Japanese ones
# (from STAIR Captions) in sibling folders of XTD10/.
XTD10_FOLDERS: dict[str, str] = {"de": "MIC", "fr": "MIC", "jp": "STAIR"}
XTD10_ALSO: dict[str, str] = {"en": "MIC"}  # the repository keeps English in MIC/ as well
MULTI30K_LANGS: tuple[str, ...] = ("en", "de", "fr", "cs")
MULTI30K_SPLIT = "test_2016_flickr"


class BenchmarkFileError(ValueError):
    """A benchmark file that exists but does not have the published format."""


class BenchmarkNotFoundError(FileNotFoundError):
    """A benchmark file or image that is not where the published layout puts it."""


def _require(path: Path, source: str) -> Path:
    if not path.is_file():
        raise BenchmarkNotFoundError(f"{path}: file not found; it is published at {source}")
    return path


def _decode_utf8(data: bytes, path: Path) -> str:
    """Strict UTF-8 (a leading BOM tolerated); an invalid byte names the file, line and offset."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise BenchmarkFileError(
            f"{path}: invalid UTF-8 at line {line} (byte offset {err.start}); re-download the "
            "file or convert it to UTF-8"
        ) from None


def _read_lines(path: Path, source: str) -> list[str]:
    """Lines of a UTF-8 text file (``.gz`` transparently), trailing blank lines dropped.

    Splits on ``\\n`` only: ``str.splitlines`` would also split on U+2028 or U+0085 inside a
    caption and misalign every later line with its image. A ``.gz`` cut short or holding an
    error page names the file and where to fetch it again (``source``).
    """
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
            raise BenchmarkFileError(
                f"{path}: not a complete gzip file ({type(err).__name__}: {err}); the download "
                f"was cut short or saved an error page in its place. Download it again from "
                f"{source} (`gzip -t` checks a file)"
            ) from None
    lines = [line.removesuffix("\r") for line in _decode_utf8(data, path).split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _aligned_captions(path: Path, n_images: int, image_list: Path, source: str) -> list[str]:
    """One caption per image, line ``i`` describing image ``i``; any misalignment is an error."""
    lines = _read_lines(path, source)
    if len(lines) != n_images:
        relation = "fewer" if len(lines) < n_images else "more"
        raise BenchmarkFileError(
            f"{path}: {len(lines)} lines, {relation} than the {n_images} images listed in "
            f"{image_list}; captions must align line by line with the image list"
        )
    blank = next((i for i, line in enumerate(lines) if not line.strip()), None)
    if blank is not None:
        raise BenchmarkFileError(f"{path}: line {blank + 1} is blank; every image needs a caption")
    return lines


def _image_list(path: Path, source: str) -> list[str]:
    """Image file names, one per line; an empty list, a blank line or a name listed twice is an
    error (a second copy of an image would rank above the first as a wrong answer)."""
    names = _read_lines(path, source)
    if not names:
        raise BenchmarkFileError(f"{path}: no image names")
    blank = next((i for i, name in enumerate(names) if not name.strip()), None)
    if blank is not None:
        raise BenchmarkFileError(f"{path}: line {blank + 1} is blank; expected an image file name")
    names = [name.strip() for name in names]
    first: dict[str, int] = {}
    for no, name in enumerate(names, start=1):
        if name in first:
            raise BenchmarkFileError(
                f"{path}: line {no}: {name!r} already listed on line {first[name]}; each image "
                f"is listed once in the published file: download it again from {source}"
            )
        first[name] = no
    return names


def _image_paths(
    image_dir: Path, names: Sequence[str], source: str, folders: Sequence[str] | None = None
) -> list[Path]:
    """Image files in list order, each ``image_dir/name`` or, where ``folders`` gives it one,
    ``image_dir/folder/name`` (as an archive unpacks); all missing ones are reported at once,
    before any decoding."""
    flat = [image_dir / name for name in names]
    unpacked = flat if folders is None else [
        image_dir / folder / name for name, folder in zip(names, folders, strict=True)
    ]  # fmt: skip
    paths = [a if a.is_file() else b for a, b in zip(flat, unpacked, strict=True)]
    missing = [i for i, path in enumerate(paths) if not path.is_file()]
    if missing:
        shown = ", ".join(str(flat[i]) for i in missing[:3])
        if folders is not None:
            shown += f"; or in their archive's folder, {unpacked[missing[0]]}"
        raise BenchmarkNotFoundError(
            f"{len(missing)} of {len(paths)} images missing under {image_dir} (e.g. {shown}); "
            f"they are published at {source}"
        )
    return paths


def _select_langs(available: Sequence[str], langs: Iterable[str] | None, name: str) -> list[str]:
    """The dataset's own codes to load: all of ``available``, or those matching ``langs`` (the
    languages it shares with the study; :func:`xlr.data.prepare.benchmark_coverage` reports the
    rest). Sharing none is an error.

    ``available`` holds the dataset's spelling (``jp``); ``langs`` may use any alias, so both
    sides are compared by canonical code.
    """
    by_canonical = {canonical_code(code): code for code in available}
    if langs is None:
        return list(available)
    wanted = [canonical_code(code) for code in langs]
    shared = [code for code in dict.fromkeys(wanted) if code in by_canonical]
    if not shared:
        raise ValueError(
            f"{name} has no captions in {', '.join(wanted)}; it offers "
            f"{', '.join(sorted(by_canonical))}. Add one of those to data.train_langs or "
            "data.heldout_langs, or drop the benchmark from eval.benchmarks"
        )
    return [by_canonical[code] for code in shared]


def _captions_frame(rows: list[tuple[int, str, int, str]]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=list(CAPTION_COLUMNS))
    return table.astype({"image_id": "int64", "caption_idx": "int64"})


def _first_existing(candidates: Sequence[Path]) -> Path:
    """The first candidate root that exists, else the first (so errors name a sensible path)."""
    return next((path for path in candidates if path.exists()), candidates[0])


def _xtd10_captions_file(folder: Path, code: str) -> Path:
    """``test_1kcaptions_{code}.txt`` where the repository keeps it, or beside the image list."""
    name = f"test_1kcaptions_{code}.txt"
    published = folder.parent / XTD10_FOLDERS.get(code, folder.name) / name
    also = [folder.parent / XTD10_ALSO[code] / name] if code in XTD10_ALSO else []
    for path in (published, *also, folder / name):
        if path.is_file():
            return path
    raise BenchmarkNotFoundError(
        f"{published} (or {folder / name}): file not found; it is published at {XTD10_URL} "
        f"in {published.parent.name}/"
    )


def load_xtd10(
    root: Path, image_dir: Path | None = None, langs: Iterable[str] | None = None
) -> ImageTextSet:
    """XTD10: 1000 COCO images, one caption each in 11 languages, parallel by line.

    ``root`` is a clone of the XTD10 repository: ``XTD10/test_image_names.txt`` and
    ``XTD10/test_1kcaptions_{lang}.txt``, except German and French in ``MIC/`` and Japanese
    (written ``jp``) in ``STAIR/``; a folder holding all twelve files flat also works. Declared
    parallel, though the Japanese captions are STAIR Captions written for the images rather than
    translations: with one caption per image both protocols give the same galleries and relevant
    items (README, "Retrieval and bias measures"). The images
    are the COCO files the image list names (800 ``COCO_train2014_*.jpg``, 200
    ``COCO_val2014_*.jpg``) the user provides, by default in ``root/images``: flat, or in the
    ``train2014/`` and ``val2014/`` folders COCO's archives unpack to. ``langs``: see
    :func:`load_benchmark`.
    """
    root = Path(root)
    folder = _first_existing([root / "XTD10", root])
    names_file = _require(folder / "test_image_names.txt", XTD10_URL)
    names = _image_list(names_file, XTD10_URL)
    rows: list[tuple[int, str, int, str]] = []
    for code in _select_langs(XTD10_LANGS, langs, "XTD10"):
        path = _xtd10_captions_file(folder, code)
        captions = _aligned_captions(path, len(names), names_file, XTD10_URL)
        rows.extend((i, canonical_code(code), 0, caption) for i, caption in enumerate(captions))
    splits = [name.split("_")[1] if name.startswith("COCO_") else "" for name in names]
    paths = _image_paths(Path(image_dir or root / "images"), names, COCO_SOURCE, splits)
    return ImageTextSet("xtd10", names, FileImages(paths), _captions_frame(rows), parallel=True)


def _xm3600_record(line: str, path: Path, line_no: int) -> tuple[str, dict[str, list[str]]]:
    """One ``captions.jsonl`` line: its image key and ``{dataset lang code: captions}``."""
    where = f"{path}: line {line_no}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise BenchmarkFileError(f"{where}: not valid JSON ({err.msg})") from None
    if not isinstance(record, dict) or not isinstance(record.get("image/key"), str):
        raise BenchmarkFileError(f"{where}: expected an object with a string 'image/key'")
    key = record.pop("image/key")
    captions: dict[str, list[str]] = {}
    for code, entry in record.items():
        if code.startswith("image/"):  # the image's own fields (image/locale), not a language
            continue
        where_key = f"{where} (image/key {key!r}, language {code!r})"
        try:
            canonical_code(code)
        except UnknownLanguageError as err:
            raise BenchmarkFileError(f"{where_key}: {err}") from None
        texts = entry.get("caption") if isinstance(entry, dict) else None
        if not isinstance(texts, list):
            raise BenchmarkFileError(f"{where_key}: expected {{'caption': [...]}}")
        bad = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
        if bad is not None:
            raise BenchmarkFileError(
                f"{where_key}: caption {bad} is {type(texts[bad]).__name__}, not a string"
            )
        blank = next((i for i, text in enumerate(texts) if not text.strip()), None)
        if not texts or blank is not None:
            what = "no captions" if not texts else f"caption {blank} is blank"
            raise BenchmarkFileError(
                f"{where_key}: {what}; every published image has captions in every language, "
                f"so the file is damaged: download captions.jsonl again from {XM3600_URL}"
            )
        captions[code] = texts
    return key, captions


def load_xm3600(
    root: Path, image_dir: Path | None = None, langs: Iterable[str] | None = None
) -> ImageTextSet:
    """Crossmodal-3600: 3600 images with captions in 36 languages, every caption kept.

    ``root`` holds ``captions.jsonl`` (one object per image: ``image/key``, ``image/locale``
    and, per language, ``{"caption": [...], "caption/tokenized": [...], ...}``; other
    ``image/`` fields are ignored too) and the images ``{key}.jpg``, by
    default in ``root/images``. Only the untokenised ``caption`` list is read. Language codes are
    the dataset's (``fil``, ``quz``, ``he``/``iw``, ``no``) mapped to the registry's canonical
    codes. ``langs``: see :func:`load_benchmark`.
    """
    root = Path(root)
    path = _require(root / "captions.jsonl", XM3600_URL)
    numbered = enumerate(_read_lines(path, XM3600_URL), start=1)
    lines = [(no, line) for no, line in numbered if line.strip()]
    records = [_xm3600_record(line, path, no) for no, line in lines]
    keys = [key for key, _ in records]
    seen: dict[str, int] = {}
    for (no, _), key in zip(lines, keys, strict=True):
        if key in seen:
            raise BenchmarkFileError(
                f"{path}: line {no}: image/key {key!r} already appeared on line {seen[key]}"
            )
        seen[key] = no
    available = list(dict.fromkeys(code for _, captions in records for code in captions))
    selected = _select_langs(available, langs, "Crossmodal-3600")
    for (no, _), (key, captions) in zip(lines, records, strict=True):
        missing = [code for code in selected if code not in captions]
        if missing:
            raise BenchmarkFileError(
                f"{path}: line {no} (image/key {key!r}): no captions in {missing}; every "
                "published image has captions in every language, so the file is damaged: "
                f"download captions.jsonl again from {XM3600_URL}"
            )
    rows = [
        (image_id, canonical_code(code), idx, text)
        for image_id, (_, captions) in enumerate(records)
        for code in selected
        for idx, text in enumerate(captions[code])
    ]
    names = [f"{key}.jpg" for key in keys]
    paths = _image_paths(Path(image_dir or root / "images"), names, XM3600_URL)
    return ImageTextSet("xm3600", keys, FileImages(paths), _captions_frame(rows), parallel=False)


def _multi30k_captions(task1: Path, code: str) -> Path:
    """``raw/test_2016_flickr.{code}``, plain or gzipped as the repository stores it."""
    plain = task1 / "raw" / f"{MULTI30K_SPLIT}.{code}"
    gzipped = plain.with_name(plain.name + ".gz")
    if gzipped.is_file() and not plain.is_file():
        return gzipped
    if not plain.is_file():
        raise BenchmarkNotFoundError(
            f"{plain} (or {gzipped.name}): file not found; it is published at {MULTI30K_URL}"
        )
    return plain


def load_multi30k(
    root: Path, image_dir: Path | None = None, langs: Iterable[str] | None = None
) -> ImageTextSet:
    """Multi30K task 1, test 2016: 1000 Flickr30k images, one caption each in en, de, fr, cs.

    ``root`` is a clone of the Multi30K repository (``data/task1/...``) or its ``task1`` folder:
    ``image_splits/test_2016_flickr.txt`` lists the image files and ``raw/test_2016_flickr.{lang}``
    (or ``.gz``) holds the captions, aligned by line. The Flickr30k images are provided by the
    user, by default in ``root/images``. ``langs``: see :func:`load_benchmark`.
    """
    root = Path(root)
    task1 = _first_existing([root / "data" / "task1", root / "task1", root])
    names_file = _require(task1 / "image_splits" / f"{MULTI30K_SPLIT}.txt", MULTI30K_URL)
    names = _image_list(names_file, MULTI30K_URL)
    rows: list[tuple[int, str, int, str]] = []
    for code in _select_langs(MULTI30K_LANGS, langs, "Multi30K"):
        path = _multi30k_captions(task1, code)
        captions = _aligned_captions(path, len(names), names_file, MULTI30K_URL)
        rows.extend((i, canonical_code(code), 0, caption) for i, caption in enumerate(captions))
    paths = _image_paths(Path(image_dir or root / "images"), names, FLICKR30K_URL)
    return ImageTextSet("multi30k", names, FileImages(paths), _captions_frame(rows), parallel=True)


BENCHMARKS: dict[str, Callable[..., ImageTextSet]] = {
    "xtd10": load_xtd10,
    "xm3600": load_xm3600,
    "multi30k": load_multi30k,
}


def load_benchmark(
    name: str, root: Path, langs: list[str] | None = None, image_dir: Path | None = None
) -> ImageTextSet:
    """Load a benchmark by name (``xtd10``, ``xm3600``, ``multi30k``) from its local root, its
    images from ``image_dir`` (default ``root/images``).

    ``langs`` (any alias, e.g. ``jp``) keeps the captions in those of them the benchmark has and
    leaves the others out; when it has none of them the error lists the ones it has.
    """
    key = name.strip().lower().replace("-", "").replace("_", "")
    aliases = {"crossmodal3600": "xm3600"}
    key = aliases.get(key, key)
    if key not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[key](Path(root), image_dir=image_dir, langs=langs)
