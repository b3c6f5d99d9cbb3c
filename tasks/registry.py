"""Registry stage: which model version to build, and what the model contract says of it."""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from indexpair.errors import ConfigError
from indexpair.gateways.mlflow import MlflowRegistry, ModelVersionRef
from indexpair.models import SAMPLE_TEXTS, EmbeddingModel, ModelContract, load_model
from indexpair.models.contract import inspect_outputs
from indexpair.settings import Settings


class ModelProbe(BaseModel):
    """A model version ready to build with: where it lies locally and its contract."""

    ref: ModelVersionRef
    local_path: str
    contract: ModelContract

    @property
    def dim(self) -> int:
        """Output width, as probed."""
        return self.contract.dim

    @property
    def label(self) -> str:
        """Human name used in messages: ``model product-embedder v2``."""
        return label_of(self.ref)


def label_of(ref: ModelVersionRef) -> str:
    """``model NAME vN``, as messages name a model version."""
    return f"model {ref.name} v{ref.version}"


def contract_of(
    model: EmbeddingModel, ref: ModelVersionRef, sample: list[str], allow_zero: bool = False
) -> ModelContract:
    """Encode ``sample`` as documents and as queries; the contract with its dimension.

    ``allow_zero`` accepts all-zero document vectors (texts a TF-IDF model has no word
    of); a build's own sample must not have any.

    Raises:
        ModelOutputError: the output breaks the contract (shape, NaN, zero rows, width).
    """
    label = f"model {ref.display}"
    contract = model.contract
    declared = [d for d in (model.card.declared_dim(), ref.declared_dim) if d]
    docs = model.encode(sample, label, prompt=contract.document_prompt, allow_zero=allow_zero)
    queries = model.encode(sample[:4], label, prompt=contract.query_prompt, allow_zero=True)
    return inspect_outputs(contract, docs, queries, declared, ref.display)


def probe(settings: Settings, ref: ModelVersionRef, sample: list[str]) -> ModelProbe:
    """Download the model, check it against the contract on a sample, learn its width.

    Raises:
        ModelContractError: the model does not take text, or declares what it does not do.
        ModelOutputError: the output is malformed (shape, NaN, all-zero rows).
    """
    with MlflowRegistry(settings) as registry:
        path = registry.download_model(ref)
    model = load_model(path, ref.display)
    contract = contract_of(model, ref, sample or SAMPLE_TEXTS)
    return ModelProbe(ref=ref, local_path=str(path), contract=contract)


# Not cached: the result names a path on this machine's disk, which a resumed run on
# another worker does not have.
probe_model = task(name="probe-model", cache_policy=NO_CACHE)(probe)


@task(name="fetch-model", cache_policy=NO_CACHE)
def fetch_model(settings: Settings, ref: ModelVersionRef) -> str:
    """The local path of a model version a pair was built with (downloaded if missing)."""
    with MlflowRegistry(settings) as registry:
        return str(registry.download_model(ref))


class ModelCheck(BaseModel):
    """What ``indexpair models check`` found: the contract and the encode throughput."""

    ref: ModelVersionRef
    contract: ModelContract
    load_s: float
    texts: int
    texts_per_s: float


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` or ``models:/NAME`` → parts.

    Raises:
        ConfigError: naming the URI when it is none of those.
    """
    rest = uri.removeprefix("models:/").strip("/")
    if not rest or "/" in rest.split("@")[0] and not rest.rsplit("/", 1)[1].isdigit():
        raise ConfigError(
            f"model URI {uri!r} is not models:/NAME/VERSION, models:/NAME@ALIAS or models:/NAME"
        )
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return name, None, alias
    if "/" in rest:
        name, version = rest.rsplit("/", 1)
        return name, version, None
    return rest, None, None


def check_model(settings: Settings, uri: str, texts: int = 256) -> ModelCheck:
    """Check a registered version against the contract and time encoding, building nothing.

    Raises:
        RegistryError: no such model, version or alias.
        ModelContractError, ModelOutputError: the model is outside the contract.
    """
    name, version, alias = parse_model_uri(uri)
    with MlflowRegistry(settings) as registry:
        ref = registry.resolve_version(name, version, alias)
        path = registry.download_model(ref)
    started = time.perf_counter()
    model = load_model(path, ref.display)
    load_s = time.perf_counter() - started
    contract = contract_of(model, ref, SAMPLE_TEXTS, allow_zero=True)
    usual = [t for t in SAMPLE_TEXTS if len(t) < 500]  # the over-long one tests truncation
    sample = (usual * (texts // len(usual) + 1))[:texts]
    started = time.perf_counter()
    model.encode(sample, label_of(ref), prompt=contract.document_prompt, allow_zero=True)
    rate = texts / max(time.perf_counter() - started, 1e-9)
    return ModelCheck(ref=ref, contract=contract, load_s=load_s, texts=texts, texts_per_s=rate)
