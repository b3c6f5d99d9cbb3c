"""indexpair's own pyfunc embedding helpers, and the functions that log and register them.

Two models, both returning L2-normalised ``float32`` arrays of shape ``(n, dim)``:

* ``TfidfEmbedder``: a joblib-saved scikit-learn pipeline (TF-IDF -> SVD -> Normalizer).
* ``SentenceTransformerEmbedder``: a sentence-transformers model directory.

Both accept a list of strings, a pandas Series, or a one-column DataFrame, which is
what the signature from ``embedder_signature`` lets through. They are logged as MLflow
"models from code" (the files in ``indexpair/models/code/``), with a signature and an
input example, so MLflow neither pickles them nor infers anything.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import ColSpec, Schema, TensorSpec

from indexpair.errors import ModelOutputError
from indexpair.models.contract import as_matrix, check_vectors

logger = logging.getLogger(__name__)

EXPERIMENT_NAME = "indexpair-models"
TFIDF_COMPONENTS = 256
DEFAULT_BATCH_SIZE = 64


def _as_texts(model_input: Any) -> list[str]:
    """Turn a list of str, a pandas Series or a DataFrame (first column) into a list.

    Raises:
        TypeError: if ``model_input`` is none of those, or holds a non-string value.
    """
    if isinstance(model_input, pd.DataFrame):
        if model_input.shape[1] < 1:
            raise TypeError("model input DataFrame has no columns; expected one text column")
        values = model_input.iloc[:, 0].tolist()
    elif isinstance(model_input, pd.Series | np.ndarray):
        values = list(model_input.tolist())
    elif isinstance(model_input, list | tuple):
        values = list(model_input)
    elif isinstance(model_input, str):
        values = [model_input]
    else:
        raise TypeError(f"model input of type {type(model_input).__name__} is not text")
    for value in values:
        if not isinstance(value, str):
            raise TypeError(f"model input holds {type(value).__name__} {value!r}; expected str")
    return values


def _check_output(vectors: np.ndarray, texts: list[str]) -> np.ndarray:
    """One finite float32 row per input, by the model contract's own checks."""
    out = as_matrix(vectors, len(texts), "embedder")
    check_vectors(out, texts, "embedder", allow_zero=True)  # TF-IDF: unknown words give 0
    return out


def build_tfidf_pipeline(n_components: int = TFIDF_COMPONENTS) -> Any:
    """Return the unfitted TF-IDF -> TruncatedSVD -> Normalizer pipeline."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    return make_pipeline(
        TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2),
        TruncatedSVD(n_components=n_components, random_state=0),
        Normalizer(copy=False),
    )


def fit_tfidf_pipeline(texts: list[str], n_components: int = TFIDF_COMPONENTS) -> Any:
    """Fit the TF-IDF pipeline on ``texts``.

    Raises:
        ModelOutputError: if the corpus has too few terms for ``n_components``.
    """
    pipeline = build_tfidf_pipeline(n_components)
    pipeline.fit(texts)
    vocab = len(pipeline.steps[0][1].vocabulary_)
    if vocab <= n_components:
        raise ModelOutputError(
            f"TF-IDF vocabulary has {vocab} terms; SVD needs more than {n_components}"
        )
    return pipeline


class TfidfEmbedder(PythonModel):
    """TF-IDF + SVD embeddings from a joblib-saved pipeline (artifact ``pipeline``).

    ``model_input`` carries no type hint on purpose: MLflow would derive a second
    signature from it and warn; the explicit one (:func:`embedder_signature`) rules.
    """

    # No type-hint wrapping of ``predict`` either: without it MLflow warns at every load
    # that type hints are missing; the signature validates the input instead.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        """Load the pipeline from ``context.artifacts["pipeline"]``."""
        import joblib

        self.pipeline = joblib.load(context.artifacts["pipeline"])

    def predict(
        self,
        context: Any,
        model_input,
        params: dict[str, Any] | None = None,
    ) -> np.ndarray:
        """Embed texts; returns L2-normalised float32 ``(n, dim)``."""
        texts = _as_texts(model_input)
        vectors = self.pipeline.transform(texts)
        return _check_output(vectors, texts)


class SentenceTransformerEmbedder(PythonModel):
    """sentence-transformers embeddings from a model directory (artifact ``model_dir``).

    Uses CUDA with fp16 weights when available, else the CPU.
    """

    _skip_type_hint_validation = True  # as for TfidfEmbedder

    def load_context(self, context: Any) -> None:
        """Load the model from ``context.artifacts["model_dir"]``."""
        import torch
        from sentence_transformers import SentenceTransformer

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = SentenceTransformer(context.artifacts["model_dir"], device=device)
        if device == "cuda":
            self.model.half()

    def predict(
        self,
        context: Any,
        model_input,
        params: dict[str, Any] | None = None,
    ) -> np.ndarray:
        """Embed texts; ``params["batch_size"]`` overrides the batch size (64)."""
        texts = _as_texts(model_input)
        batch_size = int((params or {}).get("batch_size") or DEFAULT_BATCH_SIZE)
        vectors = self.model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return _check_output(vectors, texts)


def embedder_signature(dim: int) -> ModelSignature:
    """Signature accepting a list, Series or one-column DataFrame of strings.

    The input column is unnamed on purpose: a named column rejects a plain list.
    """
    from mlflow.types.schema import ParamSchema, ParamSpec

    return ModelSignature(
        inputs=Schema([ColSpec("string")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, dim))]),
        params=ParamSchema([ParamSpec("batch_size", "long", DEFAULT_BATCH_SIZE)]),
    )


def _pip_requirements(*extra: str) -> list[str]:
    """Explicit requirements, so MLflow never infers them (slow, may hit the network)."""
    from importlib.metadata import version

    return [f"mlflow=={version('mlflow')}", f"numpy=={version('numpy')}", *extra]


CODE_DIR = Path(__file__).resolve().parent / "code"
INPUT_EXAMPLE = ["wireless noise cancelling headphones", "stainless steel water bottle"]


def _log_and_register(
    code_file: str,
    artifacts: dict[str, str],
    dim: int,
    registered_name: str,
    tags: dict[str, str],
    pip_requirements: list[str],
) -> str:
    mlflow.set_experiment(EXPERIMENT_NAME)
    with mlflow.start_run(run_name=f"{registered_name}-{Path(code_file).stem}") as run:
        mlflow.set_tags(tags)
        mlflow.log_param("embedding_dim", dim)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(CODE_DIR / code_file),
            artifacts=artifacts,
            signature=embedder_signature(dim),
            input_example=INPUT_EXAMPLE,
            registered_model_name=registered_name,
            pip_requirements=pip_requirements,
            metadata={"metric": "cosine"},
        )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(registered_name, version, key, str(value))
    client.set_model_version_tag(registered_name, version, "indexpair.embedding_dim", str(dim))
    logger.info("registered %s v%s from run %s", registered_name, version, run.info.run_id)
    return version


def log_tfidf_model(
    texts: list[str], registered_name: str, work_dir: Path, tags: dict[str, str]
) -> str:
    """Fit the TF-IDF pipeline on ``texts``, log it as a pyfunc and register it.

    Args:
        texts: the corpus to fit on (the same text rule as the index).
        registered_name: registered model name in the MLflow registry.
        work_dir: a directory for the joblib file before it is logged.
        tags: set on the run and on the new model version.

    Returns:
        The new model version, as a string.
    """
    import joblib
    import sklearn

    pipeline = fit_tfidf_pipeline(texts)
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / "tfidf_pipeline.joblib"
    joblib.dump(pipeline, path)
    reqs = _pip_requirements(f"scikit-learn=={sklearn.__version__}", "joblib")
    return _log_and_register(
        "tfidf.py", {"pipeline": str(path)}, TFIDF_COMPONENTS, registered_name, tags, reqs
    )


def sentence_transformer_dim(model_dir: Path) -> int:
    """Embedding dimension of a sentence-transformers directory, without loading weights.

    Reads ``1_Pooling/config.json`` (``word_embedding_dimension``).
    """
    import json

    config = json.loads((Path(model_dir) / "1_Pooling" / "config.json").read_text())
    return int(config["word_embedding_dimension"])


def log_sentence_transformer_model(
    model_dir: Path, registered_name: str, tags: dict[str, str]
) -> str:
    """Log a sentence-transformers directory as a pyfunc artifact and register it.

    Returns:
        The new model version, as a string.
    """
    from importlib.metadata import version

    dim = sentence_transformer_dim(model_dir)
    reqs = _pip_requirements(
        f"sentence-transformers=={version('sentence-transformers')}",
        f"transformers=={version('transformers')}",
        "torch",
    )
    # MLflow copies artifacts; give it a clean copy without VCS leftovers.
    with tempfile.TemporaryDirectory(prefix="indexpair-st-") as tmp:
        clean = Path(tmp) / "model_dir"
        shutil.copytree(model_dir, clean, ignore=shutil.ignore_patterns(".git*", "README.md"))
        return _log_and_register(
            "sentence_transformer.py",
            {"model_dir": str(clean)},
            dim,
            registered_name,
            tags,
            reqs,
        )
