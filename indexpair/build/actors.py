"""The Ray side of the build: the embedding and writer actors.

Ray imports this module in every actor, so it stays free of Prefect and of the flow
code: an actor that starts faster embeds sooner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
import pyarrow as pa

from indexpair.documents import content_hash, document_texts
from indexpair.errors import ModelOutputError
from indexpair.gateways.milvus import MilvusGateway
from indexpair.models import load_model
from indexpair.settings import Settings


class BatchEmbedder:
    """Loads the model once (a Ray actor, or in the flow's process), then embeds batches."""

    def __init__(
        self,
        model_path: str,
        model_uri: str,
        tracking_uri: str,
        label: str,
        id_field: str,
        text_fields: list[str],
        threads: int,
        dim: int,
        fp16: bool = True,
        model_batch_size: int = 16,
        prompt: str = "",
    ) -> None:
        import torch

        # Ray gives each actor OMP_NUM_THREADS=1; the model should use its share of cores.
        torch.set_num_threads(threads)
        if not Path(model_path, "MLmodel").exists():  # another node of a Ray cluster
            import mlflow

            mlflow.set_tracking_uri(tracking_uri)
            model_path = mlflow.artifacts.download_artifacts(artifact_uri=model_uri)
        self.model = load_model(model_path, model_uri)
        self.model.use_fp16(fp16)
        self.batch_size = model_batch_size
        self.prompt = prompt
        self.label = label
        self.id_field = id_field
        self.text_fields = text_fields
        self.dim = dim

    def embed_table(self, table: pa.Table) -> dict[str, np.ndarray]:
        """:meth:`__call__` for a batch as the pool sends it (an Arrow table)."""
        return self(table.to_pandas())

    def __call__(self, batch: pd.DataFrame) -> dict[str, np.ndarray]:
        texts = document_texts({f: batch[f] for f in self.text_fields}, self.text_fields)
        try:
            vectors = self.model.encode(
                texts, self.label, prompt=self.prompt, batch_size=self.batch_size
            )
            if vectors.shape[1] != self.dim:
                raise ModelOutputError(
                    f"{self.label} returned {vectors.shape[1]}-dim vectors in a batch; "
                    f"the collection expects {self.dim}"
                )
        except ModelOutputError as exc:
            # Report, don't raise: Ray would wrap the error and lose its type on the way.
            return {
                "id": np.array([""], dtype=object),
                "content_hash": np.array([""], dtype=object),
                "vector": np.zeros((1, self.dim), dtype=np.float32),
                "error": np.array([str(exc)], dtype=object),
            }
        return {
            "id": batch[self.id_field].astype(str).to_numpy(dtype=object),
            "content_hash": np.array([content_hash(t) for t in texts], dtype=object),
            "vector": np.ascontiguousarray(vectors, dtype=np.float32),
            "error": np.full(len(texts), "", dtype=object),
        }


class BatchWriter:
    """A Ray actor with one Milvus connection, upserting embedded batches.

    Used where the backend takes concurrent writers (a Milvus server); on Milvus Lite the
    driver writes alone. Reports a batch's model error instead of raising it (as above).
    """

    def __init__(self, settings: Settings, collection: str) -> None:
        self.gateway = MilvusGateway(settings)
        self.collection = collection

    def write(self, *batches: dict[str, np.ndarray]) -> tuple[int, str]:
        """Upsert the batches as one; returns (rows upserted, the first model error)."""
        for batch in batches:
            failed = [str(e) for e in batch["error"] if e]
            if failed:
                return 0, failed[0]
        count = self.gateway.insert(
            self.collection,
            [str(i) for b in batches for i in b["id"]],
            [str(h) for b in batches for h in b["content_hash"]],
            np.concatenate([np.asarray(b["vector"], dtype=np.float32) for b in batches]),
        )
        return count, ""

    def close(self) -> None:
        """Release the Milvus connection (Ray also drops it when the actor is killed)."""
        self.gateway.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
