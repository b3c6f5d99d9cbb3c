"""The MLflow gateway: registry look-ups, tags, aliases and model loading."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from indexpair.errors import ModelOutputError, RegistryError
from indexpair.settings import Settings

log = logging.getLogger(__name__)
TAG_PREFIX = "indexpair."


class ModelVersionRef(BaseModel):
    """One registered model version, as indexpair addresses it."""

    name: str
    version: str
    uri: str
    source: str = ""
    resolved_by: str = "explicit"
    declared_dim: int | None = None


def _client(settings: Settings) -> Any:
    # Imported lazily: mlflow is slow to import and no client is built at import time.
    from mlflow import MlflowClient

    return MlflowClient(
        tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri
    )


def _declared_dim(client: Any, name: str, version: str) -> int | None:
    """Output width declared by the model's signature, if it declares one."""
    try:
        from mlflow.models import get_model_info

        info = get_model_info(f"models:/{name}/{version}")
    except Exception as exc:  # a model without a readable MLmodel file just has no signature
        log.debug("no signature for %s v%s: %s", name, version, exc)
        return None
    outputs = info.signature.outputs if info.signature else None
    if outputs is None:
        return None
    spec = outputs.inputs[0] if outputs.inputs else None
    shape = getattr(spec, "shape", None)
    return int(shape[-1]) if shape and int(shape[-1]) > 0 else None


def unreachable(settings: Settings, exc: Exception) -> RegistryError:
    """The error for an MLflow server that did not answer (after MLflow's own retries).

    MLflow's HTTP client already retried with backoff (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``);
    a connection error or a 5xx reaching us is final.
    """
    code = getattr(exc, "error_code", "") or type(exc).__name__
    return RegistryError(
        f"MLflow at {settings.mlflow_tracking_uri} is unreachable or failing ({code}); "
        "is the server up and MLFLOW_TRACKING_URI right?"
    )


def is_registry_error(exc: BaseException) -> bool:
    """Whether an exception is MLflow failing or unreachable (not a bug of ours)."""
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException | RegistryError | OSError)


def resolve_version(
    settings: Settings, name: str, version: str | None = None, alias: str | None = None
) -> ModelVersionRef:
    """Which model version to build: explicit version, else the staging alias, else stage.

    Raises:
        RegistryError: no such model, version, or nothing at the staging alias/stage;
            or the MLflow server does not answer (the message names its URL).
    """
    from mlflow.exceptions import MlflowException

    client = _client(settings)
    alias = alias or settings.staging_model_alias
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise unreachable(settings, exc) from exc
        raise RegistryError(
            f"model {name!r} is not registered in MLflow at {settings.mlflow_tracking_uri}"
        ) from exc
    resolved_by = "explicit"
    if version is None:
        try:
            version = str(client.get_model_version_by_alias(name, alias).version)
            resolved_by = f"alias {alias!r}"
        except MlflowException:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                latest = client.get_latest_versions(name, stages=["Staging"])
            if not latest:
                raise RegistryError(
                    f"model {name!r} has no version at alias {alias!r} "
                    "and none in the legacy stage 'Staging'"
                ) from None
            version = str(latest[0].version)
            resolved_by = "stage 'Staging'"
    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"model {name!r} has no version {version!r}") from exc
    ref = ModelVersionRef(
        name=name,
        version=str(mv.version),
        uri=f"models:/{name}/{mv.version}",
        source=str(mv.source or ""),
        resolved_by=resolved_by,
    )
    ref.declared_dim = _declared_dim(client, name, ref.version)
    return ref


def download_model(settings: Settings, ref: ModelVersionRef) -> Path:
    """Download a model version once into the state directory; return its local path."""
    import mlflow

    target = settings.state_dir / "models" / ref.name / ref.version
    if (target / "MLmodel").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in logs
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    log.info("downloading %s to %s", ref.uri, target)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=str(target)))


def load_model(path: Path | str) -> Any:
    """Load a pyfunc embedding model from a local path."""
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(str(path))


def encode(
    model: Any,
    texts: list[str],
    what: str,
    allow_zero: bool = False,
    params: dict[str, Any] | None = None,
) -> np.ndarray:
    """Encode texts and check the output: one finite, non-zero float vector per text.

    ``allow_zero`` accepts all-zero rows (a query with no word the model knows);
    ``params`` go to the model's ``predict`` (``batch_size``: texts per forward pass).

    Raises:
        ModelOutputError: naming the model and what is wrong with its output.
    """
    raw = model.predict(texts, params=params) if params else model.predict(texts)
    vectors = np.asarray(raw, dtype=np.float32)
    if vectors.ndim != 2:
        raise ModelOutputError(
            f"{what} returned an array of shape {vectors.shape}; expected (rows, dim)"
        )
    if vectors.shape[0] != len(texts):
        raise ModelOutputError(f"{what} returned {vectors.shape[0]} vectors for {len(texts)} texts")
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
    return vectors


def set_tags(settings: Settings, ref: ModelVersionRef, tags: dict[str, Any]) -> None:
    """Set ``indexpair.*`` tags on a model version."""
    client = _client(settings)
    for key, value in tags.items():
        client.set_model_version_tag(ref.name, ref.version, TAG_PREFIX + key, str(value))


def set_build_tags(settings: Settings, ref: ModelVersionRef, tags: dict[str, Any]) -> None:
    """Tags about one build of a version. A version serving production keeps its
    ``status`` and ``collection`` tags: a failed rebuild must not make it look rejected."""
    if alias_version(settings, ref.name, settings.production_model_alias) == ref.version:
        tags = {k: v for k, v in tags.items() if k not in ("status", "collection")}
    set_tags(settings, ref, tags)


def version_tags(settings: Settings, name: str, version: str) -> dict[str, str]:
    """Tags of one model version."""
    return dict(_client(settings).get_model_version(name, version).tags)


def set_alias(settings: Settings, ref: ModelVersionRef, alias: str) -> None:
    """Point a registered-model alias (e.g. ``production``) at this version."""
    _client(settings).set_registered_model_alias(ref.name, alias, ref.version)


def alias_version(settings: Settings, name: str, alias: str) -> str | None:
    """Version a registered-model alias points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return str(_client(settings).get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def log_validation_run(
    settings: Settings,
    ref: ModelVersionRef,
    collection: str,
    metrics: dict[str, float],
    params: dict[str, Any],
) -> str:
    """Record validation figures as an MLflow run; return its id."""
    client = _client(settings)
    experiment = client.get_experiment_by_name("indexpair-validation")
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment("indexpair-validation")
    )
    run = client.create_run(
        experiment_id,
        run_name=f"validate {ref.name} v{ref.version}",
        tags={
            "indexpair.collection": collection,
            "indexpair.model_name": ref.name,
            "indexpair.model_version": ref.version,
        },
    )
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, float(value))
    for key, value in params.items():
        client.log_param(run.info.run_id, key, str(value))
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def register_webhook(settings: Settings, name: str, url: str, secret: str) -> str:
    """Create (or re-point) an MLflow webhook for ``model_version_alias.created``; its id.

    The MLflow server must run with a SQL backend and a fixed
    ``MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY``; an ``http`` or loopback URL also needs
    ``MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https`` and ``MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true``.
    """
    client = _client(settings)
    events = ["model_version_alias.created"]
    for hook in client.list_webhooks():
        if hook.name == name:
            client.update_webhook(hook.webhook_id, url=url, events=events, secret=secret)
            return str(hook.webhook_id)
    return str(client.create_webhook(name=name, url=url, events=events, secret=secret).webhook_id)


def stage_versions(settings: Settings, name: str, stage: str) -> list[str]:
    """Versions of a model in a legacy stage (e.g. ``Staging``); none for an unknown model."""
    from mlflow.exceptions import MlflowException

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            found = _client(settings).get_latest_versions(name, stages=[stage])
    except MlflowException as exc:
        log.warning("cannot list the %s versions of %r: %s", stage, name, exc)
        return []
    return [str(mv.version) for mv in found]
