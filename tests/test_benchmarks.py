"""Benchmark loaders on tiny fixtures laid out exactly as XTD10, Crossmodal-3600 and Multi30K
publish them, plus every malformed input the loaders must name."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from xlr.config import DataSection, parse_params
from xlr.data.benchmarks import (
    XTD10_LANGS,
    BenchmarkFileError,
    BenchmarkNotFoundError,
    load_benchmark,
    load_multi30k,
    load_xm3600,
    load_xtd10,
)
from xlr.data.imagetext import CAPTION_COLUMNS
from xlr.data.prepare import benchmark_coverage, eval_sets, prepare_data
from xlr.langs import UnknownLanguageError

COCO_NAMES = ["COCO_train2014_000000000042.jpg", "COCO_val2014_000000127068.jpg"]  # as published
FLICKR_NAMES = ["1000092795.jpg", "10002456.jpg", "1000268201.jpg"]
XM_KEYS = ["000411001ff7dd4f", "0005c3a0a6b8e1d3"]


def _jpeg(path: Path, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), (shade, 10, 200)).save(path, format="JPEG")


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def xtd10_tree(root: Path) -> Path:
    """A clone of the XTD10 repository (de/fr under ``MIC/``, jp under ``STAIR/``) plus a
    user-provided folder of COCO images (flat: the loader's other layout is tested below)."""
    _write_lines(root / "XTD10" / "test_image_names.txt", COCO_NAMES)
    for code in XTD10_LANGS:
        folder = root / {"de": "MIC", "fr": "MIC", "jp": "STAIR"}.get(code, "XTD10")
        _write_lines(folder / f"test_1kcaptions_{code}.txt", [f"{code} cat", f"{code} dog"])
    for i, name in enumerate(COCO_NAMES):
        _jpeg(root / "images" / name, 40 * i)
    return root


@pytest.fixture
def xtd10_root(tmp_path: Path) -> Path:
    return xtd10_tree(tmp_path)


def _xm_entry(captions: list[object]) -> dict[str, list[object]]:
    return {
        "caption": captions,
        "caption/tokenized": captions,
        "caption/tokenized/lowercase": captions,
    }


def xm3600_tree(root: Path) -> Path:
    """``captions.jsonl`` + ``images/{key}.jpg`` as Crossmodal-3600 publishes them (with
    ``image/locale``, the language of the region the photo was taken in, on every record)."""
    records = [
        {"image/key": XM_KEYS[0], "image/locale": "fil",
         "en": _xm_entry(["a red car", "a car on a road"]),
         "fil": _xm_entry(["isang pulang kotse"]), "quz": _xm_entry(["puka carro"]),
         "iw": _xm_entry(["מכונית אדומה"])},
        {"image/key": XM_KEYS[1], "image/locale": "en", "en": _xm_entry(["two dogs"]),
         "fil": _xm_entry(["dalawang aso", "mga aso", "aso"]), "quz": _xm_entry(["iskay allqu"]),
         "iw": _xm_entry(["שני כלבים"])},
    ]  # fmt: skip
    _write_lines(root / "captions.jsonl", [json.dumps(r, ensure_ascii=False) for r in records])
    for i, key in enumerate(XM_KEYS):
        _jpeg(root / "images" / f"{key}.jpg", 60 * i)
    return root


@pytest.fixture
def xm3600_root(tmp_path: Path) -> Path:
    return xm3600_tree(tmp_path)


def multi30k_tree(root: Path) -> Path:
    """The multi30k/dataset repository: gzipped ``raw/`` captions and ``image_splits/``."""
    task1 = root / "data" / "task1"
    _write_lines(task1 / "image_splits" / "test_2016_flickr.txt", FLICKR_NAMES)
    for code in ("en", "de", "fr", "cs"):
        text = "".join(f"{code} caption {i}\n" for i in range(len(FLICKR_NAMES)))
        (task1 / "raw").mkdir(parents=True, exist_ok=True)
        (task1 / "raw" / f"test_2016_flickr.{code}.gz").write_bytes(gzip.compress(text.encode()))
    for i, name in enumerate(FLICKR_NAMES):
        _jpeg(root / "images" / name, 30 * i)
    return root


@pytest.fixture
def multi30k_root(tmp_path: Path) -> Path:
    return multi30k_tree(tmp_path)


def test_xtd10_loads_parallel_captions_with_jp_as_japanese(xtd10_root: Path) -> None:
    bench = load_xtd10(xtd10_root)
    assert list(bench.image_keys) == COCO_NAMES
    assert len(bench) == 2 and bench.images[1].size == (8, 6)
    assert list(bench.captions.columns) == list(CAPTION_COLUMNS)
    assert "ja" in bench.langs and "jp" not in bench.langs
    assert len(bench.langs) == 11
    ja = bench.captions_in("ja")
    assert ja["caption"].tolist() == ["jp cat", "jp dog"]
    assert ja["image_id"].tolist() == [0, 1] and set(ja["caption_idx"]) == {0}
    assert bench.parallel is True  # line i is one caption translated into every language
    # the repository also keeps English beside German and French, in MIC/
    (xtd10_root / "XTD10" / "test_1kcaptions_en.txt").rename(
        xtd10_root / "MIC" / "test_1kcaptions_en.txt"
    )
    assert load_xtd10(xtd10_root).captions_in("en")["caption"].tolist() == ["en cat", "en dog"]


def test_xtd10_accepts_a_flat_folder_and_a_separate_image_dir(xtd10_root: Path) -> None:
    flat = xtd10_root / "flat"
    for path in xtd10_root.glob("*/test_*.txt"):
        flat.mkdir(exist_ok=True)
        path.rename(flat / path.name)
    bench = load_xtd10(flat, image_dir=xtd10_root / "images")
    assert len(bench) == 2 and len(bench.langs) == 11


def test_langs_filter_accepts_aliases_and_reads_only_those_files(xtd10_root: Path) -> None:
    (xtd10_root / "XTD10" / "test_1kcaptions_ko.txt").unlink()
    bench = load_benchmark("xtd10", xtd10_root, langs=["jp", "en"])
    assert bench.langs == ["ja", "en"]


def test_langs_filter_rejects_missing_and_unknown_languages(xtd10_root: Path) -> None:
    with pytest.raises(ValueError, match="no captions in cs"):
        load_benchmark("xtd10", xtd10_root, langs=["cs"])
    with pytest.raises(UnknownLanguageError, match="xx"):
        load_benchmark("xtd10", xtd10_root, langs=["xx"])


def test_unknown_benchmark_name_lists_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="xtd10, xm3600, multi30k"):
        load_benchmark("coco", tmp_path)


def test_missing_file_names_path_and_where_published(xtd10_root: Path) -> None:
    (xtd10_root / "MIC" / "test_1kcaptions_de.txt").unlink()
    with pytest.raises(
        BenchmarkNotFoundError, match=r"MIC/test_1kcaptions_de\.txt .*adobe-research.* in MIC/"
    ):
        load_xtd10(xtd10_root)


def test_missing_images_are_reported_with_their_source(xtd10_root: Path) -> None:
    (xtd10_root / "images" / COCO_NAMES[1]).unlink()
    with pytest.raises(BenchmarkNotFoundError, match=r"1 of 2 images missing.*val2014\.zip"):
        load_xtd10(xtd10_root)


def test_xtd10_images_may_stay_in_the_folders_coco_unpacks_to(xtd10_root: Path) -> None:
    """XTD10 names train2014 and val2014 images; each may be flat or in its archive's folder."""
    flat = [image.tobytes() for image in load_xtd10(xtd10_root).images]
    for name in COCO_NAMES:
        split = name.split("_")[1]
        (xtd10_root / "images" / split).mkdir()
        (xtd10_root / "images" / name).rename(xtd10_root / "images" / split / name)
    unpacked = load_xtd10(xtd10_root)
    assert list(unpacked.image_keys) == COCO_NAMES
    assert [image.tobytes() for image in unpacked.images] == flat
    (xtd10_root / "images" / "val2014" / COCO_NAMES[1]).unlink()
    with pytest.raises(BenchmarkNotFoundError) as raised:
        load_xtd10(xtd10_root)
    message = str(raised.value)
    assert "(e.g. " + str(xtd10_root / "images" / COCO_NAMES[1]) + ";" in message
    assert "archive's folder, " + str(xtd10_root / "images" / "val2014" / COCO_NAMES[1]) in message


def test_caption_file_shorter_than_image_list_names_both_files(xtd10_root: Path) -> None:
    _write_lines(xtd10_root / "MIC" / "test_1kcaptions_fr.txt", ["un chat"])
    with pytest.raises(BenchmarkFileError, match=r"test_1kcaptions_fr\.txt: 1 lines, fewer .*2"):
        load_xtd10(xtd10_root)


def test_an_image_listed_twice_names_both_lines(xtd10_root: Path, multi30k_root: Path) -> None:
    """A second copy of an image would be a wrong answer ranked above the right one."""
    _write_lines(xtd10_root / "XTD10" / "test_image_names.txt", [COCO_NAMES[0]] * 2)
    with pytest.raises(BenchmarkFileError, match=r"line 2: 'COCO_train2014_0+42\.jpg' already "
                       r"listed on line 1.*download it again"):  # fmt: skip
        load_xtd10(xtd10_root)
    splits = multi30k_root / "data" / "task1" / "image_splits" / "test_2016_flickr.txt"
    _write_lines(splits, [FLICKR_NAMES[0], FLICKR_NAMES[1], FLICKR_NAMES[1]])
    with pytest.raises(BenchmarkFileError, match=r"line 3: '10002456\.jpg' already listed"):
        load_multi30k(multi30k_root)


def test_caption_file_longer_than_image_list_is_an_error(xtd10_root: Path) -> None:
    _write_lines(xtd10_root / "MIC" / "test_1kcaptions_fr.txt", ["a", "b", "c"])
    with pytest.raises(BenchmarkFileError, match="more than the 2 images"):
        load_xtd10(xtd10_root)


def test_blank_caption_line_names_the_line(xtd10_root: Path) -> None:
    _write_lines(xtd10_root / "MIC" / "test_1kcaptions_fr.txt", ["", "un chien"])
    with pytest.raises(BenchmarkFileError, match="line 1 is blank"):
        load_xtd10(xtd10_root)


def test_invalid_utf8_names_file_and_line(xtd10_root: Path) -> None:
    path = xtd10_root / "XTD10" / "test_1kcaptions_ru.txt"
    path.write_bytes("кошка\n".encode() + b"\xff\xfe bad\n")
    with pytest.raises(
        BenchmarkFileError, match=r"test_1kcaptions_ru\.txt: invalid UTF-8 at line 2"
    ):
        load_xtd10(xtd10_root)


def test_crlf_and_unicode_line_separators_do_not_misalign(xtd10_root: Path) -> None:
    path = xtd10_root / "XTD10" / "test_1kcaptions_en.txt"
    path.write_bytes("a cat\u2028sitting\r\na dog\r\n".encode())
    en = load_xtd10(xtd10_root, langs=["en"]).captions_in("en")
    assert en["caption"].tolist() == ["a cat\u2028sitting", "a dog"]


def test_xm3600_keeps_every_caption_and_canonicalises_codes(xm3600_root: Path) -> None:
    bench = load_benchmark("xm3600", xm3600_root)
    assert list(bench.image_keys) == XM_KEYS
    assert bench.langs == ["en", "tl", "qu", "he"]
    tl = bench.captions_in("tl")
    assert tl["image_id"].tolist() == [0, 1, 1, 1]
    assert tl["caption_idx"].tolist() == [0, 0, 1, 2]
    assert bench.captions_in("en", first_only=True)["caption"].tolist() == ["a red car", "two dogs"]
    assert len(bench.captions) == 2 + 1 + 1 + 1 + 1 + 3 + 1 + 1
    assert bench.images[0].mode == "RGB"
    assert bench.parallel is False  # captions written per language: only the image ties them


def test_xm3600_langs_filter(xm3600_root: Path) -> None:
    bench = load_xm3600(xm3600_root, langs=["he", "fil"])
    assert bench.langs == ["he", "tl"]


def _rewrite_first_record(root: Path, edit) -> None:
    path = root / "captions.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[0])
    edit(record)
    lines[0] = json.dumps(record, ensure_ascii=False)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_xm3600_non_string_caption_names_line_key_and_language(xm3600_root: Path) -> None:
    _rewrite_first_record(xm3600_root, lambda r: r["en"]["caption"].append(3))
    with pytest.raises(
        BenchmarkFileError, match=r"line 1 \(image/key '000411001ff7dd4f', language 'en'\).*int"
    ):
        load_xm3600(xm3600_root)


def test_xm3600_unknown_language_key_is_an_error(xm3600_root: Path) -> None:
    _rewrite_first_record(xm3600_root, lambda r: r.update(xx=_xm_entry(["?"])))
    with pytest.raises(BenchmarkFileError, match=r"language 'xx'.*unknown language code"):
        load_xm3600(xm3600_root)


def test_xm3600_missing_key_bad_json_and_duplicate_keys(xm3600_root: Path) -> None:
    path = xm3600_root / "captions.jsonl"
    original = path.read_text(encoding="utf-8")
    _rewrite_first_record(xm3600_root, lambda r: r.pop("image/key"))
    with pytest.raises(BenchmarkFileError, match="line 1: expected an object with a string"):
        load_xm3600(xm3600_root)
    path.write_text(original + "{not json\n", encoding="utf-8")
    with pytest.raises(BenchmarkFileError, match="line 3: not valid JSON"):
        load_xm3600(xm3600_root)
    first = original.splitlines()[0]
    path.write_text(original + first + "\n", encoding="utf-8")
    with pytest.raises(BenchmarkFileError, match="line 3: image/key '000411001ff7dd4f' already"):
        load_xm3600(xm3600_root)


def test_xm3600_an_image_without_a_language_names_line_key_and_language(
    xm3600_root: Path,
) -> None:
    _rewrite_first_record(xm3600_root, lambda r: r.pop("quz"))
    with pytest.raises(BenchmarkFileError, match=r"line 1 \(image/key '000411001ff7dd4f'\): no "
                       r"captions in \['quz'\].*download captions\.jsonl again"):  # fmt: skip
        load_xm3600(xm3600_root)
    assert load_xm3600(xm3600_root, langs=["en", "he"]).langs == ["en", "he"]  # not studied


def test_xm3600_missing_captions_file_points_to_the_release(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkNotFoundError, match=r"captions\.jsonl.*crossmodal-3600"):
        load_xm3600(tmp_path)


def test_multi30k_reads_gzipped_and_plain_captions(multi30k_root: Path) -> None:
    raw = multi30k_root / "data" / "task1" / "raw"
    (raw / "test_2016_flickr.de").write_text("ein\nzwei\ndrei\n", encoding="utf-8")
    bench = load_multi30k(multi30k_root)
    assert list(bench.image_keys) == FLICKR_NAMES
    assert bench.langs == ["en", "de", "fr", "cs"]
    assert bench.captions_in("cs")["caption"].tolist()[2] == "cs caption 2"
    assert bench.captions_in("de")["caption"].tolist() == ["ein", "zwei", "drei"]
    assert bench.parallel is True


def test_multi30k_missing_caption_file_names_both_spellings(multi30k_root: Path) -> None:
    (multi30k_root / "data" / "task1" / "raw" / "test_2016_flickr.fr.gz").unlink()
    with pytest.raises(
        BenchmarkNotFoundError, match=r"test_2016_flickr\.fr \(or .*\.gz\).*multi30k"
    ):
        load_multi30k(multi30k_root)
    assert load_multi30k(multi30k_root, langs=["en"]).langs == ["en"]


def test_multi30k_short_gzipped_file_is_an_error(multi30k_root: Path) -> None:
    path = multi30k_root / "data" / "task1" / "raw" / "test_2016_flickr.en.gz"
    path.write_bytes(gzip.compress(b"only one\n"))
    with pytest.raises(BenchmarkFileError, match=r"test_2016_flickr\.en\.gz: 1 lines, fewer"):
        load_multi30k(multi30k_root)


def test_a_study_language_a_benchmark_lacks_is_left_out(
    xtd10_root: Path, multi30k_root: Path, xm3600_root: Path
) -> None:
    assert load_benchmark("xtd10", xtd10_root, langs=["en", "cs", "jp"]).langs == ["en", "ja"]
    study = ["en", "es", "it", "de"]  # Multi30K has en, de, fr, cs
    assert load_benchmark("multi30k", multi30k_root, langs=study).langs == ["en", "de"]
    assert load_benchmark("crossmodal-3600", xm3600_root, langs=["he", "de"]).langs == ["he"]
    with pytest.raises(ValueError, match=r"Multi30K has no captions in es, it; it offers cs, de"):
        load_benchmark("multi30k", multi30k_root, langs=["es", "it"])


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # cut short
        lambda data: b"<!DOCTYPE html><html>Not Found</html>",  # an error page saved as .gz
    ],
)
def test_a_damaged_gz_names_the_file_and_the_fix(multi30k_root: Path, damage) -> None:
    path = multi30k_root / "data" / "task1" / "raw" / "test_2016_flickr.de.gz"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(
        BenchmarkFileError,
        match=r"test_2016_flickr\.de\.gz: not a complete gzip file .*Download it again from "
        r".*multi30k",
    ):
        load_multi30k(multi30k_root)


@pytest.mark.parametrize("captions", [["a car", ""], ["   "], []])
def test_xm3600_blank_or_missing_captions_name_line_key_and_language(
    xm3600_root: Path, captions: list[str]
) -> None:
    _rewrite_first_record(xm3600_root, lambda r: r.update(en=_xm_entry(captions)))
    with pytest.raises(
        BenchmarkFileError,
        match=r"line 1 \(image/key '000411001ff7dd4f', language 'en'\): (caption \d is blank|no "
        r"captions).*download captions\.jsonl again",
    ):
        load_xm3600(xm3600_root)


def test_images_can_live_elsewhere(xm3600_root: Path, tmp_path: Path) -> None:
    moved = (xm3600_root / "images").rename(tmp_path / "xm_images")
    with pytest.raises(BenchmarkNotFoundError, match="2 of 2 images missing"):
        load_xm3600(xm3600_root)
    assert len(load_benchmark("xm3600", xm3600_root, image_dir=moved)) == 2


def test_eval_sets_cover_the_study_languages_each_benchmark_has(tmp_path: Path) -> None:
    """Through the data contract: XTD10 with its images elsewhere (data.benchmark_images),
    Multi30K without the study's ja and pt, both beside the generated set."""
    benchmarks = tmp_path / "benchmarks"
    xtd10 = xtd10_tree(benchmarks / "xtd10")
    multi30k_tree(benchmarks / "multi30k")
    coco = (xtd10 / "images").rename(tmp_path / "coco_train2014")
    raw = {
        "run": {"name": "b", "runs_dir": str(tmp_path / "runs"), "cache_dir": str(tmp_path)},
        "data": {
            "train_langs": ["en", "de"],
            "heldout_langs": ["ja", "pt"],
            "benchmark_root": str(benchmarks),
            "benchmark_images": {"xtd10": str(coco)},
            "synthetic": {"pretrain_images": 40, "finetune_images": 20, "eval_images": 10,
                          "shard_size": 100},
        },
        "eval": {"benchmarks": ["synthetic", "xtd10", "multi30k"]},
    }  # fmt: skip
    params = parse_params(raw)
    prepare_data(params, progress=False)
    sets = eval_sets(params)
    assert sets["xtd10"].langs == ["en", "de", "ja"] and sets["multi30k"].langs == ["en", "de"]
    coverage = benchmark_coverage(params, sets)
    assert coverage["group"].to_dict() == {"en": "seen", "de": "seen", "ja": "held-out",
                                           "pt": "held-out"}  # fmt: skip
    assert coverage["synthetic"].all()
    assert coverage["xtd10"].to_dict() == {"en": True, "de": True, "ja": True, "pt": False}
    assert coverage["multi30k"].to_dict() == {"en": True, "de": True, "ja": False, "pt": False}


def test_the_readme_layout_is_the_one_the_loaders_read(tmp_path: Path) -> None:
    """README, "The real study": the benchmark folders under data.benchmark_root and the files
    named in each are what the loaders read (the fixture trees are the published layouts)."""
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("```\ndata/benchmarks/\n", 1)[1].split("```", 1)[0]
    folders = re.findall(r"^  (\w+)/", block, flags=re.MULTILINE)
    assert folders == ["xtd10", "xm3600", "multi30k"]
    assert DataSection.model_fields["benchmark_root"].default == "data/benchmarks"
    named = {
        "xtd10": "XTD10/test_image_names.txt",
        "xm3600": "captions.jsonl",
        "multi30k": "data/task1/image_splits/test_2016_flickr.txt",
    }
    trees = {"xtd10": xtd10_tree, "xm3600": xm3600_tree, "multi30k": multi30k_tree}
    for name in folders:
        assert named[name] in block
        trees[name](tmp_path / name)
        assert (tmp_path / name / named[name]).is_file()
        assert (tmp_path / name / "images").is_dir()
        assert len(load_benchmark(name, tmp_path / name).images) > 0
