"""The refresh flow: same model, changed data; re-embed only what changed, then promote."""

from __future__ import annotations

from typing import Literal

from prefect import flow
from prefect.runtime import flow_run
from prefect.states import Completed, State

from flows.promote import (
    ApprovalDecision,
    PromotionResult,
    decide_and_switch,
    pair_metadata,
    validate_and_report,
)
from indexpair.errors import PairNotFound
from indexpair.pair import check_name, collection_name
from indexpair.settings import load_settings
from tasks.collections import (
    create_collection,
    finalize_collection,
    read_live_pair,
    read_pair_model,
)
from tasks.embedding import embed_and_insert
from tasks.promotion import reap_abandoned_builds, reject_build
from tasks.refresh import compare_with_live, copy_unchanged_vectors, publish_changes
from tasks.registry import probe_model
from tasks.reporting import report_markdown
from tasks.source import SourceSpec, inspect_source
from tasks.validation import ValidationPolicy, ValidationReport, load_golden_queries

ApprovalMode = Literal["always", "auto_if_no_regression"]
AUTO_APPROVER = "indexpair (automatic: no metric regressed)"


def auto_decision(report: ValidationReport) -> ApprovalDecision | None:
    """Approve without a person when no golden-query metric is worse than the live pair's."""
    if report.live is None:
        return None
    live = report.live.as_dict()
    pairs = [(k, v, live[k]) for k, v in report.candidate.as_dict().items()]
    if any(value < before for _, value, before in pairs):
        return None
    figures = ", ".join(f"{k} {v:.3f} ≥ {b:.3f}" for k, v, b in pairs)
    return ApprovalDecision(approve=True, approver=AUTO_APPROVER, comment=figures)


def _run_name() -> str:
    return f"refresh-{flow_run.parameters.get('alias') or 'production'}"


@flow(name="refresh", persist_result=True, flow_run_name=_run_name)
def refresh(
    source: SourceSpec,
    golden_queries: str,
    alias: str | None = None,
    validation: ValidationPolicy = ValidationPolicy(),  # noqa: B008 - a pydantic default
    approval: ApprovalMode = "always",
    approval_timeout_s: int = 86_400,
) -> PromotionResult | State:
    """Rebuild the live pair's collection from the current source with the same model.

    Unchanged rows (same id, same content hash) reuse their vectors from the live
    collection; new and changed rows are embedded; deleted rows are left out. Then the
    same validation, approval and locked compare-and-swap as a promotion.

    Args:
        source: the corpus as it is now.
        golden_queries: golden-query file for validation.
        alias: production alias whose live pair is refreshed; default from settings.
        validation: thresholds and regression tolerance.
        approval: ``always`` asks a person; ``auto_if_no_regression`` approves by itself
            when no metric is worse than the live pair's (recorded as such), else asks.
        approval_timeout_s: how long the run waits for approval before failing.
    """
    settings = load_settings()
    run_id = str(flow_run.id)
    alias = check_name(alias or settings.production_alias, "alias name")
    reap_abandoned_builds(settings, run_id)
    live = read_live_pair(settings, alias)
    if live is None:
        raise PairNotFound(f"alias {alias!r} has no live pair to refresh; promote one first")
    ref = read_pair_model(settings, live)
    golden = load_golden_queries(golden_queries)
    summary, sample = inspect_source(settings, source, golden)
    changes = compare_with_live(settings, source, live)
    if not changes.has_changes:
        publish_changes(settings, changes, ref, None)
        return Completed(name="NoChange", message=f"the source matches {live}; nothing to do")
    name = collection_name(ref.name, ref.version, run_id.replace("-", "")[:12])
    try:
        model = probe_model(settings, ref, sample)
        create_collection(settings, name, pair_metadata(name, ref, model, summary, alias, live))
        copy_unchanged_vectors(settings, changes, name)
        if changes.to_embed:
            embed_and_insert(settings, source, model, name, len(changes.to_embed), changes.to_embed)
        rows = finalize_collection(settings, name, summary.rows)
        publish_changes(settings, changes, ref, name)
        report = validate_and_report(settings, name, ref, model, golden, validation, live, rows)
    except Exception as exc:
        reject_build(settings, name, ref, f"{type(exc).__name__}: {exc}")
        raise
    auto = auto_decision(report) if approval == "auto_if_no_regression" else None
    description = report_markdown(report, ref, rows, validation)
    return decide_and_switch(
        settings, alias, name, live, ref, description, approval_timeout_s, auto
    )
