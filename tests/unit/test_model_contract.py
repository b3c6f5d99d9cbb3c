"""The model contract as tables: MLmodel cards, output shapes, pooling, URIs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from indexpair.errors import ModelContractError, ModelOutputError
from indexpair.models.contract import ModelCard, as_matrix, check_vectors
from indexpair.models.loaders import _pool
from tasks.registry import parse_model_uri

PYFUNC = {"python_function": {"loader_module": "mlflow.pyfunc.model"}}


def _card(tmp_path: Path, flavors: dict, signature: dict | None = None, **meta: Any) -> ModelCard:
    doc: dict[str, Any] = {"flavors": flavors}
    if signature:
        doc["signature"] = signature
    if meta:
        doc["metadata"] = meta
    (tmp_path / "MLmodel").write_text(yaml.safe_dump(doc))
    return ModelCard.read(tmp_path, "m v1 (models:/m/1)")


@pytest.mark.parametrize(
    ("flavors", "expected"),
    [
        ({"sentence_transformers": {}, **PYFUNC}, "sentence_transformers"),
        ({"transformers": {"task": "feature-extraction"}, **PYFUNC}, "transformers"),
        ({"sklearn": {}, **PYFUNC}, "python_function"),
    ],
)
def test_the_loading_path_follows_the_flavors(tmp_path: Path, flavors: dict, expected: str) -> None:
    assert _card(tmp_path, flavors).flavor == expected


def test_a_model_without_a_usable_flavor_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelContractError, match=r"its flavors are \['onnx'\]"):
        _ = _card(tmp_path, {"onnx": {}}).flavor
    with pytest.raises(ModelContractError, match="no readable MLmodel file"):
        ModelCard.read(tmp_path / "missing", "x")


@pytest.mark.parametrize(
    ("task", "fragment"),
    [
        ("text-generation", "'text-generation' (not an embedder)"),
        ("image-classification", "'image-classification' (an image model)"),
        ("summarization", "'summarization' (not an embedder)"),
    ],
)
def test_transformers_tasks_other_than_feature_extraction_are_refused(
    tmp_path: Path, task: str, fragment: str
) -> None:
    card = _card(tmp_path, {"transformers": {"task": task}, **PYFUNC})
    with pytest.raises(ModelContractError, match=r"m v1 \(models:/m/1\) is refused") as info:
        card.check_input()
    assert fragment in str(info.value) and "task 'feature-extraction'" in str(info.value)


TEXT = '[{"type": "string", "required": true}]'


@pytest.mark.parametrize(
    ("inputs", "refused", "column"),
    [
        (TEXT, False, None),
        ('[{"type": "string", "name": "text", "required": true}]', False, "text"),
        ('[{"type": "tensor", "tensor-spec": {"dtype": "str", "shape": [-1]}}]', False, None),
        ('[{"type": "double", "required": true}]', True, None),
        ('[{"type": "binary", "name": "image", "required": true}]', True, "image"),
        ('[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 3]}}]', True, None),
    ],
)
def test_only_one_text_input_is_accepted(
    tmp_path: Path, inputs: str, refused: bool, column: str | None
) -> None:
    card = _card(tmp_path, PYFUNC, {"inputs": inputs})
    if refused:
        with pytest.raises(ModelContractError, match="indexpair needs one text"):
            card.check_input()
    else:
        card.check_input()
    assert card.text_column() == column


@pytest.mark.parametrize(
    ("flavors", "outputs", "declared"),
    [
        (PYFUNC, '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 8]}}]', 8),
        (PYFUNC, '[{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1]}}]', None),
        (
            {"transformers": {"task": "feature-extraction"}, **PYFUNC},
            '[{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 8]}}]',
            None,
        ),
    ],
)
def test_the_declared_width(
    tmp_path: Path, flavors: dict, outputs: str, declared: int | None
) -> None:
    card = _card(tmp_path, flavors, {"inputs": TEXT, "outputs": outputs})
    assert card.declared_dim() == declared


def test_a_text_output_signature_is_refused(tmp_path: Path) -> None:
    card = _card(tmp_path, PYFUNC, {"inputs": TEXT, "outputs": TEXT})
    with pytest.raises(ModelContractError, match="its signature outputs text"):
        card.declared_dim()


@pytest.mark.parametrize(
    ("meta", "hint", "metric"),
    [
        ({}, None, "COSINE"),
        ({}, "dot", "IP"),
        ({"metric": "inner_product"}, "cosine", "IP"),
        ({"indexpair": {"metric": "cosine"}}, "dot", "COSINE"),
    ],
)
def test_the_metric(tmp_path: Path, meta: dict, hint: str | None, metric: str) -> None:
    assert _card(tmp_path, PYFUNC, **meta).metric(hint) == metric


def test_a_metric_other_than_cosine_or_dot_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelContractError, match="its metric is 'euclidean'"):
        _card(tmp_path, PYFUNC, metric="euclidean").metric()


@pytest.mark.parametrize(
    "raw",
    [
        [[1.0, 2.0], [3.0, 4.0]],
        np.array([[1, 2], [3, 4]]),
        pd.Series([np.array([1.0, 2.0]), np.array([3.0, 4.0])]),
        pd.DataFrame({"embedding": [[1.0, 2.0], [3.0, 4.0]]}),
        pd.DataFrame({"d0": [1.0, 3.0], "d1": [2.0, 4.0]}),
    ],
)
def test_vectors_come_as_arrays_lists_series_or_frames(raw: Any) -> None:
    np.testing.assert_array_equal(as_matrix(raw, 2, "m"), [[1, 2], [3, 4]])


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (["a", "b"], r"m returned text \('a', ...\)"),
        (np.array(["a", "b"]), r"m returned text"),
        (np.array([1.0, 2.0]), r"shape \(2,\); expected \(rows, dim\)"),
        ([[1.0, 2.0]], "returned 1 vectors for 2 texts"),
        ([[1.0, 2.0], [1.0]], "no \\(texts, dim\\) matrix"),
    ],
)
def test_output_that_is_no_matrix_is_refused(raw: Any, fragment: str) -> None:
    with pytest.raises(ModelOutputError, match=fragment):
        as_matrix(raw, 2, "m")


def test_non_finite_and_zero_rows() -> None:
    texts = ["a", "b"]
    with pytest.raises(ModelOutputError, match="NaN or infinite values in 1 of 2"):
        check_vectors(np.array([[1.0, np.inf], [1.0, 0.0]]), texts, "m", allow_zero=True)
    with pytest.raises(ModelOutputError, match="1 all-zero vectors .first for text 'b'"):
        check_vectors(np.array([[1.0, 0.0], [0.0, 0.0]]), texts, "m", allow_zero=False)
    check_vectors(np.array([[1.0, 0.0], [0.0, 0.0]]), texts, "m", allow_zero=True)


@pytest.mark.parametrize(
    ("pooling", "expected"),
    [
        ("mean", [[2.0, 3.0]]),
        ("cls", [[1.0, 2.0]]),
        ("max", [[3.0, 4.0]]),
        ("last", [[3.0, 4.0]]),
    ],
)
def test_pooling_ignores_padding(pooling: str, expected: list) -> None:
    import torch

    tokens = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [99.0, 99.0]]])
    mask = torch.tensor([[1, 1, 0]])
    np.testing.assert_allclose(_pool(tokens, mask, pooling), expected)


@pytest.mark.parametrize(
    ("uri", "parts"),
    [
        ("models:/emb/3", ("emb", "3", None)),
        ("models:/emb@champion", ("emb", None, "champion")),
        ("models:/emb", ("emb", None, None)),
        ("emb/3", ("emb", "3", None)),
    ],
)
def test_model_uris(uri: str, parts: tuple) -> None:
    assert parse_model_uri(uri) == parts


@pytest.mark.parametrize("uri", ["runs:/abc/model", "models:/", "models:/a/b/c"])
def test_bad_model_uris_are_named(uri: str) -> None:
    from indexpair.errors import ConfigError

    with pytest.raises(ConfigError, match=f"model URI {uri!r} is not"):
        parse_model_uri(uri)
