"""Start a promotion, wait until it needs a person, and answer it — through the Prefect API.

The CLI, the demo and CI jobs all drive the ``promote`` deployment through these calls.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from indexpair.errors import IndexPairError
from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.prefect import RunSnapshot
from indexpair.settings import Settings


def _absolute(path: str) -> str:
    return path if "://" in path else str(Path(path).expanduser().resolve())


def promotion_parameters(
    model_name: str,
    source_uri: str,
    golden_queries: str,
    model_version: str | None = None,
    alias: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Parameters of the promote flow; local paths are made absolute for the worker."""
    params: dict[str, Any] = {
        "model_name": model_name,
        "model_version": model_version,
        "source": {"uri": _absolute(source_uri)},
        "golden_queries": _absolute(golden_queries),
        "alias": alias,
    }
    params.update(extra)
    return params


def refresh_parameters(
    source_uri: str, golden_queries: str, alias: str | None = None, auto_approve: bool = False
) -> dict[str, Any]:
    """Parameters of the refresh flow; local paths are made absolute for the worker."""
    return {
        "source": {"uri": _absolute(source_uri)},
        "golden_queries": _absolute(golden_queries),
        "alias": alias,
        "approval": "auto_if_no_regression" if auto_approve else "always",
    }


def start_promotion(
    settings: Settings,
    parameters: dict[str, Any],
    wait_s: float = 1800,
    on_started: Callable[[RunSnapshot], None] | None = None,
    deployment: str | None = None,
) -> RunSnapshot:
    """Start the promote deployment (or ``deployment``, e.g. the refresh); return once the
    run awaits approval or has ended.

    ``on_started`` hears about the run as soon as it exists (to print its link).
    """
    with prefect_api.prefect_api(settings):
        run = prefect_api.start_deployment(settings, parameters, deployment)
        if on_started is not None:
            on_started(run)
        return prefect_api.wait(settings, run["id"], wait_s)


def answer(
    settings: Settings,
    flow_run_id: str,
    approve: bool,
    approver: str,
    comment: str = "",
    wait_s: float = 600,
) -> RunSnapshot:
    """Resume a waiting run with the approval form's input; return its final state.

    The form names the build it is about (candidate, model version, source fingerprint,
    report digest); the answer sends those values back as the form shows them now, so it
    approves the build whose report is on screen and nothing else.

    Raises:
        IndexPairError: the run does not exist or is not awaiting approval.
    """
    if not approver.strip():
        raise IndexPairError("an approval needs an approver name")
    with prefect_api.prefect_api(settings):
        answer = {"approve": approve, "approver": approver, "comment": comment}
        prefect_api.answer_form(settings, flow_run_id, answer)
        return prefect_api.wait(settings, flow_run_id, wait_s, until_paused=False)
