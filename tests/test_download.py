"""The real img2dataset download, offline: images served from 127.0.0.1, failures planted.

The server holds real JPEGs, a truncated JPEG (its first half), a text body named ``.jpg`` and
served as ``image/jpeg``; two URLs point at files that do not exist (404). img2dataset counts a
404 as ``failed_to_download`` and both undecodable bodies as ``failed_to_resize`` with "Image
decoding error" (OpenCV's ``imdecode`` returns nothing for them); the tests assert exactly that.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import shutil
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from xlr.config import DownloadSection
from xlr.data.download import (
    REPORT_FILE,
    DownloadInputError,
    DownloadReport,
    _fingerprint,
    download_images,
    error_kind,
    load_downloaded,
    summarise_download,
)
from xlr.data.shards import read_shards
from xlr.io import atomic_write_json

STALE_SHARD = "00007.tar"
SETTINGS = DownloadSection(processes=1, threads=4, image_size=32, shard_size=3)
# (LANGUAGE, served file): "missing.jpg" is never written, so the server answers 404.
PLANTED = [
    ("en", "ok0.jpg"),
    ("de", "ok1.jpg"),
    ("en", "missing.jpg"),
    ("fr", "text.jpg"),
    ("en", "ok2.jpg"),
    ("de", "truncated.jpg"),
    ("fr", "ok3.jpg"),
    ("ja", "missing.jpg"),
    (None, "missing.jpg"),
]
EXPECTED = {
    "en": {"rows": 3, "success": 2, "failed_to_download": 1, "failed_to_resize": 0},
    "de": {"rows": 2, "success": 1, "failed_to_download": 0, "failed_to_resize": 1},
    "fr": {"rows": 2, "success": 1, "failed_to_download": 0, "failed_to_resize": 1},
    "ja": {"rows": 1, "success": 0, "failed_to_download": 1, "failed_to_resize": 0},
    "unknown": {"rows": 1, "success": 0, "failed_to_download": 1, "failed_to_resize": 0},
}


def _jpeg(seed: int, width: int, height: int) -> bytes:
    """Noise, so that half the file is half the entropy-coded data, not padding."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


class _CountingHandler(SimpleHTTPRequestHandler):
    """Serves a folder quietly and counts requests, to tell a no-op re-run from a download."""

    requests: list[str] = []

    def log_message(self, format: str, *args: object) -> None:
        type(self).requests.append(self.path)


@pytest.fixture(scope="module")
def image_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    """Base URL of a loopback server over the planted files, and its request log."""
    root = tmp_path_factory.mktemp("www")
    for i, (width, height) in enumerate([(48, 40), (40, 64), (36, 36), (50, 34)]):
        (root / f"ok{i}.jpg").write_bytes(_jpeg(i, width, height))
    whole = _jpeg(99, 64, 64)
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "text.jpg").write_bytes(b"<html><body>Not an image</body></html>\n")
    handler = type("Handler", (_CountingHandler,), {"requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler.requests
    server.shutdown()
    server.server_close()
    thread.join()


def _write_sample(path: Path, base_url: str, planted: list[tuple[str | None, str]]) -> Path:
    """A LAION-schema parquet (the columns xlr.data.laion writes) over the planted files."""
    n = len(planted)
    pd.DataFrame(
        {
            "URL": [f"{base_url}/{name}" for _, name in planted],
            "TEXT": [f"caption {i} {name}" for i, (_, name) in enumerate(planted)],
            "LANGUAGE": [lang for lang, _ in planted],
            "similarity": np.linspace(0.3, 0.4, n),
            "punsafe": np.linspace(0.0, 0.1, n),
            "pwatermark": np.linspace(0.2, 0.3, n),
            "WIDTH": [64] * n,
            "HEIGHT": [64] * n,
            "ENG TEXT": [f"english {i}" for i in range(n)],
        }
    ).to_parquet(path, index=False)
    return path


def _older_download(out_dir: Path) -> Path:
    """A finished download of some other sample, which the next download must replace whole."""
    out_dir.mkdir()
    (out_dir / STALE_SHARD).write_bytes(b"")
    older = DownloadReport("older", "old.parquet", 0, {}, {}, {}, [], {}, 0.0)
    atomic_write_json(asdict(older), out_dir / REPORT_FILE)
    return out_dir


@pytest.fixture(scope="module")
def downloaded(
    image_server: tuple[str, list[str]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, DownloadReport]:
    """One real img2dataset run over the planted sample: (sample parquet, out_dir, report).

    ``out_dir`` starts as an older download, so the one (slow) run also tests replacement.
    """
    pytest.importorskip("img2dataset", reason="img2dataset is installed by `make env`")
    base_url, _ = image_server
    root = tmp_path_factory.mktemp("download")
    sample = _write_sample(root / "sample.parquet", base_url, PLANTED)
    out_dir = _older_download(root / "images")
    report = download_images(sample, out_dir, SETTINGS, timeout=5, retries=0)
    return sample, out_dir, report


def test_planted_body_is_served_as_jpeg(image_server: tuple[str, list[str]]) -> None:
    with urllib.request.urlopen(f"{image_server[0]}/text.jpg", timeout=5) as response:
        assert response.headers["Content-Type"] == "image/jpeg"


def test_failures_counted_per_language_exactly(downloaded: tuple[Path, Path, DownloadReport]):
    _, _, report = downloaded
    assert report.rows == len(PLANTED)
    assert report.totals == {
        "success": 4,
        "failed_to_download": 3,
        "failed_to_resize": 2,
        "unaccounted": 0,
    }
    assert report.per_language == {
        lang: {**counts, "unaccounted": 0} for lang, counts in EXPECTED.items()
    }
    assert report.error_kinds == {"HTTP 404": 3, "Image decoding error": 2}
    assert report.shards == ["00000", "00001", "00002"]
    assert report.failed == 5
    arguments = report.img2dataset["arguments"]
    assert arguments["save_additional_columns"] == [
        "LANGUAGE", "ENG TEXT", "similarity", "punsafe", "pwatermark",
    ]  # fmt: skip
    assert arguments["output_format"] == "webdataset"


def test_report_file_and_table(downloaded: tuple[Path, Path, DownloadReport]) -> None:
    _, out_dir, report = downloaded
    assert DownloadReport.read(out_dir / REPORT_FILE) == report
    table = report.to_frame()
    assert table.loc["en", "success_rate"] == pytest.approx(2 / 3)
    assert table["rows"].sum() == len(PLANTED)


def test_successes_decode_and_keep_laion_columns(
    downloaded: tuple[Path, Path, DownloadReport],
) -> None:
    sample, out_dir, _ = downloaded
    rows = pd.read_parquet(sample).set_index("URL")
    samples = list(read_shards(out_dir))
    assert sorted(Path(s["json"]["url"]).name for s in samples) == [f"ok{i}.jpg" for i in range(4)]
    for s in samples:
        meta, row = s["json"], rows.loc[s["json"]["url"]]
        with Image.open(io.BytesIO(s["jpg"])) as img:
            assert min(img.size) == SETTINGS.image_size  # keep_ratio: the short side
        assert s["txt"] == row["TEXT"]
        assert meta["LANGUAGE"] == row["LANGUAGE"]
        assert meta["ENG TEXT"] == row["ENG TEXT"]
        for score in ("similarity", "punsafe", "pwatermark"):
            assert meta[score] == pytest.approx(row[score])


def test_load_downloaded_as_image_text_set(downloaded: tuple[Path, Path, DownloadReport]) -> None:
    _, out_dir, _ = downloaded
    pairs = load_downloaded(out_dir)
    assert len(pairs) == 4
    assert sorted(pairs.captions["lang"]) == ["de", "en", "en", "fr"]
    assert pairs.images[0].mode == "RGB"
    translated = load_downloaded(out_dir, eng_text=True)
    english = translated.captions_in("en")
    assert len(english) == 4  # two English captions plus the translations of de and fr
    assert english["caption"].str.startswith("english").sum() == 2


def test_rerun_with_same_inputs_is_a_noop(
    downloaded: tuple[Path, Path, DownloadReport], image_server: tuple[str, list[str]]
) -> None:
    sample, out_dir, report = downloaded
    requests = list(image_server[1])
    before = {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()}
    cluster = SETTINGS.model_copy(update={"processes": 2, "threads": 8})  # how, not what
    assert download_images(sample, out_dir, cluster, timeout=5) == report
    assert image_server[1] == requests
    assert {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()} == before


def test_older_download_was_replaced_whole(downloaded: tuple[Path, Path, DownloadReport]):
    _, out_dir, report = downloaded
    assert report.fingerprint != "older"
    assert not (out_dir / STALE_SHARD).exists()
    assert sorted(p.name for p in out_dir.glob("*.tar")) == ["00000.tar", "00001.tar", "00002.tar"]
    assert sorted(p.name for p in out_dir.parent.iterdir()) == ["images", "sample.parquet"]


def test_unfinished_shard_is_dropped_and_unaccounted(
    downloaded: tuple[Path, Path, DownloadReport], tmp_path: Path
) -> None:
    sample, finished, report = downloaded
    shard_dir = tmp_path / "images"
    shutil.copytree(finished, shard_dir)
    (shard_dir / "00001_stats.json").unlink()  # as if shard 1 crashed on every retry
    partial = summarise_download(
        shard_dir, sample, fingerprint="f", img2dataset=report.img2dataset, seconds=0.0
    )
    assert not (shard_dir / "00001.tar").exists() and not (shard_dir / "00001.parquet").exists()
    assert partial.shards == ["00000", "00002"]
    # shard 1 held rows 3-5: fr text.jpg, en ok2.jpg, de truncated.jpg
    assert partial.totals == {
        "success": 3,
        "failed_to_download": 3,
        "failed_to_resize": 0,
        "unaccounted": 3,
    }
    assert {lang: c["unaccounted"] for lang, c in partial.per_language.items()} == {
        "en": 1, "de": 1, "fr": 1, "ja": 0, "unknown": 0,
    }  # fmt: skip
    assert len(load_downloaded(shard_dir)) == 3


def test_foreign_directory_is_not_replaced(
    downloaded: tuple[Path, Path, DownloadReport], tmp_path: Path
) -> None:
    sample, _, _ = downloaded
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a finished download"):
        download_images(sample, tmp_path, SETTINGS)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("column", ["URL", "TEXT"])
def test_sample_without_url_or_text_names_file_and_column(tmp_path: Path, column: str) -> None:
    sample = _write_sample(tmp_path / "sample.parquet", "http://127.0.0.1:9", PLANTED[:2])
    pd.read_parquet(sample).drop(columns=[column]).to_parquet(sample, index=False)
    with pytest.raises(DownloadInputError, match=rf"sample\.parquet: missing column '{column}'"):
        download_images(sample, tmp_path / "images", SETTINGS)
    assert not (tmp_path / "images").exists()


def test_missing_distributor_package_is_named(
    downloaded: tuple[Path, Path, DownloadReport], tmp_path: Path
) -> None:
    if importlib.util.find_spec("pyspark") is not None:
        pytest.skip("pyspark is installed here")
    sample, _, _ = downloaded
    spark = SETTINGS.model_copy(update={"distributor": "pyspark"})
    with pytest.raises(ImportError, match="pip install pyspark"):
        download_images(sample, tmp_path / "images", spark)


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("HTTP Error 404: File not found", "HTTP 404"),
        ("HTTP Error 404: Not Found", "HTTP 404"),
        (
            "<urlopen error [Errno 111] Connection refused>",
            "<urlopen error [Errno 111] Connection refused>",
        ),
        ("x" * 500, "x" * 120),
    ],
)
def test_error_kind_folds_http_reasons(message: str, kind: str) -> None:
    assert error_kind(message) == kind


def test_download_fingerprint_is_stable(tmp_path: Path) -> None:
    """A finished download is reused only while its fingerprint matches: a change in how it is
    computed would silently re-download (hours at LAION scale, and dead links change the set).
    How it runs (processes) is left out; what it fetches is not."""
    sample = tmp_path / "sample.parquet"
    sample.write_bytes(b"url,text\nhttp://x/1.jpg,a cat\n")
    arguments = {"image_size": 224, "processes_count": 4, "resize_mode": "border"}
    expected = "b6456d903c4120eed3afadea7ebee548b81ed93819cb1e4743d19d2eb0bd28f5"
    assert _fingerprint(sample, arguments, "1.47.0") == expected
    assert _fingerprint(sample, arguments | {"processes_count": 16}, "1.47.0") == expected
    assert _fingerprint(sample, arguments | {"image_size": 256}, "1.47.0") != expected
