"""The promote flow: build, validate, ask, and atomically switch a Model-Index Pair."""

from __future__ import annotations

from typing import Literal

from prefect import flow
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput
from prefect.logging import get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, State
from pydantic import BaseModel, Field

from indexpair.errors import ValidationFailed
from indexpair.gateways.mlflow import ModelVersionRef
from indexpair.pair import PairMetadata, PairState, check_name, collection_name
from indexpair.settings import Settings, load_settings
from tasks.collections import (
    create_collection,
    finalize_collection,
    mark_collection,
    read_live_pair,
)
from tasks.embedding import embed_and_insert
from tasks.promotion import promote_pair, reap_abandoned_builds, reject_build
from tasks.registry import ModelProbe, probe_model, resolve_model_version
from tasks.reporting import publish_report, report_markdown
from tasks.shadow import shadow_compare
from tasks.source import SourceSpec, SourceSummary, inspect_source
from tasks.validation import (
    GoldenSet,
    ValidationPolicy,
    ValidationReport,
    load_golden_queries,
    validate_candidate,
)


class ApprovalDecision(RunInput):
    """The approval form shown in the Prefect UI when a candidate waits."""

    approve: bool = Field(description="Promote this pair to production?")
    approver: str = Field(min_length=1, description="Who decides (name or e-mail)")
    comment: str = Field("", description="Why; recorded in Prefect and on the MLflow version")


class PromotionResult(BaseModel):
    """The outcome of one promote run."""

    outcome: Literal["promoted", "denied"]
    alias: str
    collection: str
    model_name: str
    model_version: str
    previous: str | None = None
    switch_ms: float | None = None
    approver: str = ""


def _run_name() -> str:
    params = flow_run.parameters
    return f"promote-{params.get('model_name')}-v{params.get('model_version') or 'staging'}"


@flow(name="promote", persist_result=True, flow_run_name=_run_name)
def promote(
    source: SourceSpec,
    golden_queries: str,
    model_name: str = "product-embedder",
    model_version: str | None = None,
    alias: str | None = None,
    validation: ValidationPolicy = ValidationPolicy(),  # noqa: B008 - a pydantic default
    approval_timeout_s: int = 86_400,
) -> PromotionResult | State:
    """Build a new pair for a model version and promote it once a person approves.

    Args:
        source: the corpus to index.
        golden_queries: golden-query file for validation.
        model_name: registered model in MLflow.
        model_version: explicit version; default the staging alias, then stage ``Staging``.
        alias: production alias to switch; default from settings.
        validation: thresholds and regression tolerance.
        approval_timeout_s: how long the run waits for approval before failing.
    """
    settings = load_settings()
    alias = check_name(alias or settings.production_alias, "alias name")
    run_id = str(flow_run.id)
    reap_abandoned_builds(settings, run_id)
    ref = resolve_model_version(settings, model_name, model_version)
    name = collection_name(ref.name, ref.version, run_id.replace("-", "")[:12])
    try:
        golden = load_golden_queries(golden_queries)
        summary, sample = inspect_source(settings, source, golden)
        model = probe_model(settings, ref, sample)
        live = read_live_pair(settings, alias)
        create_collection(settings, name, pair_metadata(name, ref, model, summary, alias, live))
        embed_and_insert(settings, source, model, name, summary.rows)
        rows = finalize_collection(settings, name, summary.rows)
        report = validate_and_report(settings, name, ref, model, golden, validation, live, rows)
        shadow = shadow_compare(settings, name, model.local_path, golden, live, validation.k)
    except Exception as exc:
        reject_build(settings, name, ref, f"{type(exc).__name__}: {exc}")
        raise
    description = report_markdown(report, ref, rows, validation, shadow)
    return decide_and_switch(settings, alias, name, live, ref, description, approval_timeout_s)


def pair_metadata(
    name: str,
    ref: ModelVersionRef,
    model: ModelProbe,
    summary: SourceSummary,
    alias: str,
    live: str | None,
) -> PairMetadata:
    """The pair identity a new build records on its collection."""
    return PairMetadata(
        model_name=ref.name,
        model_version=ref.version,
        model_uri=ref.uri,
        dim=model.dim,
        build_id=name.rsplit("_", 1)[1],
        source_uri=summary.uri,
        source_fingerprint=summary.fingerprint,
        source_rows=summary.rows,
        flow_run_id=str(flow_run.id),
        alias=alias,
        baseline=live or "",
    )


def validate_and_report(
    settings: Settings,
    name: str,
    ref: ModelVersionRef,
    model: ModelProbe,
    golden: GoldenSet,
    validation: ValidationPolicy,
    live: str | None,
    rows: int,
) -> ValidationReport:
    """The golden-query gate: report the figures, reject below the policy, else wait.

    Raises:
        ValidationFailed: naming the metrics that failed.
    """
    report = validate_candidate(
        settings, name, model.local_path, model.label, golden, validation, live
    )
    publish_report(settings, report, ref, rows, validation)
    if not report.passed:
        failures = "; ".join(report.failures)
        raise ValidationFailed(f"{model.label} rejected by validation: {failures}")
    mark_collection(settings, name, PairState.AWAITING_APPROVAL)
    return report


def decide_and_switch(
    settings: Settings,
    alias: str,
    name: str,
    live: str | None,
    ref: ModelVersionRef,
    description: str,
    timeout_s: int,
    auto: ApprovalDecision | None = None,
) -> PromotionResult | State:
    """Ask a person with the approval form (unless ``auto`` decided), then switch or clean up."""
    logger = get_run_logger()
    if auto is None:
        url = settings.flow_run_url(str(flow_run.id))
        logger.info("candidate %s awaits approval: %s", name, url)
        decision = suspend_flow_run(
            wait_for_input=ApprovalDecision.with_initial_data(description=description),
            timeout=timeout_s,
            key="approval",
        )
    else:
        decision = auto
        logger.info("approved automatically: %s", auto.comment)
    if not decision.approve:
        reason = f"denied by {decision.approver}: {decision.comment or 'no comment'}"
        reject_build(settings, name, ref, reason)
        return Completed(name="Denied", message=reason)
    try:
        switched = promote_pair(
            settings, alias, name, live, ref, decision.approver, decision.comment
        )
    except Exception as exc:
        reject_build(settings, name, ref, f"{type(exc).__name__}: {exc}")
        raise
    logger.info("approved by %s: %s is live behind %s", decision.approver, name, alias)
    return PromotionResult(
        outcome="promoted",
        alias=alias,
        collection=name,
        model_name=ref.name,
        model_version=ref.version,
        previous=switched.previous,
        switch_ms=switched.switch_ms,
        approver=decision.approver,
    )
