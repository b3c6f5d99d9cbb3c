"""Golden queries for the demo catalog, with relevance computed from structured columns.

A query names a product type, a base color and a feature (and sometimes an audience);
its relevant ids are exactly the products with those attribute values. Two in three
queries use the catalog's canonical words ("red waterproof hiking boots"), one in three
paraphrase them ("crimson rain-proof trekking boots"), which a lexical model cannot
match but a semantic one can.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pandas as pd

from demo.catalog import SEED, has_feature
from demo.vocab import AUDIENCES, COLORS, FEATURES, PRODUCT_TYPES

N_QUERIES = 64
MIN_RELEVANT = 2
MAX_RELEVANT = 10

_TYPES = {t.key: t for t in PRODUCT_TYPES}
_PARAPHRASE_TEMPLATES = (
    "{color} {feature} {type}",
    "{feature} {type} in {color}",
    "{feature} {color} {type}",
)


def _relevant(df: pd.DataFrame, combo: dict[str, str]) -> list[str]:
    mask = (df["product_type"] == combo["type"]) & (df["color"] == combo["color"])
    mask &= has_feature(df, combo["feature"])
    if combo.get("audience"):
        mask &= df["audience"] == combo["audience"]
    return sorted(df.loc[mask, "id"])


def _render(rng: random.Random, combo: dict[str, str], kind: str) -> str:
    ptype = _TYPES[combo["type"]]
    audience = combo.get("audience")
    if kind == "literal":
        words = [combo["color"], combo["feature"], ptype.names[0]]
        if audience:
            words.insert(0, AUDIENCES[audience][0])
        return " ".join(words)
    text = rng.choice(_PARAPHRASE_TEMPLATES).format(
        color=rng.choice(COLORS[combo["color"]][1]),
        feature=rng.choice(FEATURES[combo["feature"]][1]),
        type=rng.choice(ptype.query_names),
    )
    if audience:
        text = f"{text} {rng.choice(AUDIENCES[audience][1:])}"
    return text


def build_golden(
    catalog: pd.DataFrame, n_queries: int = N_QUERIES, seed: int = SEED
) -> list[dict[str, Any]]:
    """Build ``n_queries`` golden queries for ``catalog``, deterministically.

    Returns:
        A list of ``{"query", "relevant_ids", "kind"}`` dicts; ``kind`` is ``literal``
        or ``paraphrase`` (``save_golden`` drops it from the file).
    """
    rng = random.Random(seed + 2)
    queries: list[dict[str, Any]] = []
    seen: set[tuple[str, ...]] = set()
    types = sorted(_TYPES)
    while len(queries) < n_queries:
        ptype = _TYPES[rng.choice(types)]
        combo = {
            "type": ptype.key,
            "color": rng.choice(sorted(COLORS)),
            "feature": rng.choice(ptype.features),
        }
        if ptype.audiences and rng.random() < 0.15:
            combo["audience"] = rng.choice(sorted(AUDIENCES))
        key = tuple(sorted(combo.values()))
        if key in seen:
            continue
        relevant = _relevant(catalog, combo)
        if not MIN_RELEVANT <= len(relevant) <= MAX_RELEVANT:
            continue
        seen.add(key)
        kind = "paraphrase" if len(queries) % 3 == 1 else "literal"
        queries.append({"query": _render(rng, combo, kind), "relevant_ids": relevant, "kind": kind})
    return queries


def restrict_golden(golden: list[dict[str, Any]], ids: set[str]) -> list[dict[str, Any]]:
    """Keep only relevant ids present in ``ids``; drop queries left with none."""
    out = []
    for q in golden:
        kept = [pid for pid in q["relevant_ids"] if pid in ids]
        if kept:
            out.append({**q, "relevant_ids": kept})
    return out


def save_golden(golden: list[dict[str, Any]], path: Path) -> None:
    """Write the golden file: a JSON list of ``{"query", "relevant_ids"}`` objects."""
    rows = [{"query": q["query"], "relevant_ids": list(q["relevant_ids"])} for q in golden]
    path.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


def load_golden(path: Path) -> list[dict[str, Any]]:
    """Read a golden file written by ``save_golden``."""
    return list(json.loads(path.read_text(encoding="utf-8")))
