"""The garbage-collection flow: drop the collections retention no longer needs."""

from __future__ import annotations

from prefect import flow
from prefect.logging import get_run_logger

from indexpair.settings import load_settings
from tasks.reconcile import reconcile_records
from tasks.retention import (
    RetentionPolicy,
    Verdict,
    apply_retention,
    plan_retention,
    publish_retention,
)


@flow(name="collect-garbage", persist_result=True)
def collect_garbage(
    policy: RetentionPolicy = RetentionPolicy(),  # noqa: B008 - a pydantic default
    dry_run: bool = True,
) -> list[Verdict]:
    """Keep the live pairs and their rollback targets; drop what retention allows.

    Never drops an aliased collection, a build whose flow run still runs or waits for
    approval, or a collection without indexpair pair metadata. A manual run is a dry run
    unless ``dry_run`` is false; the daily schedule passes false.

    Args:
        policy: how many previous pairs to keep and when others expire.
        dry_run: only report what would be dropped.
    """
    settings = load_settings()
    reconcile_records(settings)  # roles right before retention reads them
    verdicts = apply_retention(settings, plan_retention(settings, policy), dry_run)
    publish_retention(verdicts, policy, dry_run)
    dropped = [v.name for v in verdicts if v.outcome == "dropped"]
    get_run_logger().info(
        "%s: %d collections, dropped %s",
        "dry run" if dry_run else "garbage collection",
        len(verdicts),
        ", ".join(dropped) or "none",
    )
    return verdicts
