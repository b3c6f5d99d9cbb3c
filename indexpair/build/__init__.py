"""The Ray side of a build: the actors that embed and write, the pool that feeds them,
and the layout that sizes it for a cluster.

Everything a Ray worker imports lives here, under ``indexpair``, so a cluster needs only
this package (``INDEXPAIR_RAY_SHIP_CODE``). The Prefect stage that drives it is
``tasks/embedding.py``.
"""

from indexpair.build.actors import BatchEmbedder, BatchWriter
from indexpair.build.layout import Layout, forward_batch, plan
from indexpair.build.pool import (
    embedded,
    embedding_batches,
    gathered,
    id_set,
    keep_rows,
    start_embedders,
    start_writers,
    written,
)

__all__ = [
    "BatchEmbedder",
    "BatchWriter",
    "Layout",
    "embedded",
    "embedding_batches",
    "forward_batch",
    "gathered",
    "id_set",
    "keep_rows",
    "plan",
    "start_embedders",
    "start_writers",
    "written",
]
