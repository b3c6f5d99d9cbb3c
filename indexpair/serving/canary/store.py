"""Where the canary evidence is kept and shown: on the candidate collection in Milvus
(pair property ``canary``) and in the candidate's approval report in Prefect."""

from __future__ import annotations

import logging

import httpx
from pydantic import ValidationError

from indexpair.errors import IndexPairError
from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.milvus import MilvusGateway
from indexpair.pair import PairMetadata
from indexpair.serving.canary.stats import LIVE_EVIDENCE_HEADING, CanaryStats, canary_markdown
from indexpair.settings import Settings

log = logging.getLogger(__name__)
CANARY_APPROVER = "indexpair canary"


def report_key(collection: str) -> str:
    """Key of a candidate's approval report artifact in Prefect."""
    return f"validation-{collection.replace('_', '-')}"


def stored_stats(pair: PairMetadata) -> CanaryStats | None:
    """The evidence recorded on a candidate, or None (none yet, or unreadable)."""
    if not pair.canary:
        return None
    try:
        return CanaryStats.model_validate_json(pair.canary)
    except ValidationError:
        log.warning("canary evidence on %s v%s is unreadable", pair.model_name, pair.model_version)
        return None


def save_stats(milvus: MilvusGateway, stats: CanaryStats) -> None:
    """Record the evidence on the candidate collection."""
    milvus.update_pair(stats.candidate, canary=stats.model_dump_json())


def with_evidence(report: str | None, stats: CanaryStats) -> str:
    """The approval report with its live-evidence section replaced by the current one."""
    base = (report or "").split(LIVE_EVIDENCE_HEADING, 1)[0].rstrip()
    section = canary_markdown(stats)
    return (
        f"{base}\n\n{section}\n" if base else f"# Candidate pair `{stats.candidate}`\n\n{section}\n"
    )


def publish_report(settings: Settings, stats: CanaryStats, flow_run_id: str) -> bool:
    """Add a version of the candidate's approval report carrying the live evidence.

    Returns:
        False when Prefect could not be reached (logged; the evidence stays in Milvus).
    """
    key = report_key(stats.candidate)
    try:
        with prefect_api.prefect_api(settings):
            report = with_evidence(prefect_api.latest_markdown(key), stats)
            prefect_api.publish_markdown(
                key, report, f"Validation and live evidence of {stats.candidate_model}", flow_run_id
            )
    except (httpx.HTTPError, IndexPairError, RuntimeError) as exc:
        log.warning("approval report of %s not updated: %s", stats.candidate, exc)
        return False
    return True


def deny(settings: Settings, flow_run_id: str, reason: str) -> None:
    """Answer the candidate's waiting approval form with a denial giving ``reason``."""
    with prefect_api.prefect_api(settings):
        prefect_api.answer_form(
            settings,
            flow_run_id,
            {"approve": False, "approver": CANARY_APPROVER, "comment": reason},
        )
