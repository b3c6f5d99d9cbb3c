"""The model contract: what indexpair needs of an embedding model, and the checks.

A model version is read from its ``MLmodel`` file (:class:`ModelCard`) before any weights
load, so a model that cannot embed text (an image model, a text generator, a signature
that takes numbers) is refused by name, not by a traceback from inside a Ray actor.
What the probe then learns by encoding a sample is the :class:`ModelContract` recorded on
the pair, which every query encoder of that pair follows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel

from indexpair.errors import ModelContractError, ModelOutputError

# Loading paths, in the order they are chosen from the MLmodel flavors.
FLAVORS = ("sentence_transformers", "transformers", "python_function")
EMBEDDING_TASKS = ("feature-extraction",)
METRICS = {"cosine": "COSINE", "cos": "COSINE", "dot": "IP", "ip": "IP", "inner_product": "IP"}
POOLINGS = ("mean", "cls", "max", "last")
_TEXT_TYPES = ("string", "str", "object")

# Keys of MLmodel ``metadata`` (``log_model(..., metadata={...})``) that indexpair reads.
METADATA_KEYS = (
    "metric",
    "normalize",
    "pooling",
    "max_seq_length",
    "query_prompt",
    "document_prompt",
)


def refuse(uri: str, found: str, needed: str) -> ModelContractError:
    """The error for a model outside the contract: the model, what was found, what is needed."""
    return ModelContractError(f"model {uri} is refused: {found}; indexpair needs {needed}")


class ModelContract(BaseModel):
    """How the pipeline uses one model version; recorded on the pair it builds.

    Attributes:
        flavor: the loading path (``sentence_transformers``, ``transformers`` or
            ``python_function``).
        dim: output width (from the signature when it declares one, checked by the probe).
        metric: Milvus metric of the collection, ``COSINE`` or ``IP``.
        normalized: whether indexpair L2-normalises the vectors (always, for ``COSINE``).
        max_seq_length: tokens per text the model reads; longer texts are truncated
            (``None``: the model truncates by its own rule, unknown here).
        query_prompt: prefix of every query (E5/BGE ``query: ``, or the model's own).
        document_prompt: prefix of every document.
        pooling: how token vectors become one (``transformers`` flavor only).
    """

    flavor: Literal["sentence_transformers", "transformers", "python_function"]
    dim: int = 0
    metric: Literal["COSINE", "IP"] = "COSINE"
    normalized: bool = True
    max_seq_length: int | None = None
    query_prompt: str = ""
    document_prompt: str = ""
    pooling: str = ""

    def describe(self) -> dict[str, str]:
        """What the pipeline will do with the model, as ``check`` and the report show it."""
        seq = f"{self.max_seq_length} tokens, longer texts truncated"
        return {
            "flavor": self.flavor,
            "dimension": str(self.dim),
            "metric": self.metric + (" (vectors L2-normalised)" if self.normalized else ""),
            "max sequence": seq if self.max_seq_length else "as the model truncates",
            "pooling": self.pooling or "(inside the model)",
            "query prompt": repr(self.query_prompt),
            "document prompt": repr(self.document_prompt),
        }


class ModelCard(BaseModel):
    """What a downloaded model's ``MLmodel`` file says, read without loading weights."""

    uri: str
    path: str
    flavors: dict[str, dict[str, Any]]
    metadata: dict[str, Any] = {}
    inputs: list[dict[str, Any]] | None = None
    outputs: list[dict[str, Any]] | None = None
    params: list[dict[str, Any]] | None = None

    @classmethod
    def read(cls, path: Path | str, uri: str = "") -> ModelCard:
        """Read ``path/MLmodel``.

        Raises:
            ModelContractError: the directory holds no readable MLmodel file.
        """
        mlmodel = Path(path) / "MLmodel"
        uri = uri or str(path)
        try:
            doc = yaml.safe_load(mlmodel.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            found = f"no readable MLmodel file at {mlmodel} ({exc})"
            raise refuse(uri, found, "an MLflow model") from exc
        signature = doc.get("signature") or {}
        return cls(
            uri=uri,
            path=str(path),
            flavors=doc.get("flavors") or {},
            metadata=doc.get("metadata") or {},
            inputs=_schema(signature.get("inputs")),
            outputs=_schema(signature.get("outputs")),
            params=_schema(signature.get("params")),
        )

    @property
    def flavor(self) -> str:
        """The loading path: the first of :data:`FLAVORS` the model has.

        Raises:
            ModelContractError: the model has none of them.
        """
        for flavor in FLAVORS:
            if flavor in self.flavors:
                return flavor
        raise refuse(
            self.uri,
            f"its flavors are {sorted(self.flavors) or 'none'}",
            "one of sentence_transformers, transformers or python_function",
        )

    def check_input(self) -> None:
        """Refuse a model whose task or signature says it does not take text.

        Raises:
            ModelContractError: a transformers task other than feature extraction, or an
                input signature that is not one text column.
        """
        task = (self.flavors.get("transformers") or {}).get("task")
        if task is not None and task not in EMBEDDING_TASKS:
            kind = "an image model" if str(task).startswith("image") else "not an embedder"
            raise refuse(
                self.uri, f"its transformers task is {task!r} ({kind})", "task 'feature-extraction'"
            )
        if not self.inputs:
            return
        required = [c for c in self.inputs if c.get("required", True)]
        bad = [c for c in required if not _is_text(c)]
        if bad or len(required) > 1:
            found = ", ".join(_spec_text(c) for c in self.inputs)
            raise refuse(self.uri, f"its signature takes {found}", "one text (string) input")

    def text_column(self) -> str | None:
        """The name of the input column to send texts in, if the signature names one."""
        if self.inputs and len(self.inputs) == 1 and self.inputs[0].get("name"):
            return str(self.inputs[0]["name"])
        return None

    def takes_batch_size(self) -> bool:
        """Whether the signature declares a ``batch_size`` inference parameter."""
        return any(p.get("name") == "batch_size" for p in self.params or [])

    def declared_dim(self) -> int | None:
        """Output width the signature declares (``(-1, d)`` tensor), if it declares one.

        The transformers flavor's own signature describes token vectors before pooling,
        so it declares nothing about the pooled width.

        Raises:
            ModelContractError: the signature declares text output.
        """
        if not self.outputs or self.flavor == "transformers":
            return None
        spec = self.outputs[0]
        if spec.get("type") in _TEXT_TYPES and len(self.outputs) == 1:
            raise refuse(self.uri, "its signature outputs text (string)", "a vector per text")
        shape = (spec.get("tensor-spec") or {}).get("shape") or []
        return int(shape[-1]) if len(shape) == 2 and int(shape[-1]) > 0 else None

    def setting(self, key: str, default: Any = None) -> Any:
        """A value of the MLmodel ``metadata`` (flat, or under an ``indexpair`` key)."""
        nested = self.metadata.get("indexpair")
        if isinstance(nested, dict) and key in nested:
            return nested[key]
        return self.metadata.get(key, default)

    def metric(self, hint: str | None = None) -> Literal["COSINE", "IP"]:
        """The metric: metadata ``metric``, else the model's own hint, else cosine.

        Raises:
            ModelContractError: a metric other than cosine or inner product.
        """
        raw = str(self.setting("metric") or hint or "cosine").strip().lower()
        if raw not in METRICS:
            raise refuse(self.uri, f"its metric is {raw!r}", "cosine or dot (inner product)")
        return "IP" if METRICS[raw] == "IP" else "COSINE"


def _schema(raw: Any) -> list[dict[str, Any]] | None:
    if raw is None:
        return None
    parsed = json.loads(raw) if isinstance(raw, str) else raw
    return list(parsed) if isinstance(parsed, list) else None


def _is_text(spec: dict[str, Any]) -> bool:
    if spec.get("type") == "tensor":
        tensor = spec.get("tensor-spec") or {}
        return str(tensor.get("dtype")) in _TEXT_TYPES and len(tensor.get("shape") or [-1]) <= 1
    return spec.get("type") in _TEXT_TYPES


def _spec_text(spec: dict[str, Any]) -> str:
    name = f"{spec['name']!r} " if spec.get("name") else ""
    if spec.get("type") == "tensor":
        tensor = spec.get("tensor-spec") or {}
        return f"{name}a {tensor.get('dtype')} tensor of shape {tuple(tensor.get('shape') or ())}"
    return f"{name}{spec.get('type')}"


def as_matrix(raw: Any, n: int, what: str) -> np.ndarray:
    """A model's output as a float32 ``(n, d)`` matrix.

    Accepts an array, a list of vectors, a Series of vectors, or a DataFrame (one column
    of vectors, or one numeric column per dimension).

    Raises:
        ModelOutputError: text output, ragged or misshapen output, naming ``what``.
    """
    import pandas as pd

    if isinstance(raw, pd.DataFrame):
        raw = raw.iloc[:, 0].tolist() if raw.shape[1] == 1 else raw.to_numpy()
    elif isinstance(raw, pd.Series):
        raw = raw.tolist()
    if (
        isinstance(raw, list | tuple)
        and raw
        and isinstance(raw[0], str)
        or (
            isinstance(raw, np.ndarray)
            and raw.dtype.kind in "USO"
            and raw.size
            and isinstance(raw.flat[0], str)
        )
    ):
        first = raw[0] if isinstance(raw, list | tuple) else raw.flat[0]
        raise ModelOutputError(
            f"{what} returned text ({str(first)[:40]!r}, ...); an embedding model returns "
            "one vector of numbers per text"
        )
    try:
        vectors = np.asarray(raw, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ModelOutputError(
            f"{what} returned {type(raw).__name__} that is no (texts, dim) matrix: {exc}"
        ) from exc
    if vectors.ndim != 2:
        raise ModelOutputError(
            f"{what} returned an array of shape {vectors.shape}; expected (rows, dim)"
        )
    if vectors.shape[0] != n:
        raise ModelOutputError(f"{what} returned {vectors.shape[0]} vectors for {n} texts")
    return vectors


def check_vectors(vectors: np.ndarray, texts: list[str], what: str, allow_zero: bool) -> None:
    """Refuse non-finite values, and all-zero rows unless ``allow_zero``.

    Raises:
        ModelOutputError: naming the model and what is wrong with its output.
    """
    if not np.isfinite(vectors).all():
        bad = int((~np.isfinite(vectors)).any(axis=1).sum())
        raise ModelOutputError(
            f"{what} returned NaN or infinite values in {bad} of {len(texts)} vectors"
        )
    zero = np.linalg.norm(vectors, axis=1) == 0
    if zero.any() and not allow_zero:
        raise ModelOutputError(
            f"{what} returned {int(zero.sum())} all-zero vectors "
            f"(first for text {texts[int(np.argmax(zero))]!r})"
        )


# Texts the probe and ``indexpair models check`` encode when no corpus sample is given:
# short and long, several languages' scripts, punctuation, one past any 512-token limit.
SAMPLE_TEXTS = [
    "wireless noise cancelling headphones",
    "How do I reset my password?",
    "Stainless steel water bottle, 750 ml, keeps drinks cold for 24 hours.",
    "Les chaussures de randonnée imperméables pour femmes",
    "日本語のテキストも埋め込めるか",
    "a",
    "The quick brown fox jumps over the lazy dog. " * 80,
    "Returns are accepted within 30 days of delivery with the original receipt.",
]


def inspect_outputs(
    contract: ModelContract, vectors: np.ndarray, queries: np.ndarray, declared: list[int], uri: str
) -> ModelContract:
    """The contract with the probed dimension, once document and query outputs agree.

    Args:
        contract: what the model said of itself before encoding.
        vectors: the sample documents' vectors.
        queries: the same texts encoded as queries.
        declared: widths the model's signatures declare (MLmodel, registry).
        uri: the model, for messages.

    Raises:
        ModelContractError: the widths disagree with each other or with a signature.
    """
    dim = int(vectors.shape[1])
    if int(queries.shape[1]) != dim:
        raise refuse(
            uri,
            f"queries come out {queries.shape[1]}-dim and documents {dim}-dim",
            "one width for both",
        )
    for width in declared:
        if width != dim:
            raise refuse(
                uri,
                f"it returned {dim}-dim vectors; its signature declares {width}",
                "a signature that matches the output",
            )
    if dim < 2:
        raise refuse(uri, f"it returned {dim}-dim vectors", "at least 2 dimensions")
    return contract.model_copy(update={"dim": dim})
