"""Offline retrieval quality of the demo models on the golden queries (no Milvus).

``python -m demo.evaluate`` embeds the full and the small catalog with TF-IDF + SVD,
all-MiniLM-L6-v2 and the broken MiniLM, ranks products by brute-force cosine
similarity and prints mean recall@10, MRR@10 and nDCG@10 per model and data set.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from demo.catalog import DATA_DIR, generate_catalog, product_texts
from demo.golden import build_golden, load_golden
from demo.models import make_broken_model_dir, minilm_dir

K = 10
Embed = Callable[[list[str]], np.ndarray]


def recall_at_k(ranked: Sequence[str], relevant: set[str], k: int = K) -> float:
    """``|relevant ∩ top k| / min(|relevant|, k)``."""
    if not relevant:
        return 0.0
    hits = sum(1 for pid in ranked[:k] if pid in relevant)
    return hits / min(len(relevant), k)


def mrr_at_k(ranked: Sequence[str], relevant: set[str], k: int = K) -> float:
    """Reciprocal rank of the first relevant id in the top ``k`` (0 if none)."""
    for rank, pid in enumerate(ranked[:k], start=1):
        if pid in relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[str], relevant: set[str], k: int = K) -> float:
    """nDCG@k with binary relevance."""
    dcg = sum(1.0 / math.log2(r + 1) for r, pid in enumerate(ranked[:k], 1) if pid in relevant)
    ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(len(relevant), k) + 1))
    return dcg / ideal if ideal else 0.0


def evaluate(
    embed: Embed, catalog: pd.DataFrame, golden: list[dict[str, Any]], k: int = K
) -> pd.DataFrame:
    """Per-query recall@k, MRR@k and nDCG@k of ``embed`` on ``catalog``."""
    ids = catalog["id"].to_numpy()
    docs = embed(product_texts(catalog))
    queries = embed([q["query"] for q in golden])
    scores = queries @ docs.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    rows = []
    for q, order in zip(golden, top, strict=True):
        ranked = ids[order].tolist()
        relevant = set(q["relevant_ids"])
        rows.append(
            {
                "query": q["query"],
                "recall": recall_at_k(ranked, relevant, k),
                "mrr": mrr_at_k(ranked, relevant, k),
                "ndcg": ndcg_at_k(ranked, relevant, k),
            }
        )
    return pd.DataFrame(rows)


def tfidf_embedder(fit_texts: list[str]) -> Embed:
    """Embed with the TF-IDF pipeline of ``indexpair.models.helpers`` fitted on ``fit_texts``."""
    from indexpair.models.helpers import fit_tfidf_pipeline

    pipeline = fit_tfidf_pipeline(fit_texts)
    return lambda texts: np.asarray(pipeline.transform(texts), dtype=np.float32)


def st_embedder(model_dir: Path) -> Embed:
    """Embed with a sentence-transformers model directory (normalised)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    return lambda texts: model.encode(
        texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True
    )


def _kinds(catalog: pd.DataFrame) -> dict[str, str]:
    """Query text -> literal | paraphrase, from the deterministic generator."""
    return {q["query"]: q["kind"] for q in build_golden(catalog)}


def main(argv: list[str] | None = None) -> None:
    """Print the metrics table (CLI entry point)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--models", default="tfidf,minilm,broken")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    full = pd.read_parquet(args.data_dir / "products.parquet")
    small = pd.read_parquet(args.data_dir / "products_small.parquet")
    datasets = {
        "full": (full, load_golden(args.data_dir / "golden_queries.json")),
        "small": (small, load_golden(args.data_dir / "golden_queries_small.json")),
    }
    kinds = _kinds(generate_catalog())
    wanted = args.models.split(",")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        models: dict[str, Callable[[pd.DataFrame], Embed]] = {
            "tfidf": lambda cat: tfidf_embedder(product_texts(cat)),
            "tfidf(fit=full)": lambda cat: tfidf_embedder(product_texts(full)),
            "minilm": lambda cat: st_embedder(minilm_dir()),
            "broken": lambda cat: st_embedder(
                make_broken_model_dir(minilm_dir(), Path(tmp) / "broken")
            ),
        }
        for name, factory in models.items():
            if name.split("(")[0] not in wanted:
                continue
            for ds_name, (catalog, golden) in datasets.items():
                if name == "tfidf(fit=full)" and ds_name == "full":
                    continue
                start = time.perf_counter()
                per_query = evaluate(factory(catalog), catalog, golden)
                per_query["kind"] = per_query["query"].map(kinds)
                row = {"model": name, "data": ds_name, "n": len(per_query)}
                row.update(per_query[["recall", "mrr", "ndcg"]].mean().round(3).to_dict())
                for kind, grp in per_query.groupby("kind"):
                    row[f"recall_{kind}"] = round(grp["recall"].mean(), 3)
                row["min_recall_q"] = round(per_query["recall"].min(), 3)
                row["seconds"] = round(time.perf_counter() - start, 1)
                results.append(row)
    print(pd.DataFrame(results).to_string(index=False))  # noqa: T201 (CLI output)


if __name__ == "__main__":
    main()
