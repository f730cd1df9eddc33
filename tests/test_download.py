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
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image
from pydantic import ValidationError

from xlr.data.download import (
    LOG_FILE,
    PLAN_FILE,
    REPORT_FILE,
    SHARD_DIR,
    DownloadInputError,
    DownloadReport,
    Img2DatasetError,
    _fingerprint,
    download_images,
    summarise_download,
)
from xlr.data.download_settings import DownloadSection
from xlr.data.img2dataset_shards import (
    audit_shards,
    check_given_shards,
    drop_unfinished_shards,
    error_kind,
    load_downloaded,
)
from xlr.data.prepare import _given_laion_shards
from xlr.data.shards import Sample, read_shards, write_shards
from xlr.io import atomic_write_json, file_sha256

STALE_SHARD = "00007.tar"
GATED = "/gated/"
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
SEEN = ["en", "de", "fr"]  # the pool's languages (ja is sampled, but never downloaded)
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


class Server(NamedTuple):
    """The loopback image server: its base URL, its request log, the gate of ``/gated/`` and
    the requests still being answered after waiting at it."""

    url: str
    requests: list[str]
    gate: threading.Event
    waited: list[SimpleHTTPRequestHandler]


class _CountingHandler(SimpleHTTPRequestHandler):
    """Serves a folder quietly and logs each request's path, to tell a no-op re-run from a
    download. A path under ``/gated/`` is the file without that prefix, served once ``gate`` is
    set: a download stalls there while a test interrupts it."""

    requests: list[str] = []
    gate: threading.Event
    waited: list[SimpleHTTPRequestHandler] = []

    def do_GET(self) -> None:
        if not self.path.startswith(GATED):
            return super().do_GET()
        self.waited.append(self)
        try:
            self.gate.wait(timeout=120)
            self.path = self.path.removeprefix(GATED[:-1])
            super().do_GET()
        finally:
            self.waited.remove(self)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        type(self).requests.append(self.path)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def image_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The loopback server over the planted files (its gate open)."""
    root = tmp_path_factory.mktemp("www")
    for i, (width, height) in enumerate([(48, 40), (40, 64), (36, 36), (50, 34)]):
        (root / f"ok{i}.jpg").write_bytes(_jpeg(i, width, height))
    whole = _jpeg(99, 64, 64)
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "text.jpg").write_bytes(b"<html><body>Not an image</body></html>\n")
    gate = threading.Event()
    gate.set()
    attributes = {"requests": [], "gate": gate, "waited": []}
    handler = type("Handler", (_CountingHandler,), attributes)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    yield Server(url, handler.requests, gate, handler.waited)
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
    image_server: Server, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, DownloadReport]:
    """One real img2dataset run over the planted sample: (sample parquet, out_dir, report).

    ``out_dir`` starts as an older download, so the one (slow) run also tests replacement.
    """
    pytest.importorskip("img2dataset", reason="img2dataset is installed by `make env`")
    base_url = image_server.url
    root = tmp_path_factory.mktemp("download")
    sample = _write_sample(root / "sample.parquet", base_url, PLANTED)
    out_dir = _older_download(root / "images")
    report = download_images(sample, out_dir, SETTINGS, timeout=5, retries=0)
    return sample, out_dir, report


def test_planted_body_is_served_as_jpeg(image_server: Server) -> None:
    with urllib.request.urlopen(f"{image_server.url}/text.jpg", timeout=5) as response:
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
    samples = list(read_shards(out_dir / SHARD_DIR))
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
    pairs = load_downloaded(out_dir / SHARD_DIR, langs=SEEN)
    assert len(pairs) == 4
    assert sorted(pairs.captions["lang"]) == ["de", "en", "en", "fr"]
    assert pairs.images[0].mode == "RGB"
    translated = load_downloaded(out_dir / SHARD_DIR, langs=SEEN, eng_text=True)
    english = translated.captions_in("en")
    assert len(english) == 4  # two English captions plus the translations of de and fr
    assert english["caption"].str.startswith("english").sum() == 2
    # who wrote each: the page (""), or LAION's translation of a de or fr caption
    assert sorted(english["translated_by"]) == ["", "", "ENG TEXT", "ENG TEXT"]


def _webdataset_pool(shard_dir: Path) -> tuple[list[str], list[tuple], list[bytes]]:
    """The oracle: keys, caption records (``eng_text``) and image bytes, read sample by sample
    with webdataset, as load_downloaded once did."""
    keys, records, images = [], [], []
    for image_id, sample in enumerate(read_shards(shard_dir)):
        meta = sample["json"]
        keys.append(sample["key"])
        images.append(sample["jpg"])
        records.append((image_id, meta["LANGUAGE"], 0, sample["txt"], ""))
        if meta["LANGUAGE"] != "en" and meta.get("ENG TEXT"):
            records.append((image_id, "en", 0, meta["ENG TEXT"], "ENG TEXT"))
    return keys, records, images


def test_load_downloaded_equals_reading_every_sample(
    downloaded: tuple[Path, Path, DownloadReport],
) -> None:
    """The parquet files and tar headers give the pool reading every sample gave."""
    _, out_dir, _ = downloaded
    keys, records, images = _webdataset_pool(out_dir / SHARD_DIR)
    pool = load_downloaded(out_dir / SHARD_DIR, langs=SEEN, eng_text=True)
    assert list(pool.image_keys) == keys and len(keys) == 4
    assert [pool.images.read(i) for i in range(len(pool))] == images
    expected = pd.DataFrame(records, columns=list(pool.captions.columns))
    pd.testing.assert_frame_equal(pool.captions, expected)


def _read_bytes() -> int:
    """Bytes this process has read through read() calls so far (Linux's rchar)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.mark.skipif(not Path("/proc/self/io").is_file(), reason="reads Linux's /proc/self/io")
def test_load_downloaded_reads_no_image_bytes(tmp_path: Path) -> None:
    """At 900k images the tars are 20-35 GB: only their headers and the parquet files are read."""
    jpegs = [_jpeg(seed, 1200, 1200) for seed in range(3)]  # noise: about 1 MB each
    samples = [
        Sample(
            f"http://x/{i}.jpg",
            f"Bild {i}",
            jpg,
            1200,
            1200,
            {"LANGUAGE": "de", "ENG TEXT": f"picture {i}"},
        )
        for i, jpg in enumerate(jpegs)
    ]
    additional = pa.schema([("LANGUAGE", pa.string()), ("ENG TEXT", pa.string())])
    write_shards(samples, tmp_path, shard_size=2, additional=additional)
    before = _read_bytes()
    pool = load_downloaded(tmp_path, langs=SEEN, eng_text=True)
    read = _read_bytes() - before
    assert len(pool) == 3 and sorted(pool.captions["caption"]) == [
        "Bild 0", "Bild 1", "Bild 2", "picture 0", "picture 1", "picture 2",
    ]  # fmt: skip
    assert read < sum(map(len, jpegs)) / 10, (
        f"{read} bytes read for {sum(map(len, jpegs))} of images"
    )
    assert pool.images.read(2) == jpegs[2]


def test_the_pool_keeps_seen_languages_and_skips_null_or_unregistered_ones(
    tmp_path: Path,
) -> None:
    """Shards downloaded elsewhere straight from laion2B-multi hold null and unregistered
    LANGUAGE values and other languages: the pool leaves them out (as the sampler does) rather
    than stop, and the given-shards contract counts them by LANGUAGE as written."""
    codes = ["de", None, "und", "zh-Latn", "ko", "", "iw", "en"]
    samples = [
        Sample(f"http://x/{i}.jpg", f"c{i}", _jpeg(i, 24, 24), 24, 24,
               {"LANGUAGE": code, "ENG TEXT": f"e{i}"})
        for i, code in enumerate(codes)
    ]  # fmt: skip
    additional = pa.schema([("LANGUAGE", pa.string()), ("ENG TEXT", pa.string())])
    write_shards(samples, tmp_path, shard_size=3, additional=additional)
    pool = load_downloaded(tmp_path, langs=["de", "en", "he"], eng_text=True)
    assert len(pool) == 3 and len(pool.images) == 3
    assert pool.captions[pool.captions["translated_by"] == ""]["lang"].tolist() == [
        "de",
        "he",
        "en",
    ]
    assert pool.images.read(1) == samples[6].jpg  # the images follow their keys
    contract = _given_laion_shards(tmp_path, "laion2B-multi", ["de", "en", "he"])
    assert contract["skipped_languages"] == {"": 1, "ko": 1, "null": 1, "und": 1, "zh-Latn": 1}


def test_a_tar_cut_short_at_a_member_boundary_is_refused(tmp_path: Path) -> None:
    """A tar cut between two samples is a valid, shorter tar: its lost samples are found as
    listed downloaded in the parquet but absent from the tar."""
    samples = [Sample(f"http://x/{i}.jpg", f"c{i}", _jpeg(i, 24, 24), 24, 24,
                      {"LANGUAGE": "de"}) for i in range(4)]  # fmt: skip
    write_shards(samples, tmp_path, shard_size=2, additional=pa.schema([("LANGUAGE", pa.string())]))
    tar = tmp_path / "00001.tar"
    with tarfile.open(tar) as archive:
        members = [(m, archive.extractfile(m).read()) for m in archive.getmembers()]
    with tarfile.open(tar, "w", format=tarfile.USTAR_FORMAT) as archive:
        for member, data in members:
            if not member.name.startswith("000011."):  # the shard's last sample is lost
                archive.addfile(member, io.BytesIO(data))
    with pytest.raises(ValueError, match=r"\['000011'\] \(1 in all\) are listed as downloaded"):
        load_downloaded(tmp_path, langs=SEEN)


def test_a_key_in_two_shards_is_refused_naming_both(tmp_path: Path) -> None:
    """Shards of two runs in one folder repeat keys (they are positions): which image or text a
    key names would depend on the order the shards are read in, so both tars are named."""
    samples = [Sample(f"http://x/{i}.jpg", f"c{i}", _jpeg(i, 24, 24), 24, 24, {}) for i in range(6)]
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        write_shards(samples, folder, shard_size=2, additional=pa.schema([]))
    (second / "00002.parquet").write_bytes((second / "00000.parquet").read_bytes())
    with pytest.raises(
        ValueError, match=r"'000000' is downloaded in both .*00000.parquet and .*00002.parquet"
    ):
        load_downloaded(second, langs=SEEN)
    (first / "00003.tar").write_bytes((first / "00000.tar").read_bytes())
    with pytest.raises(ValueError, match=r"image key '000000' is in both 00000.tar and 00003.tar"):
        load_downloaded(first, langs=SEEN)


def test_rerun_with_same_inputs_is_a_noop(
    downloaded: tuple[Path, Path, DownloadReport], image_server: Server
) -> None:
    sample, out_dir, report = downloaded
    requests = list(image_server.requests)
    before = {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()}
    cluster = SETTINGS.model_copy(update={"processes": 2, "threads": 8})  # how, not what
    assert download_images(sample, out_dir, cluster, timeout=5) == report
    assert image_server.requests == requests
    assert {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()} == before


def test_older_download_was_replaced_whole(downloaded: tuple[Path, Path, DownloadReport]):
    _, out_dir, report = downloaded
    assert report.fingerprint != "older"
    assert not (out_dir / STALE_SHARD).exists()
    tars = sorted(p.name for p in (out_dir / SHARD_DIR).glob("*.tar"))
    assert tars == ["00000.tar", "00001.tar", "00002.tar"]
    assert sorted(p.name for p in out_dir.parent.iterdir()) == ["images", "sample.parquet"]


def test_unfinished_shard_is_dropped_and_unaccounted(
    downloaded: tuple[Path, Path, DownloadReport], tmp_path: Path
) -> None:
    sample, finished, report = downloaded
    shard_dir = tmp_path / "images"
    shutil.copytree(finished / SHARD_DIR, shard_dir)
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
    assert len(load_downloaded(shard_dir, langs=SEEN)) == 3


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


def _shard_files(shard_dir: Path, shard: str) -> dict[str, tuple[int, str]]:
    """(mtime_ns, sha256) of one shard's three files."""
    files = [shard_dir / f"{shard}{suffix}" for suffix in (".tar", ".parquet", "_stats.json")]
    return {p.name: (p.stat().st_mtime_ns, file_sha256(p)) for p in files}


def _wait_for_stats(shard_dir: Path, shards: list[str], seconds: float = 120) -> None:
    """Until img2dataset has written (whole) the stats of ``shards``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            for shard in shards:
                json.loads((shard_dir / f"{shard}_stats.json").read_text(encoding="utf-8"))
            return
        except (OSError, ValueError):
            time.sleep(0.2)
    raise TimeoutError(f"img2dataset finished no shards {shards} in {shard_dir} in {seconds} s")


def test_killed_download_resumes_without_loss_or_duplicates(
    image_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kill img2dataset (SIGKILL, as a lost job would) while shard 2 waits on the server and
    after shards 0 and 1 are written, truncate shard 1's stats (as a kill inside img2dataset's
    write_stats would), and run again: shard 0 is kept byte for byte and not fetched again,
    shards 1 and 2 are downloaded, and every row ends in exactly one shard."""
    pytest.importorskip("img2dataset", reason="img2dataset is installed by `make env`")
    planted = [  # a unique URL per row; shard 2's rows (6-8) wait behind the gate
        (lang, f"{'gated/' if i >= 6 else ''}{name}?row={i}")
        for i, (lang, name) in enumerate(PLANTED)
    ]
    sample = _write_sample(tmp_path / "sample.parquet", image_server.url, planted)
    out_dir, partial = tmp_path / "images", tmp_path / "images.partial"
    children: list[subprocess.Popen[bytes]] = []

    class RecordedPopen(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[call-overload]
            children.append(self)

    monkeypatch.setattr("xlr.data.download.subprocess.Popen", RecordedPopen)
    errors: list[BaseException] = []

    def first_run() -> None:
        try:
            download_images(sample, out_dir, SETTINGS, timeout=5)
        except BaseException as err:  # noqa: BLE001 - the test inspects it
            errors.append(err)

    image_server.gate.clear()
    try:
        run = threading.Thread(target=first_run)
        run.start()
        _wait_for_stats(partial / SHARD_DIR, ["00000", "00001"])
        os.killpg(children[0].pid, signal.SIGKILL)
        run.join(timeout=60)
    finally:
        image_server.gate.set()
    while image_server.waited:  # the killed run's requests, answered to closed sockets
        time.sleep(0.05)
    assert len(errors) == 1 and isinstance(errors[0], Img2DatasetError)
    assert "running again resumes" in str(errors[0])
    assert not out_dir.exists()  # nothing half-done where the study reads
    shard_dir = partial / SHARD_DIR
    assert not (shard_dir / "00002_stats.json").exists()
    kept = _shard_files(shard_dir, "00000")
    stats = shard_dir / "00001_stats.json"
    stats.write_bytes(stats.read_bytes()[:40])
    requests_before = len(image_server.requests)

    report = download_images(sample, out_dir, SETTINGS, timeout=5)

    assert not partial.exists()
    shard_dir = out_dir / SHARD_DIR
    assert _shard_files(shard_dir, "00000") == kept
    assert report.resumed_shards == 1 and report.shards == ["00000", "00001", "00002"]
    assert report.totals == {
        "success": 4, "failed_to_download": 3, "failed_to_resize": 2, "unaccounted": 0,
    }  # fmt: skip
    assert report.per_language == {
        lang: {**counts, "unaccounted": 0} for lang, counts in EXPECTED.items()
    }
    per_shard = [json.loads(p.read_text()) for p in sorted(shard_dir.glob("*_stats.json"))]
    assert [s["count"] for s in per_shard] == [3, 3, 3]
    assert sum(s["successes"] for s in per_shard) == report.totals["success"]
    urls = pd.read_parquet(sample)["URL"]
    served = [url for url, (_, name) in zip(urls, planted, strict=True) if "ok" in name]
    assert sorted(s["json"]["url"] for s in read_shards(shard_dir)) == sorted(served)
    again = Counter(p.split("?row=")[1] for p in image_server.requests[requests_before:])
    assert sorted(again) == ["3", "4", "5", "6", "7", "8"]  # shards 1 and 2, not shard 0
    assert all(n == 1 for n in again.values())
    log = (out_dir / LOG_FILE).read_text(encoding="utf-8")
    assert log.count("--- img2dataset run started") == 2


def test_audit_tells_finished_shards_from_unfinished(
    downloaded: tuple[Path, Path, DownloadReport], tmp_path: Path
) -> None:
    _, out_dir, _ = downloaded
    shard_dir = tmp_path / "shards"
    shutil.copytree(out_dir / SHARD_DIR, shard_dir)
    (shard_dir / "00001_stats.json").write_text('{"count": 3, "succ')  # cut mid-write
    (shard_dir / "00002.parquet").unlink()
    finished, unfinished = audit_shards(shard_dir)
    assert finished == ["00000"]
    assert unfinished["00001"].startswith("00001_stats.json is not readable JSON")
    assert unfinished["00002"] == "00002.parquet is missing"
    assert drop_unfinished_shards(shard_dir) == ["00000"]
    assert sorted(p.name for p in shard_dir.iterdir()) == [
        "00000.parquet", "00000.tar", "00000_stats.json",
    ]  # fmt: skip


FAKE_SPARK = """
class _Builder:
    def master(self, url):
        self.url = url
        return self

    def appName(self, name):
        return self

    def getOrCreate(self):
        SparkSession.active_master = self.url


class SparkSession:
    active_master = None
    builder = _Builder()
"""
FAKE_RAY = """
address = None


def init(address=None):
    globals()["address"] = address
"""
FAKE_IMG2DATASET = '''
import json
import sys
from pathlib import Path


def download(**arguments):
    """Record the call and what cluster the process had joined by then; download nothing."""
    Path(arguments["output_folder"]).mkdir(parents=True)
    spark = sys.modules.get("pyspark.sql")
    ray = sys.modules.get("ray")
    joined = {
        "spark_master": spark.SparkSession.active_master if spark else None,
        "ray_address": ray.address if ray else None,
    }
    call = {"arguments": arguments, "joined": joined}
    (Path(arguments["output_folder"]).parent / "fake_call.json").write_text(json.dumps(call))
'''


@pytest.mark.parametrize(
    ("distributor", "key", "address"),
    [("pyspark", "spark_master", "spark://head:7077"), ("ray", "ray_address", "ray://head:10001")],
)
def test_cluster_address_reaches_img2datasets_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, distributor: str, key: str, address: str
) -> None:
    """The child joins the configured cluster before img2dataset runs, in img2dataset's own
    process, which is where its distributors look for a session. pyspark, ray and img2dataset
    are stand-ins on PYTHONPATH: no cluster starts."""
    fakes = tmp_path / "fakes"
    (fakes / "pyspark").mkdir(parents=True)
    (fakes / "pyspark" / "__init__.py").write_text("")
    (fakes / "pyspark" / "sql.py").write_text(FAKE_SPARK)
    (fakes / "ray.py").write_text(FAKE_RAY)
    (fakes / "img2dataset").mkdir()
    (fakes / "img2dataset" / "__init__.py").write_text(FAKE_IMG2DATASET)
    monkeypatch.syspath_prepend(str(fakes))  # so the distributor's package is found here too
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(fakes), *sys.path]))
    sample = _write_sample(tmp_path / "sample.parquet", "http://127.0.0.1:9", PLANTED)
    settings = SETTINGS.model_copy(update={"distributor": distributor, key: address})
    report = download_images(sample, tmp_path / "images", settings)
    call = json.loads((tmp_path / "images" / "fake_call.json").read_text())
    assert call["joined"] == {"spark_master": None, "ray_address": None} | {key: address}
    assert call["arguments"]["distributor"] == distributor
    assert call["arguments"]["incremental_mode"] == "incremental"
    assert call["arguments"]["output_folder"] == str(tmp_path / "images.partial" / SHARD_DIR)
    assert report.totals["unaccounted"] == len(PLANTED)  # the stand-in wrote no shard


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"spark_master": "spark://head:7077"}, "download.spark_master is set but"),
        ({"distributor": "pyspark", "ray_address": "auto"}, "set distributor: ray"),
    ],
)
def test_cluster_address_needs_its_distributor(update: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DownloadSection(**update)


def test_given_shards_are_checked_not_repaired(
    downloaded: tuple[Path, Path, DownloadReport], tmp_path: Path
) -> None:
    """``data.laion.shards``: a folder downloaded elsewhere is used as is or refused, naming the
    folder, the shard and the fix; nothing in it is deleted."""
    _, out_dir, _ = downloaded
    given = tmp_path / "given"
    shutil.copytree(out_dir / SHARD_DIR, given)
    assert check_given_shards(given) == ["00000", "00001", "00002"]
    with pytest.raises(FileNotFoundError, match=r"nowhere: no such folder \(data\.laion\.shards\)"):
        check_given_shards(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: no shards \(\*\.tar"):
        check_given_shards(tmp_path / "empty")
    (given / "00002_stats.json").unlink()
    with pytest.raises(ValueError, match=r"given: unfinished shards .*shard 00002: no 00002_stats"):
        check_given_shards(given)
    assert (given / "00002.tar").exists()
    (given / "00002.tar").unlink()
    (given / "00002.parquet").unlink()
    pd.read_parquet(given / "00001.parquet").drop(columns=["LANGUAGE"]).to_parquet(
        given / "00001.parquet", index=False
    )
    with pytest.raises(ValueError, match=r"00001\.parquet: no LANGUAGE column"):
        check_given_shards(given)


def test_unfinished_download_of_another_sample_is_kept(
    downloaded: tuple[Path, Path, DownloadReport], tmp_path: Path
) -> None:
    """An interrupted download is hours of work: another sample or setting never overwrites
    it; the error names the folder and both ways out."""
    sample, _, _ = downloaded
    partial = tmp_path / "images.partial"
    partial.mkdir()
    plan = {"fingerprint": "other", "sample": "older.parquet", "version": "1", "arguments": {}}
    atomic_write_json(plan, partial / PLAN_FILE)
    (partial / "kept.txt").write_text("hours of shards")
    with pytest.raises(FileExistsError, match=r"images\.partial holds an unfinished download of"):
        download_images(sample, tmp_path / "images", SETTINGS)
    assert (partial / "kept.txt").read_text() == "hours of shards"
    assert not (tmp_path / "images").exists()


def test_download_made_before_the_shards_folder_is_gathered_not_refetched(
    downloaded: tuple[Path, Path, DownloadReport],
    image_server: Server,
    tmp_path: Path,
) -> None:
    sample, out_dir, report = downloaded
    flat = tmp_path / "images"
    shutil.copytree(out_dir, flat)
    for path in (flat / SHARD_DIR).iterdir():
        path.rename(flat / path.name)
    (flat / SHARD_DIR).rmdir()
    requests = list(image_server.requests)
    assert download_images(sample, flat, SETTINGS, timeout=5) == report
    assert image_server.requests == requests
    assert sorted(p.name for p in (flat / SHARD_DIR).glob("*.tar")) == [
        "00000.tar", "00001.tar", "00002.tar",
    ]  # fmt: skip
    assert not list(flat.glob("*.tar")) and len(load_downloaded(flat / SHARD_DIR, langs=SEEN)) == 4
