"""The rollback flow: point the production alias back at a pair that served before."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger

from indexpair.pair import check_name
from indexpair.settings import load_settings
from tasks.reconcile import reconcile_records
from tasks.rollback import RollbackResult, prepare_rollback, switch_back


@flow(name="rollback", persist_result=True)
def rollback(alias: str | None = None, to: str | None = None, reason: str = "") -> RollbackResult:
    """Re-point ``alias`` to the most recent previous pair, or to the collection ``to``.

    The target must be a managed pair of the same model family that served this alias
    before; it is loaded and its row count checked before the switch, which takes the
    same per-alias lock and compare-and-swap as a promotion.

    Args:
        alias: production alias to move back; default from settings.
        to: a named managed collection; default the most recently retired pair.
        reason: why, recorded on the MLflow model version.
    """
    settings = load_settings()
    alias = check_name(alias or settings.production_alias, "alias name")
    reconcile_records(settings, alias)  # a rollback cut off earlier is finished first
    plan = prepare_rollback(settings, alias, to)
    result = switch_back(settings, plan, reason)
    get_run_logger().info(
        "alias %s -> %s (%s v%s), was %s; switch took %.1f ms",
        alias,
        result.collection,
        result.model_name,
        result.model_version,
        result.rolled_back_from,
        result.switch_ms,
    )
    create_markdown_artifact(
        key="rollback",
        markdown=(
            f"**Rollback of `{alias}`**: `{result.rolled_back_from}` "
            f"(v{result.from_model_version}) → `{result.collection}` "
            f"(v{result.model_version}); alias switch **{result.switch_ms:.1f} ms**"
            + ("; the target was loaded first" if result.loaded_now else "")
        ),
    )
    return result
