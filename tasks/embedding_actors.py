"""The Ray side of the build: the embedding and writer actors, and the id filter.

Ray imports this module in every actor, so it stays free of Prefect and of the flow
code: an actor that starts faster embeds sooner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from indexpair.documents import content_hash, document_texts
from indexpair.errors import ModelOutputError
from indexpair.gateways import mlflow as registry
from indexpair.gateways.milvus import MilvusGateway
from indexpair.settings import Settings


class BatchEmbedder:
    """Ray Data callable class: loads the model once per actor, then embeds batches."""

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
    ) -> None:
        import torch

        # Ray gives each actor OMP_NUM_THREADS=1; the model should use its share of cores.
        torch.set_num_threads(threads)
        if not Path(model_path, "MLmodel").exists():  # another node of a Ray cluster
            import mlflow

            mlflow.set_tracking_uri(tracking_uri)
            model_path = mlflow.artifacts.download_artifacts(artifact_uri=model_uri)
        self.model = registry.load_model(model_path)
        use_fp16(self.model, fp16)
        self.params = {"batch_size": model_batch_size}
        self.label = label
        self.id_field = id_field
        self.text_fields = text_fields
        self.dim = dim

    def __call__(self, batch: pd.DataFrame) -> dict[str, np.ndarray]:
        texts = document_texts({f: batch[f] for f in self.text_fields}, self.text_fields)
        try:
            vectors = registry.encode(self.model, texts, self.label, params=self.params)
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
    """Ray Data callable class: one Milvus connection per actor, upserting embedded batches.

    Used where the backend takes concurrent writers (a Milvus server); on Milvus Lite the
    driver writes alone. Reports a batch's model error instead of raising it (as above).
    """

    def __init__(self, settings: Settings, collection: str) -> None:
        self.gateway = MilvusGateway(settings)
        self.collection = collection

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        failed = [str(e) for e in batch["error"] if e]
        if failed:
            return {"inserted": np.zeros(1, dtype=np.int64), "error": np.array(failed[:1])}
        count = self.gateway.insert(
            self.collection,
            [str(i) for i in batch["id"]],
            [str(h) for h in batch["content_hash"]],
            np.asarray(batch["vector"], dtype=np.float32),
        )
        return {"inserted": np.array([count], dtype=np.int64), "error": np.array([""])}


def use_fp16(model: Any, enabled: bool) -> None:
    """Half precision for a sentence-transformers model on a GPU (a no-op elsewhere)."""
    inner = model.unwrap_python_model()
    st = getattr(inner, "model", None)
    if st is not None and getattr(st, "device", None) is not None and st.device.type == "cuda":
        st.half() if enabled else st.float()


def keep_ids(batch: pd.DataFrame, id_field: str, wanted: frozenset[str]) -> pd.DataFrame:
    """The rows of a batch whose id is in ``wanted`` (a refresh embeds only those)."""
    return batch[batch[id_field].astype(str).isin(wanted)]
