"""Deterministic generator of the synthetic product catalog used by the demo and tests.

``python -m demo.assets`` regenerates ``demo/data/products.parquet``,
``demo/data/products_small.parquet`` and the two golden-query files from it.

Relevance is defined on the structured columns (``product_type``, ``color``,
``features``, ``audience``); the text columns render those attributes in varied
English (shade names instead of base colors, synonyms of product types).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pandas as pd

from demo.vocab import AUDIENCES, BRANDS, COLORS, FEATURES, FILLERS, PRODUCT_TYPES, ProductType

SEED = 20240611
N_PRODUCTS = 6000
DATA_DIR = Path(__file__).parent / "data"

# The text that is embedded for a product: these fields joined by TEXT_JOIN.
TEXT_FIELDS: tuple[str, ...] = ("title", "description")
TEXT_JOIN = ". "

# Probability that a title shows the canonical color word rather than a shade name.
P_CANONICAL_COLOR = 0.9
# Probability that a title shows the canonical product-type name.
P_CANONICAL_TYPE = 0.9

_INTROS = (
    "Shown here in {color} {material}: our {type}.",
    "A {color} {type} made from {material}.",
    "Meet our {color} {type}, crafted in {material}.",
    "{material_cap} {type} finished in {color}.",
    "The {brand} {type} in {color}, built from durable {material}.",
)
_AUDIENCE_SENTENCES = {
    "men": "Cut for men.",
    "women": "Designed for women.",
    "kids": "Sized for kids.",
    "unisex": "A unisex fit for anyone.",
}
_FEATURE_ADJ = {"non-stick": "Non-Stick", "dishwasher-safe": "Dishwasher-Safe"}


def product_text(row: Any) -> str:
    """Return the text embedded for one product: ``f"{title}. {description}"``.

    Args:
        row: a mapping or a pandas row with the fields in ``TEXT_FIELDS``.
    """
    return TEXT_JOIN.join(str(row[field]) for field in TEXT_FIELDS)


def product_texts(df: pd.DataFrame) -> list[str]:
    """Vectorised ``product_text`` over a catalog DataFrame, in row order."""
    joined = df[TEXT_FIELDS[0]].astype(str)
    for field in TEXT_FIELDS[1:]:
        joined = joined + TEXT_JOIN + df[field].astype(str)
    return joined.tolist()


def _title_case(text: str) -> str:
    return " ".join(w if w[:1].isupper() else w[:1].upper() + w[1:] for w in text.split())


def _make_product(rng: random.Random, index: int, ptype: ProductType) -> dict[str, Any]:
    color = rng.choice(sorted(COLORS))
    shades = COLORS[color][0]
    color_shown = color if rng.random() < P_CANONICAL_COLOR else rng.choice(shades)
    type_shown = ptype.names[0] if rng.random() < P_CANONICAL_TYPE else rng.choice(ptype.names[1:])
    features = rng.sample(ptype.features, k=2)
    material = rng.choice(ptype.materials)
    brand = rng.choice(BRANDS)
    audience = rng.choice(sorted(AUDIENCES)) if ptype.audiences else "all"
    lo, hi = ptype.price
    price = round(rng.uniform(lo, hi), 0) - 0.01

    shown_features = " ".join(_FEATURE_ADJ.get(f, _title_case(f)) for f in features)
    audience_word = f"{_title_case(AUDIENCES[audience][0])} " if audience != "all" else ""
    shown = f"{_title_case(color_shown)} {_title_case(type_shown)}"
    title = f"{brand} {audience_word}{shown_features} {shown}"

    intro = rng.choice(_INTROS).format(
        type=type_shown,
        color=color_shown,
        material=material,
        material_cap=material[:1].upper() + material[1:],
        brand=brand,
    )
    sentences = [intro]
    if color_shown != color:
        # Catalogs show a shade name but also file the product under a color family.
        sentences.append(f"Color: {_title_case(color_shown)} ({color}).")
    sentences += [FEATURES[f][0] for f in features]
    if audience != "all":
        sentences.append(_AUDIENCE_SENTENCES[audience])
    sentences.append(rng.choice(FILLERS))
    return {
        "id": f"P{index:06d}",
        "title": title,
        "description": " ".join(sentences),
        "category": ptype.category,
        "product_type": ptype.key,
        "brand": brand,
        "color": color,
        "color_shown": color_shown,
        "material": material,
        "features": ";".join(sorted(features)),
        "audience": audience,
        "price": float(price),
    }


def generate_catalog(n: int = N_PRODUCTS, seed: int = SEED) -> pd.DataFrame:
    """Generate ``n`` products deterministically from ``seed``.

    Product types are balanced (each appears ``n / len(PRODUCT_TYPES)`` times, give or
    take one) and shuffled so that ids do not reveal the type.

    Returns:
        A DataFrame with columns ``id``, ``title``, ``description``, ``category``,
        ``product_type``, ``brand``, ``color`` (canonical), ``color_shown``,
        ``material``, ``features`` (``;``-joined canonical names), ``audience`` and
        ``price``.
    """
    rng = random.Random(seed)
    types = [PRODUCT_TYPES[i % len(PRODUCT_TYPES)] for i in range(n)]
    rng.shuffle(types)
    rows = [_make_product(rng, i + 1, ptype) for i, ptype in enumerate(types)]
    return pd.DataFrame(rows)


def has_feature(df: pd.DataFrame, feature: str) -> pd.Series:
    """Boolean mask of products whose ``features`` include ``feature``."""
    return df["features"].str.split(";").apply(lambda fs: feature in fs)


def small_catalog(
    full: pd.DataFrame, keep_ids: set[str], size: int = 800, seed: int = SEED
) -> pd.DataFrame:
    """A subset of ``full`` of about ``size`` rows that contains every id in ``keep_ids``.

    The rest is filled with products of the same types as the kept ones first (hard
    negatives), then with random products, so that small-catalog retrieval stays hard.
    """
    rng = random.Random(seed + 1)
    kept = full[full["id"].isin(keep_ids)]
    same_type = full[
        full["product_type"].isin(set(kept["product_type"])) & ~full.index.isin(kept.index)
    ]
    pool_hard = sorted(same_type["id"])
    rng.shuffle(pool_hard)
    chosen = set(keep_ids) | set(pool_hard[: max(0, (size - len(keep_ids)) * 2 // 3)])
    rest = sorted(set(full["id"]) - chosen)
    rng.shuffle(rest)
    chosen |= set(rest[: max(0, size - len(chosen))])
    return full[full["id"].isin(chosen)].reset_index(drop=True)
