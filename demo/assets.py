"""The demo's data files: the catalog (full and small) and their golden queries.

Run ``python -m demo.assets`` to regenerate ``demo/data/products.parquet``,
``demo/data/products_small.parquet`` and the two golden-query files.
"""

from __future__ import annotations

import logging
from pathlib import Path

from demo.catalog import DATA_DIR, generate_catalog, small_catalog
from demo.golden import build_golden, restrict_golden, save_golden

logger = logging.getLogger(__name__)


def write_assets(data_dir: Path = DATA_DIR) -> dict[str, Path]:
    """Regenerate every demo asset under ``data_dir`` and return their paths."""
    data_dir.mkdir(parents=True, exist_ok=True)
    full = generate_catalog()
    golden = build_golden(full)
    # Every other pair of queries: as many literal as paraphrased ones.
    small_golden = [q for i, q in enumerate(golden) if i % 4 < 2][:30]
    keep = {pid for q in small_golden for pid in q["relevant_ids"]}
    small = small_catalog(full, keep)
    small_golden = restrict_golden(small_golden, set(small["id"]))
    paths = {
        "products": data_dir / "products.parquet",
        "golden": data_dir / "golden_queries.json",
        "products_small": data_dir / "products_small.parquet",
        "golden_small": data_dir / "golden_queries_small.json",
    }
    full.to_parquet(paths["products"], index=False, compression="zstd")
    small.to_parquet(paths["products_small"], index=False, compression="zstd")
    save_golden(golden, paths["golden"])
    save_golden(small_golden, paths["golden_small"])
    return paths


def main() -> None:
    """Entry point of ``python -m demo.assets``."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name, path in write_assets().items():
        logger.info("wrote %s: %s (%d bytes)", name, path, path.stat().st_size)


if __name__ == "__main__":
    main()
