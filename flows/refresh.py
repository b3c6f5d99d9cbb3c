"""The refresh flow: same model, changed data; re-embed only what changed, then promote."""

from __future__ import annotations

from typing import Literal

from prefect import flow
from prefect.runtime import flow_run
from prefect.states import Completed, State

from flows.approval import (
    ApprovalDecision,
    PromotionResult,
    binding_of,
    decide_and_switch,
    validated,
)
from indexpair import faults
from indexpair.errors import PairNotFound
from indexpair.notifications import describe_run
from indexpair.pair import check_name
from indexpair.settings import load_settings
from tasks.collections import (
    BuildPin,
    check_pinned_source,
    create_collection,
    finalize_collection,
    pair_metadata,
    pin_refresh,
)
from tasks.embedding import embed_and_insert
from tasks.promotion import reject_build
from tasks.refresh import compare_with_live, copy_unchanged_vectors, publish_changes
from tasks.registry import probe_model
from tasks.reporting import report_markdown
from tasks.retention import reap_abandoned_builds
from tasks.source import SourceSpec, inspect_source, verify_source
from tasks.validation import ValidationPolicy, ValidationReport, load_golden_queries

ApprovalMode = Literal["always", "auto_if_no_regression"]
AUTO_APPROVER = "indexpair (automatic: no metric regressed)"


def auto_decision(report: ValidationReport, build: BuildPin) -> ApprovalDecision | None:
    """Approve without a person when no golden-query metric is worse than the live pair's."""
    if report.live is None:
        return None
    live = report.live.as_dict()
    pairs = [(k, v, live[k]) for k, v in report.candidate.as_dict().items()]
    if any(value < before for _, value, before in pairs):
        return None
    figures = ", ".join(f"{k} {v:.3f} ≥ {b:.3f}" for k, v, b in pairs)
    return ApprovalDecision(
        approve=True, approver=AUTO_APPROVER, comment=figures, **binding_of(build).model_dump()
    )


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
    build = pin_refresh(settings, run_id, alias)
    describe_run(run_id, model=f"{build.ref.name} v{build.ref.version}", alias=alias)
    if build.approved:  # resumed after the approval: only the (idempotent) switch is left
        return decide_and_switch(settings, alias, build, "", approval_timeout_s)
    if build.baseline is None:
        raise PairNotFound(f"alias {alias!r} has no live pair to refresh; promote one first")
    golden = load_golden_queries(golden_queries)
    summary, sample = inspect_source(settings, source, golden)
    check_pinned_source(build, summary)
    changes = compare_with_live(settings, source, build.baseline, summary.fingerprint)
    if not changes.has_changes:
        publish_changes(settings, changes, build.ref, None)
        return Completed(
            name="NoChange", message=f"the source matches {build.baseline}; nothing to do"
        )
    try:
        model = probe_model(settings, build.ref, sample)
        meta = pair_metadata(build, model, summary, alias, run_id, golden_queries, validation)
        create_collection(settings, build.name, meta)
        if build.needs_rows:
            copy_unchanged_vectors(settings, changes, build.name, model.contract)
            faults.crash_point("refresh.copied")
            if changes.to_embed:
                embed_and_insert(
                    settings,
                    source,
                    model,
                    build.name,
                    len(changes.to_embed),
                    changes.to_embed,
                    fingerprint=summary.fingerprint,
                )
        rows = finalize_collection(settings, build.name, summary.rows)
        verify_source(settings, summary)
        publish_changes(settings, changes, build.ref, build.name)
        report = validated(settings, build, model, golden, validation, rows)
    except Exception as exc:
        reject_build(settings, build.name, build.ref, f"{type(exc).__name__}: {exc}")
        raise
    build.source_fingerprint = summary.fingerprint
    auto = auto_decision(report, build) if approval == "auto_if_no_regression" else None
    description = report_markdown(report, build.ref, rows, validation)
    return decide_and_switch(settings, alias, build, description, approval_timeout_s, auto)
