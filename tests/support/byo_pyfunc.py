"""A user's own pyfunc embedder, logged as an MLflow model from code (``set_model``).

It stands for a custom or API-backed embedder: it takes a DataFrame with a ``text``
column and returns a plain list of vectors (not an array). Inside it runs the packaged
all-MiniLM-L6-v2 (artifact ``model_dir``), so its vectors carry meaning.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class ListEmbedder(PythonModel):
    """Texts in a ``text`` column → a list of lists of floats (unnormalised)."""

    def load_context(self, context: Any) -> None:
        """Load the sentence-transformers directory."""
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(context.artifacts["model_dir"], device="cpu")

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> list:
        """One vector per row of ``model_input["text"]``."""
        texts = [str(t) for t in model_input["text"]]
        vectors = self.model.encode(texts, normalize_embeddings=False, show_progress_bar=False)
        return [[float(x) for x in v] for v in vectors]


set_model(ListEmbedder())
