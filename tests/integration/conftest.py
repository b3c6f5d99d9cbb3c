"""Fixtures for integration tests: faulty model versions registered in the real MLflow."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from indexpair.settings import Settings

SUPPORT = Path(__file__).resolve().parent.parent / "support"
FAULTY_MODEL = "faulty-embedder"


@pytest.fixture(scope="session")
def faulty_versions(stack_settings: Settings) -> dict[str, str]:
    """One version per defect of a TF-IDF model: nan, short, zero, and a wrong signature."""
    import joblib
    import mlflow
    import pandas as pd

    from demo.catalog import product_texts
    from indexpair.models.helpers import TfidfEmbedder, embedder_signature, fit_tfidf_pipeline

    sys.path.insert(0, str(SUPPORT))  # pickled as top-level `faulty_models`, shipped as code
    from faulty_models import FaultyEmbedder  # type: ignore[import-not-found]

    mlflow.set_tracking_uri(stack_settings.mlflow_tracking_uri)
    mlflow.set_experiment("indexpair-test-models")
    catalog = pd.read_parquet(SUPPORT.parent.parent / "demo" / "data" / "products_small.parquet")
    path = stack_settings.state_dir / "faulty_pipeline.joblib"
    joblib.dump(fit_tfidf_pipeline(product_texts(catalog), n_components=64), path)
    versions = {}
    models = {
        "nan": (FaultyEmbedder("nan"), 64),
        "short": (FaultyEmbedder("short"), 64),
        "zero": (FaultyEmbedder("zero"), 64),
        "nan_late": (FaultyEmbedder("nan_late"), 64),
        "short_late": (FaultyEmbedder("short_late"), 64),
        "wide": (TfidfEmbedder(), 384),
    }
    for fault, (model, declared) in models.items():
        with mlflow.start_run(run_name=f"faulty-{fault}"):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=model,
                artifacts={"pipeline": str(path)},
                signature=embedder_signature(declared),
                registered_model_name=FAULTY_MODEL,
                code_paths=[str(SUPPORT / "faulty_models.py")],
                pip_requirements=["mlflow", "scikit-learn"],
            )
        versions[fault] = str(info.registered_model_version)
    return versions
