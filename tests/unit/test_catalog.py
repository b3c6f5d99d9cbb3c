"""Unit tests of the demo catalog generator and the golden-query files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from demo.catalog import (
    DATA_DIR,
    TEXT_FIELDS,
    TEXT_JOIN,
    generate_catalog,
    has_feature,
    product_text,
    product_texts,
)
from demo.golden import MAX_RELEVANT, MIN_RELEVANT, build_golden, restrict_golden

COLUMNS = {"id", "title", "description", "category", "brand", "color", "price"}


@pytest.fixture(scope="module")
def catalog() -> pd.DataFrame:
    return generate_catalog(n=1500)


def test_generator_is_deterministic(catalog: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(catalog, generate_catalog(n=1500))


def test_other_seed_gives_other_catalog(catalog: pd.DataFrame) -> None:
    assert not catalog["title"].equals(generate_catalog(n=1500, seed=7)["title"])


def test_catalog_columns_and_unique_ids(catalog: pd.DataFrame) -> None:
    assert set(catalog.columns) >= COLUMNS
    assert catalog["id"].is_unique
    assert catalog["id"].str.fullmatch(r"P\d{6}").all()
    assert (catalog["price"] > 0).all()
    assert catalog["category"].nunique() >= 10
    assert (catalog[["title", "description"]].map(len) > 10).all().all()


def test_product_text_rule() -> None:
    row = {"title": "Red Boots", "description": "Waterproof."}
    assert TEXT_FIELDS == ("title", "description")
    assert TEXT_JOIN == ". "
    assert product_text(row) == "Red Boots. Waterproof."
    df = pd.DataFrame([row, {"title": "A", "description": "B"}])
    assert product_texts(df) == ["Red Boots. Waterproof.", "A. B"]


def test_golden_relevance_follows_attributes(catalog: pd.DataFrame) -> None:
    golden = build_golden(catalog, n_queries=20)
    assert len({q["query"] for q in golden}) == 20
    by_id = catalog.set_index("id")
    for q in golden:
        rel = q["relevant_ids"]
        assert MIN_RELEVANT <= len(rel) <= MAX_RELEVANT
        rows = by_id.loc[rel]
        # One type, one color, and a feature all relevant products share.
        assert rows["product_type"].nunique() == 1
        assert rows["color"].nunique() == 1
        shared = set.intersection(*(set(f.split(";")) for f in rows["features"]))
        assert shared


def test_has_feature() -> None:
    df = pd.DataFrame({"features": ["padded;waterproof", "foldable;padded"]})
    assert has_feature(df, "waterproof").tolist() == [True, False]


def test_restrict_golden_drops_empty_queries() -> None:
    golden = [{"query": "a", "relevant_ids": ["P1", "P2"]}, {"query": "b", "relevant_ids": ["P3"]}]
    assert restrict_golden(golden, {"P2"}) == [{"query": "a", "relevant_ids": ["P2"]}]


@pytest.mark.parametrize(
    ("products", "golden", "min_products", "min_queries"),
    [
        ("products.parquet", "golden_queries.json", 5000, 60),
        ("products_small.parquet", "golden_queries_small.json", 600, 25),
    ],
)
def test_committed_assets_are_well_formed(
    products: str, golden: str, min_products: int, min_queries: int
) -> None:
    df = pd.read_parquet(DATA_DIR / products)
    queries = json.loads(Path(DATA_DIR / golden).read_text())
    assert len(df) >= min_products
    assert df["id"].is_unique
    assert len(queries) >= min_queries
    ids = set(df["id"])
    for q in queries:
        assert set(q) == {"query", "relevant_ids"}
        assert isinstance(q["query"], str) and q["query"]
        assert 1 <= len(q["relevant_ids"]) <= MAX_RELEVANT
        assert set(q["relevant_ids"]) <= ids


def test_committed_full_catalog_matches_generator() -> None:
    df = pd.read_parquet(DATA_DIR / "products.parquet")
    pd.testing.assert_frame_equal(df, generate_catalog())
