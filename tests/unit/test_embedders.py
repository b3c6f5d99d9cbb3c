"""Unit tests of the pyfunc embedders, called directly (no MLflow server)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import joblib
import numpy as np
import pandas as pd
import pytest
from mlflow.types import DataType

from demo.catalog import generate_catalog, product_texts
from indexpair.errors import ModelOutputError
from indexpair.models.helpers import (
    TFIDF_COMPONENTS,
    TfidfEmbedder,
    _as_texts,
    embedder_signature,
    fit_tfidf_pipeline,
)


@pytest.mark.parametrize(
    "model_input",
    [
        ["a", "b"],
        ("a", "b"),
        pd.Series(["a", "b"]),
        pd.DataFrame({"text": ["a", "b"]}),
        pd.DataFrame({0: ["a", "b"], 1: ["x", "y"]}),
        np.array(["a", "b"]),
    ],
)
def test_as_texts_accepts_lists_series_and_frames(model_input: object) -> None:
    assert _as_texts(model_input) == ["a", "b"]


@pytest.mark.parametrize("bad", [42, [1, 2], pd.Series([None, "a"]), {"a": 1}])
def test_as_texts_rejects_non_text(bad: object) -> None:
    with pytest.raises(TypeError):
        _as_texts(bad)


@pytest.fixture(scope="module")
def tfidf_model(tmp_path_factory: pytest.TempPathFactory) -> TfidfEmbedder:
    texts = product_texts(generate_catalog(n=1200))
    path = Path(tmp_path_factory.mktemp("tfidf")) / "pipeline.joblib"
    joblib.dump(fit_tfidf_pipeline(texts), path)
    model = TfidfEmbedder()
    model.load_context(SimpleNamespace(artifacts={"pipeline": str(path)}))
    return model


def test_tfidf_returns_normalised_float32(tfidf_model: TfidfEmbedder) -> None:
    texts = ["red waterproof hiking boots", "blue wireless headphones", "a yoga mat"]
    for model_input in (texts, pd.Series(texts), pd.DataFrame({"q": texts})):
        out = tfidf_model.predict(None, model_input)
        assert out.dtype == np.float32
        assert out.shape == (3, TFIDF_COMPONENTS)
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_tfidf_ranks_matching_text_first(tfidf_model: TfidfEmbedder) -> None:
    docs = tfidf_model.predict(None, ["Red Waterproof Hiking Boots", "Blue Wireless Headphones"])
    query = tfidf_model.predict(None, ["red hiking boots"])
    assert int(np.argmax(query @ docs.T)) == 0


def test_tfidf_refuses_too_small_corpus() -> None:
    with pytest.raises((ModelOutputError, ValueError)):
        fit_tfidf_pipeline(["one text", "one text again"])


def test_signature_is_unnamed_string_to_float32_tensor() -> None:
    sig = embedder_signature(384)
    (col,) = sig.inputs.inputs
    assert col.name is None
    assert col.type == DataType.string
    (out,) = sig.outputs.inputs
    assert out.type == np.dtype(np.float32)
    assert out.shape == (-1, 384)
