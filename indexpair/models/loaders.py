"""Loading an MLflow model by its flavor, behind one interface: :class:`EmbeddingModel`.

The path is chosen from the model's ``MLmodel`` flavors, first match wins:

1. ``sentence_transformers``: the native SentenceTransformer (its pooling, normalisation,
   maximum sequence length and prompts come with it);
2. ``transformers`` (task ``feature-extraction``): the model and tokenizer, pooled as the
   MLmodel metadata says (``pooling``: mean by default);
3. ``python_function``: any pyfunc whose ``predict`` maps texts to vectors (indexpair's own
   helpers, custom or API-backed embedders).

Whatever the path, :meth:`EmbeddingModel.encode` prepends the prompt it is given, checks
the output (finite, one row per text) and L2-normalises it for the cosine metric.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from indexpair.models.contract import (
    POOLINGS,
    ModelCard,
    ModelContract,
    as_matrix,
    check_vectors,
    refuse,
)
from indexpair.pair import PairMetadata

DEFAULT_BATCH_SIZE = 64


class EmbeddingModel:
    """A loaded model version: encodes texts into one vector each.

    Attributes:
        card: what the MLmodel file says.
        contract: what is known before encoding (flavor, metric, prompts, length);
            the probe adds the dimension.
    """

    def __init__(self, card: ModelCard) -> None:
        self.card = card
        self.contract = ModelContract(flavor=card.flavor)  # type: ignore[arg-type]

    def _finish_contract(
        self, metric_hint: str | None, max_seq: int | None, prompts: dict[str, str]
    ) -> None:
        """Fill the contract from the MLmodel metadata, else from the model's own hints."""
        card = self.card
        metric = card.metric(metric_hint)
        seq = card.setting("max_seq_length") or max_seq
        self.contract = ModelContract(
            flavor=self.contract.flavor,
            metric=metric,
            # Cosine needs unit vectors; for inner product the model's scale is kept
            # unless its metadata asks for normalisation.
            normalized=metric == "COSINE" or bool(card.setting("normalize", False)),
            max_seq_length=int(seq) if seq else None,
            query_prompt=str(card.setting("query_prompt", prompts.get("query", "")) or ""),
            document_prompt=str(card.setting("document_prompt", prompts.get("document", "")) or ""),
            pooling=self.contract.pooling,
        )

    def _embed(self, texts: list[str], batch_size: int) -> Any:
        raise NotImplementedError

    def encode(
        self,
        texts: list[str],
        what: str,
        prompt: str = "",
        batch_size: int = DEFAULT_BATCH_SIZE,
        allow_zero: bool = False,
    ) -> np.ndarray:
        """Encode ``texts`` (each prefixed by ``prompt``) into float32 ``(n, dim)``.

        ``allow_zero`` accepts all-zero rows (a query with no word the model knows).

        Raises:
            ModelOutputError: the output breaks the contract, naming ``what``.
        """
        if not texts:
            return np.zeros((0, self.contract.dim), dtype=np.float32)
        raw = self._embed([prompt + t for t in texts] if prompt else list(texts), batch_size)
        vectors = as_matrix(raw, len(texts), what)
        check_vectors(vectors, texts, what, allow_zero)
        if self.contract.normalized:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.where(norms == 0, 1, norms)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def use_fp16(self, enabled: bool) -> None:
        """Half precision on a GPU (a no-op on the CPU and for pyfunc models)."""


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceTransformersModel(EmbeddingModel):
    """MLflow's ``sentence_transformers`` flavor, loaded natively."""

    def __init__(self, card: ModelCard) -> None:
        super().__init__(card)
        import mlflow.sentence_transformers

        self.model = mlflow.sentence_transformers.load_model(card.path)
        self.model.to(_device())
        prompts = dict(getattr(self.model, "prompts", {}) or {})
        document = next(
            (prompts[k] for k in ("document", "passage", "corpus") if prompts.get(k)), ""
        )
        self._finish_contract(
            getattr(self.model, "similarity_fn_name", None),
            getattr(self.model, "max_seq_length", None),
            {"query": prompts.get("query") or "", "document": document},
        )

    def _embed(self, texts: list[str], batch_size: int) -> Any:
        # The prompt is already in the texts: an explicit empty prompt stops the model
        # adding its default one a second time.
        return self.model.encode(
            texts,
            prompt="",
            batch_size=batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    def use_fp16(self, enabled: bool) -> None:
        """Half precision when the model sits on a GPU."""
        if self.model.device.type == "cuda":
            self.model.half() if enabled else self.model.float()


class TransformersModel(EmbeddingModel):
    """MLflow's ``transformers`` flavor (feature extraction), pooled and truncated here."""

    def __init__(self, card: ModelCard) -> None:
        super().__init__(card)
        import mlflow.transformers

        pooling = str(card.setting("pooling", "mean")).lower()
        if pooling not in POOLINGS:
            raise refuse(
                card.uri,
                f"its metadata asks for pooling {pooling!r}",
                f"one of {', '.join(POOLINGS)}",
            )
        parts = mlflow.transformers.load_model(card.path, return_type="components")
        self.model = parts["model"].to(_device()).eval()
        self.tokenizer = parts.get("tokenizer")
        if self.tokenizer is None:
            raise refuse(card.uri, "it was logged without a tokenizer", "a text tokenizer")
        config = getattr(self.model, "config", None)
        limits = [
            int(v)
            for v in (
                getattr(self.tokenizer, "model_max_length", None),
                getattr(config, "max_position_embeddings", None),
            )
            if v and int(v) < 1_000_000
        ]
        self.contract.pooling = pooling
        self._finish_contract(None, min(limits) if limits else None, {})
        self.max_length = self.contract.max_seq_length or 512

    def _embed(self, texts: list[str], batch_size: int) -> Any:
        import torch

        out = []
        for start in range(0, len(texts), batch_size):
            enc = self.tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.model.device)
            with torch.inference_mode():
                tokens = self.model(**enc).last_hidden_state
            out.append(_pool(tokens, enc["attention_mask"], self.contract.pooling))
        return np.concatenate(out)

    def use_fp16(self, enabled: bool) -> None:
        """Half precision when the model sits on a GPU."""
        if self.model.device.type == "cuda":
            self.model.half() if enabled else self.model.float()


def _pool(tokens: Any, mask: Any, pooling: str) -> np.ndarray:
    import torch

    if pooling == "cls":
        pooled = tokens[:, 0]
    elif pooling == "last":
        last = mask.sum(dim=1) - 1
        pooled = tokens[torch.arange(tokens.shape[0]), last]
    elif pooling == "max":
        pooled = tokens.masked_fill(mask.unsqueeze(-1) == 0, float("-inf")).max(dim=1).values
    else:
        weights = mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    return pooled.float().cpu().numpy()


class PyfuncModel(EmbeddingModel):
    """Any ``python_function`` model whose ``predict`` maps texts to vectors."""

    def __init__(self, card: ModelCard) -> None:
        super().__init__(card)
        import mlflow.pyfunc

        self.model = mlflow.pyfunc.load_model(card.path)
        self.column = card.text_column()
        self._finish_contract(None, None, {})

    def _embed(self, texts: list[str], batch_size: int) -> Any:
        import pandas as pd

        if self.card.takes_batch_size():  # the model batches itself: one call
            data: Any = pd.DataFrame({self.column: texts}) if self.column else texts
            return self.model.predict(data, params={"batch_size": batch_size})
        out = []
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            data = pd.DataFrame({self.column: chunk}) if self.column else chunk
            out.append(as_matrix(self.model.predict(data), len(chunk), f"model {self.card.uri}"))
        return np.concatenate(out)

    def use_fp16(self, enabled: bool) -> None:
        """Half precision for indexpair's own sentence-transformers helper on a GPU."""
        try:
            inner = self.model.unwrap_python_model()
        except Exception:  # MLflow raises a bare MlflowException for flavor wrappers
            return
        st = getattr(inner, "model", None)
        device = getattr(st, "device", None)
        if st is not None and device is not None and device.type == "cuda":
            st.half() if enabled else st.float()


LOADERS: dict[str, type[EmbeddingModel]] = {
    "sentence_transformers": SentenceTransformersModel,
    "transformers": TransformersModel,
    "python_function": PyfuncModel,
}


def load_model(path: Path | str, uri: str = "") -> EmbeddingModel:
    """Load a downloaded model version by its flavor, after checking what it takes.

    Args:
        path: the local model directory (holding ``MLmodel``).
        uri: the model's URI, for messages (``models:/name/3``).

    Raises:
        ModelContractError: the model has no usable flavor, or does not take text.
    """
    card = ModelCard.read(path, uri)
    card.check_input()
    return LOADERS[card.flavor](card)


class BatchThreads:
    """PyTorch's intra-op threads chosen per batch: one thread below ``parallel_from``
    texts, all of them (PyTorch's own count, normally one per core) from there up.

    A batch of a few short queries gains little from a second thread, and on cores that
    are busy (with Milvus, HTTP, other processes) its OpenMP barriers wait for whichever
    thread was descheduled. ``python -m benchmarks.query_threads`` (MiniLM, 2 cores):
    idle, 2 threads are 1.2-1.7x faster from 8 queries up (0.99-1.24x below); beside
    two half-busy processes, one thread is faster at every size, its p99 0.35-0.76 of
    two threads'. The count is per process (set per thread), so only a process that owns its
    threads (the search service) uses this; nothing changes until a PyTorch model runs.
    """

    def __init__(self, parallel_from: int) -> None:
        self.parallel_from = parallel_from
        self._all: int | None = None

    def for_batch(self, size: int) -> None:
        """Set the thread count for encoding a batch of ``size`` texts, in the calling
        thread: OpenMP keeps the count per thread, so it is set on every batch (it costs
        well under a microsecond)."""
        torch = sys.modules.get("torch")
        if torch is None:  # no PyTorch model loaded: nothing to set
            return
        if self._all is None:
            self._all = int(torch.get_num_threads())
        torch.set_num_threads(self._all if size >= self.parallel_from else 1)


def encode_queries(model: EmbeddingModel, pair: PairMetadata, texts: list[str]) -> np.ndarray:
    """Queries for one pair, encoded as its build recorded (its query prompt).

    Every query path (the search service, validation, the shadow comparison, the
    consistency checker) goes through here, so they all encode a query the same way.
    All-zero rows are allowed: a query with no word the model knows finds nothing.
    """
    label = f"model {pair.model_name} v{pair.model_version}"
    return model.encode(texts, label, prompt=pair.query_prompt, allow_zero=True)
