"""Source checks on real files (no services needed)."""

import pickle
from pathlib import Path

import pandas as pd
import pytest

from indexpair.errors import SourceChangedError, SourceDataError
from indexpair.settings import Settings
from tasks.source import (
    SourceSpec,
    check_source,
    content_hash,
    document_texts,
    fingerprint,
    iter_batches,
    verify_unchanged,
)


def _settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path)


def _write(tmp_path: Path, df: pd.DataFrame, name: str = "p.parquet") -> str:
    path = tmp_path / name
    if name.endswith(".parquet"):
        df.to_parquet(path)
    elif name.endswith(".csv"):
        df.to_csv(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True)
    return str(path)


GOOD = pd.DataFrame(
    {"id": ["P1", "P2", "P3"], "title": ["a", "b", "c"], "description": ["x", "y", "z"]}
)


@pytest.mark.parametrize("name", ["p.parquet", "p.csv", "p.jsonl"])
def test_good_source_in_each_format(tmp_path: Path, name: str) -> None:
    summary, ids = check_source(_settings(tmp_path), SourceSpec(uri=_write(tmp_path, GOOD, name)))
    assert summary.rows == 3
    assert ids == {"P1", "P2", "P3"}
    assert summary.fingerprint.startswith("sha256:")


@pytest.mark.parametrize(
    ("df", "fragment"),
    [
        (GOOD.iloc[0:0], "is empty"),
        (
            pd.DataFrame({"id": ["P1", "P1"], "title": ["a", "b"], "description": ["x", "y"]}),
            "duplicate id 'P1'",
        ),
        (
            pd.DataFrame({"id": ["P1", None], "title": ["a", "b"], "description": ["x", "y"]}),
            "row 1 has no 'id'",
        ),
        (
            pd.DataFrame({"id": ["P1", "P2"], "title": ["a", None], "description": ["x", "y"]}),
            "row 1 \\(id 'P2'\\) has null 'title'",
        ),
        (
            pd.DataFrame({"id": ["P1"], "name": ["a"], "description": ["x"]}),
            "has no column\\(s\\) \\['title'\\]",
        ),
    ],
)
def test_bad_sources(tmp_path: Path, df: pd.DataFrame, fragment: str) -> None:
    with pytest.raises(SourceDataError, match=fragment):
        check_source(_settings(tmp_path), SourceSpec(uri=_write(tmp_path, df)))


def test_missing_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(SourceDataError, match="does not exist"):
        check_source(_settings(tmp_path), SourceSpec(uri=str(tmp_path / "none.parquet")))
    with pytest.raises(SourceDataError, match="unknown extension"):
        check_source(_settings(tmp_path), SourceSpec(uri=str(tmp_path / "p.xlsx")))


def test_document_text_and_hash() -> None:
    texts = document_texts({"title": ["Boots"], "description": ["Warm."]}, ["title", "description"])
    assert texts == ["Boots. Warm."]
    assert content_hash(texts[0]) == content_hash("Boots. Warm.")
    assert content_hash("a") != content_hash("b")


def _ids(settings: Settings, uri: str, pin: str | None) -> list[str]:
    spec = SourceSpec(uri=uri)
    return [str(i) for b in iter_batches(settings, spec, fingerprint=pin) for i in b["id"]]


def test_unchanged_local_file_passes(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    summary, _ = check_source(settings, SourceSpec(uri=_write(tmp_path, GOOD)))
    assert summary.fingerprint == fingerprint(settings, summary.uri)
    verify_unchanged(settings, summary.uri, summary.fingerprint)


@pytest.mark.parametrize("name", ["p.parquet", "p.csv"])
def test_local_file_rewritten_during_the_build_fails(tmp_path: Path, name: str) -> None:
    settings = _settings(tmp_path)
    uri = _write(tmp_path, GOOD, name)
    pinned = fingerprint(settings, uri)
    _write(tmp_path, GOOD.assign(title=["a", "b", "changed"]), name)
    now = fingerprint(settings, uri)
    with pytest.raises(SourceChangedError) as caught:
        verify_unchanged(settings, uri, pinned)
    assert str(caught.value) == (
        f"source {uri!r} changed during the build ({pinned} → {now}); start a new build"
    )
    # Prefect pickles a failed task's exception: it must come back whole.
    assert str(pickle.loads(pickle.dumps(caught.value))) == str(caught.value)


def test_local_file_deleted_during_the_build_fails(tmp_path: Path) -> None:
    uri = _write(tmp_path, GOOD)
    pinned = fingerprint(_settings(tmp_path), uri)
    Path(uri).unlink()
    with pytest.raises(SourceDataError, match=f"source {uri!r} does not exist"):
        verify_unchanged(_settings(tmp_path), uri, pinned)


def test_iter_batches_reads_the_pinned_content(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    uri = _write(tmp_path, GOOD)
    pinned = fingerprint(settings, uri)
    assert _ids(settings, uri, pinned) == _ids(settings, uri, None) == ["P1", "P2", "P3"]
    assert not (tmp_path / "sources").exists()  # a local file is read in place


@pytest.mark.parametrize(
    ("uri", "pin", "fragment"),
    [
        ("p.parquet", "etag:abc@v1", "fingerprint 'etag:abc@v1' is not a local file's"),
        ("p.parquet", "sha256:xyz", "fingerprint 'sha256:xyz' is not a local file's"),
        ("s3://b/p.parquet", "sha256:" + "0" * 64, "is not an S3 object's"),
    ],
)
def test_foreign_fingerprint_is_refused(tmp_path: Path, uri: str, pin: str, fragment: str) -> None:
    if "://" not in uri:
        uri = _write(tmp_path, GOOD, uri)
    with pytest.raises(SourceDataError, match=fragment):
        _ids(_settings(tmp_path), uri, pin)
