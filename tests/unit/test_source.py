"""Source checks on real files (no services needed)."""

from pathlib import Path

import pandas as pd
import pytest

from indexpair.errors import SourceDataError
from indexpair.settings import Settings
from tasks.source import SourceSpec, check_source, content_hash, document_texts


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
