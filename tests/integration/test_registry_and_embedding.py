"""MLflow version resolution and Ray embedding with real models, good and faulty."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from indexpair.errors import ModelOutputError, RegistryError
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.mlflow import MlflowRegistry
from indexpair.settings import Settings
from tasks.embedding import embed, embed_into
from tasks.registry import probe
from tasks.source import SourceSpec, check_source, sample_texts
from tests.conftest import DATA_DIR, MODEL_NAME
from tests.integration.conftest import FAULTY_MODEL
from tests.support.pairs import create_test_pair

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
SMALL = SourceSpec(uri=str(DATA_DIR / "products_small.parquet"))


def test_resolve_by_alias_stage_and_explicit(
    stack_settings: Settings, demo_versions: dict[str, str]
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(stack_settings.mlflow_tracking_uri)
    client.set_registered_model_alias(MODEL_NAME, "staging", demo_versions["minilm"])
    with MlflowRegistry(stack_settings) as registry:
        ref = registry.resolve_version(MODEL_NAME)
    assert (ref.version, ref.resolved_by) == (demo_versions["minilm"], "alias 'staging'")
    assert ref.declared_dim == 384
    client.delete_registered_model_alias(MODEL_NAME, "staging")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client.transition_model_version_stage(MODEL_NAME, demo_versions["tfidf"], "Staging")
    try:
        with MlflowRegistry(stack_settings) as registry:
            ref = registry.resolve_version(MODEL_NAME)
        assert (ref.version, ref.resolved_by) == (demo_versions["tfidf"], "stage 'Staging'")
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            client.transition_model_version_stage(MODEL_NAME, demo_versions["tfidf"], "None")
    with MlflowRegistry(stack_settings) as registry:
        assert registry.resolve_version(MODEL_NAME, "1").version == "1"


@pytest.mark.parametrize(
    ("name", "version", "fragment"),
    [
        ("nobody-registered-this", None, "'nobody-registered-this' is not registered"),
        (MODEL_NAME, "4242", "has no version '4242'"),
        (MODEL_NAME, None, "no version at alias 'staging' and none in the legacy stage"),
    ],
)
def test_resolve_errors(
    stack_settings: Settings,
    demo_versions: dict[str, str],
    name: str,
    version: str | None,
    fragment: str,
) -> None:
    with MlflowRegistry(stack_settings) as registry, pytest.raises(RegistryError, match=fragment):
        registry.resolve_version(name, version)


def _build(settings: Settings, fault_version: str, name: str) -> int:
    with MlflowRegistry(settings) as registry:
        ref = registry.resolve_version(FAULTY_MODEL, fault_version)
    model = probe(settings, ref, sample_texts(settings, SMALL))
    summary, _ = check_source(settings, SMALL)
    with MilvusGateway(settings) as milvus:
        try:
            create_test_pair(milvus, name, model, summary, SMALL.uri)
            return embed_into(settings, SMALL, model, name, lambda done: None)
        finally:
            milvus.drop(name)


def test_ray_build_inserts_every_row_once(
    milvus_backend: Settings, demo_versions: dict[str, str]
) -> None:
    with MlflowRegistry(milvus_backend) as registry:
        ref = registry.resolve_version(MODEL_NAME, demo_versions["tfidf"])
    model = probe(milvus_backend, ref, sample_texts(milvus_backend, SMALL))
    summary, ids = check_source(milvus_backend, SMALL)
    name = "it_ray_build_v1"
    with MilvusGateway(milvus_backend) as milvus:
        try:
            create_test_pair(milvus, name, model, summary, SMALL.uri)
            seen: list[int] = []
            assert embed_into(milvus_backend, SMALL, model, name, seen.append) == summary.rows
            assert milvus.finalize(name) == summary.rows
            assert seen[-1] == summary.rows
            some = sorted(ids)[:3]
            stored = milvus.fetch(name, some)
            assert set(stored) == set(some)
            assert all(len(r["content_hash"]) == 64 for r in stored.values())
        finally:
            milvus.drop(name)


@pytest.mark.parametrize(
    ("fault", "fragment"),
    [
        ("nan", "NaN or infinite values in 1 of"),
        ("short", "vectors for"),
        ("zero", "all-zero vectors"),
        # Faults that only show in real batches surface from a Ray actor, still typed.
        ("nan_late", r"NaN or infinite values in 1 of \d+ vectors"),
        ("short_late", r"returned (\d+) vectors for \d+ texts"),
        ("wide", "returned 64-dim vectors; its signature declares 384"),
    ],
)
def test_faulty_model_output_is_refused(
    stack_settings: Settings,
    faulty_versions: dict[str, str],
    fault: str,
    fragment: str,
    tmp_path: Path,
) -> None:
    with pytest.raises(ModelOutputError, match=fragment) as info:
        _build(stack_settings, faulty_versions[fault], f"it_faulty_{fault}")
    assert f"model {FAULTY_MODEL} v{faulty_versions[fault]}" in str(info.value)


def test_a_few_rows_embed_the_same_here_and_on_ray(
    milvus_backend: Settings, demo_versions: dict[str, str]
) -> None:
    """A refresh's small delta skips Ray start-up; the vectors must not change with it."""
    with MlflowRegistry(milvus_backend) as registry:
        ref = registry.resolve_version(MODEL_NAME, demo_versions["tfidf"])
    model = probe(milvus_backend, ref, sample_texts(milvus_backend, SMALL))
    summary, ids = check_source(milvus_backend, SMALL)
    wanted = sorted(ids)[::40]
    stored = {}
    with MilvusGateway(milvus_backend) as milvus:
        try:
            for where, limit in (("here", len(wanted)), ("ray", 0)):
                settings = milvus_backend.model_copy(update={"embed_here_max_rows": limit})
                name = f"it_delta_{where}"
                create_test_pair(milvus, name, model, summary, SMALL.uri)
                assert embed(settings, SMALL, model, name, lambda done: None, wanted) == len(wanted)
                assert milvus.finalize(name) == len(wanted)
                stored[where] = milvus.fetch(name, wanted)
        finally:
            for where in ("here", "ray"):
                milvus.drop(f"it_delta_{where}")
    assert set(stored["here"]) == set(stored["ray"]) == set(wanted)
    for i in wanted:
        here, ray = stored["here"][i], stored["ray"][i]
        assert here["content_hash"] == ray["content_hash"]
        np.testing.assert_allclose(here["vector"], ray["vector"], atol=1e-6)
