"""Registry stage: which model version to build, and what MLflow learns about the build."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from indexpair.errors import ModelOutputError
from indexpair.gateways.mlflow import MlflowRegistry, ModelVersionRef, encode, load_model
from indexpair.settings import Settings


class ModelProbe(BaseModel):
    """A model version ready to build with: where it lies locally and what it outputs."""

    ref: ModelVersionRef
    local_path: str
    dim: int

    @property
    def label(self) -> str:
        """Human name used in messages: ``model product-embedder v2``."""
        return f"model {self.ref.name} v{self.ref.version}"


def probe(settings: Settings, ref: ModelVersionRef, sample: list[str]) -> ModelProbe:
    """Download the model, encode a sample, and learn its output width.

    Raises:
        ModelOutputError: the output is malformed or disagrees with the declared signature.
    """
    with MlflowRegistry(settings) as registry:
        path = registry.download_model(ref)
    label = f"model {ref.name} v{ref.version}"
    vectors = encode(load_model(path), sample, label)
    dim = int(vectors.shape[1])
    if ref.declared_dim is not None and dim != ref.declared_dim:
        raise ModelOutputError(
            f"{label} returned {dim}-dim vectors; its signature declares {ref.declared_dim}"
        )
    return ModelProbe(ref=ref, local_path=str(path), dim=dim)


# Not cached: the result names a path on this machine's disk, which a resumed run on
# another worker does not have.
probe_model = task(name="probe-model", cache_policy=NO_CACHE)(probe)


@task(name="fetch-model", cache_policy=NO_CACHE)
def fetch_model(settings: Settings, ref: ModelVersionRef, dim: int) -> ModelProbe:
    """A model version a pair was built with, downloaded (again, if this disk lacks it)."""
    with MlflowRegistry(settings) as registry:
        path = registry.download_model(ref)
    return ModelProbe(ref=ref, local_path=str(path), dim=dim)
