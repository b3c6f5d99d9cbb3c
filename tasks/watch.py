"""Registry-watch stage: which staging versions have no pair and no build yet, and start them."""

from __future__ import annotations

import logging

from prefect import task
from prefect.logging import get_run_logger

from indexpair.gateways.mlflow import MlflowRegistry
from indexpair.settings import Settings
from indexpair.triggers import TriggerResult, trigger_promotion

log = logging.getLogger(__name__)
# A version whose build was denied or rejected keeps its place at staging; the watcher
# does not rebuild it every tick. A CI or webhook trigger (a deliberate act) still can.
SKIP_STATUSES = {"rejected"}


def staging_versions(settings: Settings, model_name: str) -> list[str]:
    """Versions of a model at the staging alias or in the legacy ``Staging`` stage.

    A model that is not registered has none (logged, not raised: one bad name in the
    watch list must not stop the others).
    """
    found = []
    with MlflowRegistry(settings) as registry:
        alias_version = registry.alias_version(model_name, settings.staging_model_alias)
        staged = registry.stage_versions(model_name, "Staging")
    if alias_version:
        found.append(alias_version)
    for version in staged:
        if version not in found:
            found.append(version)
    return found


def pending_versions(settings: Settings, model_name: str) -> list[str]:
    """Staging versions whose last build was not rejected (pairs and runs are checked
    by the trigger itself, under its lock)."""
    pending = []
    with MlflowRegistry(settings) as registry:
        for version in staging_versions(settings, model_name):
            status = registry.version_tags(model_name, version).get("indexpair.status")
            if status in SKIP_STATUSES:
                log.info("%s v%s: last build was %s; not rebuilding", model_name, version, status)
                continue
            pending.append(version)
    return pending


@task(name="find-staging-versions")
def find_staging_versions(settings: Settings, model_name: str) -> list[str]:
    """Task wrapper of :func:`pending_versions`."""
    versions = pending_versions(settings, model_name)
    get_run_logger().info("%s: staging versions to check: %s", model_name, versions or "none")
    return versions


@task(name="trigger-promotion")
def start_promotion(settings: Settings, model_name: str, version: str) -> TriggerResult:
    """Start the promote deployment for one version unless it is built or in flight."""
    result = trigger_promotion(settings, model_name, version)
    get_run_logger().info("%s", result.message)
    return result
