"""The MLflow gateway: registry look-ups, tags, aliases and model loading.

Registry calls go through :class:`MlflowRegistry`, used as a context
(``with MlflowRegistry(settings) as registry:``). Loading a downloaded model needs no
server: that is :func:`indexpair.models.load_model`.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from indexpair.errors import RegistryError
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

    @property
    def display(self) -> str:
        """How messages name it: ``product-embedder v2 (models:/product-embedder/2)``."""
        return f"{self.name} v{self.version} ({self.uri})"


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


class MlflowRegistry:
    """The MLflow model registry, reached through one ``MlflowClient`` for its lifetime.

    Use it as a context: ``with MlflowRegistry(settings) as registry: ...``. The client
    is built on first use (mlflow is slow to import), so entering costs nothing.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The ``MlflowClient``, built on first use."""
        if self._client is None:
            # Imported lazily: mlflow is slow to import and no client is built at import time.
            from mlflow import MlflowClient

            self._client = MlflowClient(
                tracking_uri=self.settings.mlflow_tracking_uri,
                registry_uri=self.settings.mlflow_tracking_uri,
            )
        return self._client

    def close(self) -> None:
        """Drop the client (MLflow's HTTP session needs no explicit release)."""
        self._client = None

    def __enter__(self) -> MlflowRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def resolve_version(
        self, name: str, version: str | None = None, alias: str | None = None
    ) -> ModelVersionRef:
        """Which model version to build: explicit version, else the staging alias, else stage.

        Raises:
            RegistryError: no such model, version, or nothing at the staging alias/stage;
                or the MLflow server does not answer (the message names its URL).
        """
        from mlflow.exceptions import MlflowException

        client = self.client
        alias = alias or self.settings.staging_model_alias
        try:
            client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise unreachable(self.settings, exc) from exc
            raise RegistryError(
                f"model {name!r} is not registered in MLflow at {self.settings.mlflow_tracking_uri}"
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

    def download_model(self, ref: ModelVersionRef) -> Path:
        """Download a model version once into the state directory; return its local path."""
        import mlflow

        target = self.settings.state_dir / "models" / ref.name / ref.version
        if (target / "MLmodel").exists():
            return target
        target.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in logs
        mlflow.set_tracking_uri(self.settings.mlflow_tracking_uri)
        log.info("downloading %s to %s", ref.uri, target)
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=str(target)))

    def set_tags(self, ref: ModelVersionRef, tags: dict[str, Any]) -> None:
        """Set ``indexpair.*`` tags on a model version."""
        client = self.client
        for key, value in tags.items():
            client.set_model_version_tag(ref.name, ref.version, TAG_PREFIX + key, str(value))

    def set_build_tags(self, ref: ModelVersionRef, tags: dict[str, Any]) -> None:
        """Tags about one build of a version. A version serving production keeps its
        ``status`` and ``collection`` tags: a failed rebuild must not make it look rejected."""
        if self.alias_version(ref.name, self.settings.production_model_alias) == ref.version:
            tags = {k: v for k, v in tags.items() if k not in ("status", "collection")}
        self.set_tags(ref, tags)

    def version_tags(self, name: str, version: str) -> dict[str, str]:
        """Tags of one model version."""
        return dict(self.client.get_model_version(name, version).tags)

    def set_alias(self, ref: ModelVersionRef, alias: str) -> None:
        """Point a registered-model alias (e.g. ``production``) at this version."""
        self.client.set_registered_model_alias(ref.name, alias, ref.version)

    def alias_version(self, name: str, alias: str) -> str | None:
        """Version a registered-model alias points at, or None."""
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            return None

    def log_validation_run(
        self,
        ref: ModelVersionRef,
        collection: str,
        metrics: dict[str, float],
        params: dict[str, Any],
    ) -> str:
        """Record validation figures as an MLflow run; return its id."""
        client = self.client
        experiment = client.get_experiment_by_name("indexpair-validation")
        experiment_id = (
            experiment.experiment_id
            if experiment
            else client.create_experiment("indexpair-validation")
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

    def register_webhook(self, name: str, url: str, secret: str) -> str:
        """Create (or re-point) an MLflow webhook for ``model_version_alias.created``; its id.

        The MLflow server must run with a SQL backend and a fixed
        ``MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY``; an ``http`` or loopback URL also needs
        ``MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https`` and ``MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true``.
        """
        client = self.client
        events = ["model_version_alias.created"]
        for hook in client.list_webhooks():
            if hook.name == name:
                client.update_webhook(hook.webhook_id, url=url, events=events, secret=secret)
                return str(hook.webhook_id)
        return str(
            client.create_webhook(name=name, url=url, events=events, secret=secret).webhook_id
        )

    def stage_versions(self, name: str, stage: str) -> list[str]:
        """Versions of a model in a legacy stage (e.g. ``Staging``); none for an unknown model."""
        from mlflow.exceptions import MlflowException

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                found = self.client.get_latest_versions(name, stages=[stage])
        except MlflowException as exc:
            log.warning("cannot list the %s versions of %r: %s", stage, name, exc)
            return []
        return [str(mv.version) for mv in found]
