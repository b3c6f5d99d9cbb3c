"""Reconcile stage: repair pair states and the MLflow mirror from the alias truth."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from indexpair.reconcile import Fix, reconcile
from indexpair.settings import Settings


def describe(fix: Fix) -> str:
    """One line per fix, as the CLI and the run log show it."""
    status = "fixed" if fix.applied else ("FAILED: " + fix.error if fix.error else "to fix")
    return (
        f"[{fix.where}] {fix.target}: {fix.what} {fix.before} -> {fix.after} ({fix.why}) — {status}"
    )


@task(name="reconcile", cache_policy=NO_CACHE)
def reconcile_records(settings: Settings, alias: str | None = None) -> list[Fix]:
    """Apply every repair the alias truth implies; log what was fixed."""
    fixes = reconcile(settings, alias, apply=True)
    logger = get_run_logger()
    for fix in fixes:
        logger.warning("reconcile: %s", describe(fix))
    if not fixes:
        logger.info("reconcile: every record agrees with the aliases")
    return fixes
