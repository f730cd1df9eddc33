"""LAION inputs: strings handed to DuckDB as they are (remote URLs, globs), the column mapping of
each known release schema, input hashing by size, DuckDB settings, and errors that name the
file, the field and the fix."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest
from laion_files import laion_row, write_rows
from pydantic import ValidationError

from xlr.data.laion import (
    LaionColumns,
    LaionEngine,
    LaionFilters,
    LaionInputs,
    LaionQuotas,
    LaionSamplingError,
    describe_inputs,
    is_remote,
    sample_laion,
)
from xlr.data.laion.files import _schema, enable_remote, list_inputs

QUOTAS = LaionQuotas(counts={"de": 3, "fr": 2, "en": 1})
ROWS = [
    laion_row("u1", "Ein Hund"),
    laion_row("u2", "Eine Katze"),
    laion_row("u3", "ein  HUND"),
    laion_row("u4", "Kaum passend", similarity=0.1),
    laion_row("u5", "Un chien", "fr"),
    laion_row("u6", "Un chat", "fr", WIDTH=16),
    laion_row("u7", "A dog", "en"),
]
# Re-LAION research-safe names (see xlr.data.laion.inputs.KNOWN_SCHEMAS), with the extra
# columns those files carry.
RELAION = {"URL": "url", "TEXT": "caption", "LANGUAGE": "language", "WIDTH": "original_width",
           "HEIGHT": "original_height", "hash": "key"}  # fmt: skip


def test_remote_and_glob_strings_are_kept_as_given(tmp_path: Path) -> None:
    remote = ["s3://laion/relaion2B-multi/*.parquet", "hf://datasets/laion/relaion2B-en/"]
    inputs = LaionInputs(metadata=remote, english=["data/en/part-*.parquet", "/abs/en.parquet"])
    assert inputs.metadata == remote
    anchored = inputs.resolved(tmp_path)
    assert anchored.metadata == remote
    assert anchored.english == [str(tmp_path / "data/en/part-*.parquet"), "/abs/en.parquet"]
    assert all(is_remote(entry) for entry in remote)
    assert not is_remote("data/laion/x.parquet") and not is_remote("C:/x.parquet")
    assert LaionInputs(metadata=[tmp_path / "a.parquet"]).metadata == [str(tmp_path / "a.parquet")]


def test_remote_inputs_need_httpfs_and_say_how_to_get_it(tmp_path: Path) -> None:
    inputs = LaionInputs(metadata=["s3://laion/relaion2B-multi/*.parquet"])
    with duckdb.connect() as con:
        # No extension installed and a repository that does not exist: offline, deterministically.
        con.execute("SET extension_directory = ?", [str(tmp_path / "extensions")])
        con.execute("SET custom_extension_repository = ?", [str(tmp_path / "nowhere")])
        enable_remote(con, LaionInputs(metadata=[str(tmp_path / "local.parquet")]))  # not needed
        with pytest.raises(LaionSamplingError) as raised:
            enable_remote(con, inputs)
    message = str(raised.value)
    assert message.startswith("s3://laion/relaion2B-multi/*.parquet: remote inputs need")
    assert "httpfs" in message and "install_extension('httpfs')" in message


class RecordedSql:
    """A DuckDB connection that records its statements (httpfs cannot be installed offline);
    ``s3_secrets`` is what ``duckdb_secrets()`` counts, ``refuse`` a statement start it fails."""

    def __init__(self, s3_secrets: int = 0, refuse: str | None = None) -> None:
        self.statements: list[str] = []
        self.s3_secrets = s3_secrets
        self.refuse = refuse

    def execute(self, sql: str, parameters: object = None) -> RecordedSql:
        if self.refuse is not None and sql.startswith(self.refuse):
            raise duckdb.IOException('Failed to download extension "aws"\nmore')
        self.statements.append(sql)
        return self

    def fetchone(self) -> tuple[int]:
        return (self.s3_secrets,)


def test_hf_inputs_get_the_hub_token_as_a_duckdb_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """DuckDB reads a gated dataset only with a secret of type huggingface: the token that
    huggingface_hub finds becomes one (quoted as SQL data); no token, or no hf:// input, no
    secret."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    for variable in ("HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):  # get_token reads them too
        monkeypatch.delenv(variable, raising=False)
    hub = LaionInputs(metadata=["hf://datasets/laion/relaion2B-multi-research-safe/"])
    monkeypatch.setenv("HF_TOKEN", "hf_it's")
    con = RecordedSql()
    enable_remote(con, hub)  # type: ignore[arg-type]
    secret = "CREATE OR REPLACE TEMPORARY SECRET xlr_hf (TYPE huggingface, TOKEN 'hf_it''s')"
    assert con.statements == ["LOAD httpfs", secret]
    assert len(duckdb.connect().extract_statements(secret)) == 1  # one statement, the token data
    con = RecordedSql(s3_secrets=1)
    enable_remote(con, LaionInputs(metadata=["s3://laion/relaion2B-multi/*.parquet"]))  # type: ignore[arg-type]
    assert "huggingface" not in " ".join(con.statements)
    monkeypatch.delenv("HF_TOKEN")
    (tmp_path / "token").write_text("hf_from_login\n")  # what hf auth login writes
    con = RecordedSql()
    enable_remote(con, hub)  # type: ignore[arg-type]
    assert con.statements[1].endswith("TOKEN 'hf_from_login')")
    (tmp_path / "token").unlink()
    con = RecordedSql()
    enable_remote(con, hub)  # type: ignore[arg-type]
    assert con.statements == ["LOAD httpfs"]  # public datasets read without a token


def test_s3_inputs_get_the_aws_credential_chain_unless_the_user_has_a_secret() -> None:
    """A private bucket needs signed requests: s3:// (and s3a://) inputs get a credential_chain
    secret, none where the user has an S3 secret of their own, and a warning naming the input
    and the fix where DuckDB cannot make one (no aws extension, no credentials)."""
    s3 = LaionInputs(metadata=["s3a://bucket/multi/*.parquet"], english=["s3://bucket/en/"])
    chain = "CREATE OR REPLACE TEMPORARY SECRET xlr_s3 (TYPE s3, PROVIDER credential_chain)"
    con = RecordedSql()
    enable_remote(con, s3)  # type: ignore[arg-type]
    assert con.statements[0] == "LOAD httpfs" and con.statements[-1] == chain
    assert len(duckdb.connect().extract_statements(chain)) == 1
    con = RecordedSql(s3_secrets=1)
    enable_remote(con, s3)  # type: ignore[arg-type]
    assert chain not in con.statements  # the user's own secret is left to do its work
    con = RecordedSql(refuse="CREATE OR REPLACE TEMPORARY SECRET xlr_s3")
    with pytest.warns(UserWarning) as warned:
        enable_remote(con, s3)  # type: ignore[arg-type]
    message = str(warned[0].message)
    assert message.startswith("s3://bucket/en/: no AWS credentials for DuckDB (Failed to")
    assert "install_extension('aws')" in message and "read anonymously" in message
    con = RecordedSql()
    enable_remote(con, LaionInputs(metadata=["https://host/x.parquet", "gs://b/x.parquet"]))  # type: ignore[arg-type]
    assert con.statements == ["LOAD httpfs"]  # no S3 input, no S3 secret


def test_an_unreadable_hub_file_says_how_to_get_access() -> None:
    """The Hub refuses a gated file without a token (HTTP 401): the message names the file and
    what gives access."""

    class Refused(RecordedSql):
        def execute(self, sql: str, parameters: object = None) -> RecordedSql:
            raise duckdb.HTTPException("HTTP GET error on '...' (HTTP 401)")

    file = "hf://datasets/laion/relaion2B-multi-research-safe/part-0.parquet"
    with pytest.raises(LaionSamplingError) as raised:
        _schema(Refused(), file)  # type: ignore[arg-type]
    message = str(raised.value)
    assert message.startswith(f"{file}: not a readable parquet file (HTTP GET error")
    assert "terms are accepted on the Hub" in message and "HF_TOKEN" in message
    with pytest.raises(LaionSamplingError) as raised:
        _schema(Refused(), "/data/part-0.parquet")  # type: ignore[arg-type]
    assert "Hub" not in str(raised.value)


def test_remote_entries_are_listed_without_touching_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """A remote folder (trailing ``/``) becomes its ``*.parquet`` glob, a remote glob is listed
    by DuckDB, a plain remote file is taken as named; nothing is fetched here."""
    patterns: list[str] = []

    def fake_glob(con: duckdb.DuckDBPyConnection, pattern: str) -> list[str]:
        patterns.append(pattern)
        return [pattern.replace("*", "part-0")]

    monkeypatch.setattr("xlr.data.laion.files._glob", fake_glob)
    folder, plain = "hf://datasets/laion/relaion2B-en-research-safe/", "s3://b/laion/x.parquet"
    inputs = LaionInputs(english=[folder], metadata=["s3://b/multi/*.parquet", plain])
    with duckdb.connect() as con:
        listed = list_inputs(con, inputs)
    assert patterns == ["s3://b/multi/*.parquet", folder + "*.parquet"]
    assert listed["metadata"] == ["s3://b/multi/part-0.parquet", plain]
    assert listed["english"] == [folder + "part-0.parquet"]


def test_globs_expand_like_the_files_they_match(tmp_path: Path) -> None:
    parts = [write_rows(tmp_path / "m" / f"part-{i}.parquet", ROWS[i::2]) for i in range(2)]
    write_rows(tmp_path / "m" / "other.parquet", [laion_row("x", "Nicht dabei")])
    by_glob = sample_laion([str(tmp_path / "m" / "part-*.parquet")], QUOTAS, out_dir=tmp_path / "g")
    by_files = sample_laion(parts, QUOTAS, out_dir=tmp_path / "f")
    assert by_glob.parquet.read_bytes() == by_files.parquet.read_bytes()
    assert [e["path"] for e in by_glob.manifest["inputs"]] == [str(p) for p in parts]
    with pytest.raises(LaionSamplingError, match=r"nope-\*\.parquet: matches no file \(english\)"):
        sample_laion(LaionInputs(english=[str(tmp_path / "nope-*.parquet")]), QUOTAS,
                     out_dir=tmp_path / "o")  # fmt: skip


def test_a_directory_is_its_parquet_files_whatever_its_name(tmp_path: Path) -> None:
    """A directory named like a pattern ("laion[2022]") still stands for its *.parquet files."""
    parts = [write_rows(tmp_path / "laion[2022]" / f"part-{i}.parquet", ROWS[i::2]) for i in (0, 1)]
    (tmp_path / "laion[2022]" / "README.txt").write_text("not an input")
    by_dir = sample_laion([str(tmp_path / "laion[2022]")], QUOTAS, out_dir=tmp_path / "d")
    assert [e["path"] for e in by_dir.manifest["inputs"]] == [str(p) for p in parts]
    by_files = sample_laion(parts, QUOTAS, out_dir=tmp_path / "f")
    assert by_dir.parquet.read_bytes() == by_files.parquet.read_bytes()


def test_relaion_research_safe_names_give_the_same_sample(tmp_path: Path) -> None:
    ours = write_rows(tmp_path / "laion2B-multi.parquet", ROWS)
    theirs = write_rows(tmp_path / "relaion2B-multi.parquet", ROWS, rename=RELAION)
    expected = sample_laion([ours], QUOTAS, out_dir=tmp_path / "a")
    columns = LaionColumns(metadata="relaion-research-safe")
    sample = sample_laion([theirs], QUOTAS, columns=columns, out_dir=tmp_path / "b")
    assert sample.parquet.read_bytes() == expected.parquet.read_bytes()
    assert sample.manifest["columns"]["metadata"]["TEXT"] == "caption"
    # url and language answer to URL and LANGUAGE, as DuckDB reads them (whatever the case)
    pattern = (
        r"relaion2B-multi\.parquet: missing columns \['TEXT'\]; it has \['caption', 'key', "
        r"'language', .*data\.laion\.columns\.metadata; set that to a known schema "
        r"\(laion-2022, relaion-research-safe\)"
    )
    with pytest.raises(LaionSamplingError, match=pattern):
        sample_laion([theirs], QUOTAS, out_dir=tmp_path / "c")


def test_column_names_match_whatever_their_case_and_english_files_have_no_language(
    tmp_path: Path,
) -> None:
    """A file's LANGUAGE read through the mapping's ``language`` (DuckDB resolves names in any
    case) gives the same sample; such a file listed as English (every row ``en``) is refused
    rather than labelling its German rows English."""
    ours = write_rows(tmp_path / "laion2B-multi.parquet", ROWS)
    upper = {key: value for key, value in RELAION.items() if key != "LANGUAGE"}
    theirs = write_rows(tmp_path / "relaion-upper.parquet", ROWS, rename=upper)
    columns = LaionColumns(metadata="relaion-research-safe", english="relaion-research-safe")
    expected = sample_laion([ours], QUOTAS, out_dir=tmp_path / "a")
    sample = sample_laion([theirs], QUOTAS, columns=columns, out_dir=tmp_path / "b")
    assert sample.parquet.read_bytes() == expected.parquet.read_bytes()
    for mapping in (columns, LaionColumns()):
        with pytest.raises(LaionSamplingError) as raised:
            sample_laion(LaionInputs(english=[str(theirs if mapping is columns else ours)]),
                         QUOTAS, columns=mapping, out_dir=tmp_path / "c")  # fmt: skip
        assert "column, so its rows need not be English" in str(raised.value)
        assert "list it under data.laion.inputs.metadata" in str(raised.value)


def test_laion2b_multi_2022_files_without_safety_scores(tmp_path: Path) -> None:
    """laion2B-multi as first released: SAMPLE_ID, LICENSE and an NSFW tag, no punsafe or
    pwatermark (those came in the -joined files)."""
    rows = [{**r, "SAMPLE_ID": i, "LICENSE": "?", "NSFW": "UNLIKELY"} for i, r in enumerate(ROWS)]
    path = write_rows(tmp_path / "laion2B-multi.parquet", rows, drop=("punsafe", "pwatermark"))
    with pytest.raises(LaionSamplingError, match=r"missing columns \['punsafe'\]"):
        sample_laion([path], QUOTAS, out_dir=tmp_path / "o")
    filters = LaionFilters(max_punsafe=None, min_width=64)
    sample = pd.read_parquet(sample_laion([path], QUOTAS, filters, out_dir=tmp_path / "o").parquet)
    assert sample["LANGUAGE"].value_counts().to_dict() == {"de": 3, "fr": 1, "en": 1}
    assert sample["punsafe"].isna().all()


def test_translated_release_as_metadata_and_as_translations(tmp_path: Path) -> None:
    """laion2B-multi-joined-translated-to-en: our names plus ENG TEXT (and its own extras)."""
    rows = [{**r, "ENG TEXT": f"english {r['URL']}", "prediction": 0.5} for r in ROWS]
    path = write_rows(tmp_path / "translated.parquet", rows)
    inputs = LaionInputs(metadata=[str(path)], translations=[str(path)])
    sample = pd.read_parquet(sample_laion(inputs, QUOTAS, out_dir=tmp_path / "a").parquet)
    assert dict(zip(sample["URL"], sample["ENG TEXT"], strict=True))["u5"] == "english u5"
    renamed = write_rows(tmp_path / "t2.parquet", rows, rename={"ENG TEXT": "english_caption"})
    inputs = inputs.model_copy(update={"translations": [str(renamed)]})
    with pytest.raises(LaionSamplingError, match=r"t2\.parquet: missing columns \['ENG TEXT'\]"):
        sample_laion(inputs, QUOTAS, out_dir=tmp_path / "b")
    columns = LaionColumns(translations={"ENG TEXT": "english_caption"})
    again = sample_laion(inputs, QUOTAS, columns=columns, out_dir=tmp_path / "b")
    assert pd.read_parquet(again.parquet)["ENG TEXT"].equals(sample["ENG TEXT"])


def test_column_mapping_validation() -> None:
    assert LaionColumns().names("english")["TEXT"] == "TEXT"
    assert LaionColumns(english={"TEXT": "caption"}).names("english")["URL"] == "URL"
    bad = [
        ({"metadata": "laion-2023"}, "unknown schema 'laion-2023'; known: laion-2022"),
        ({"metadata": {"CAPTION": "caption"}}, r"unknown columns \['CAPTION'\]"),
        ({"english": {"URL": "TEXT"}}, r"read the same file column: \['TEXT'\]"),
        ({"roles": "laion-2022"}, "Extra inputs are not permitted"),
    ]
    for spec, message in bad:
        with pytest.raises(ValidationError, match=message):
            LaionColumns(**spec)


def test_inputs_are_hashed_only_when_local_and_small(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(write_rows(tmp_path / "m.parquet", ROWS))
    listed = {"metadata": [path], "english": [], "translations": []}
    with duckdb.connect() as con:
        small = describe_inputs(con, listed, hash_inputs=None)
        assert small[0]["bytes"] == Path(path).stat().st_size and "sha256" in small[0]
        assert "sha256" not in describe_inputs(con, listed, hash_inputs=False)[0]
        monkeypatch.setattr("xlr.data.laion.files.HASH_INPUTS_MAX_BYTES", small[0]["bytes"] - 1)
        assert "sha256" not in describe_inputs(con, listed, hash_inputs=None)[0]
        assert "sha256" in describe_inputs(con, listed, hash_inputs=True)[0]
        remote = {**listed, "english": ["s3://laion/en/part-0.parquet"]}
        with pytest.raises(LaionSamplingError, match=r"s3://laion/en/part-0\.parquet: hash_inputs"):
            describe_inputs(con, remote, hash_inputs=True)


def test_engine_settings_reach_duckdb_and_do_not_change_the_sample(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "m.parquet", ROWS)
    default = sample_laion([path], QUOTAS, out_dir=tmp_path / "a")
    engine = LaionEngine(memory_limit="64MB", threads=1, temp_directory=str(tmp_path / "spill"))
    tuned = sample_laion([path], QUOTAS, engine=engine, out_dir=tmp_path / "b")
    assert tuned.parquet.read_bytes() == default.parquet.read_bytes()
    assert tuned.manifest["engine"]["memory_limit"] == "64MB"
    assert engine.settings() == {"memory_limit": "64MB", "threads": 1}
    with pytest.raises(ValidationError, match="memory_limit 'lots' is not a size"):
        LaionEngine(memory_limit="lots")
    with pytest.raises(ValidationError):
        LaionEngine(oversample=0.5)
