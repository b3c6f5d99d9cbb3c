"""The promote flow: build, validate, ask, and atomically switch a Model-Index Pair."""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run
from prefect.states import State

from flows.approval import PromotionResult, decide_and_switch, validated
from indexpair import faults
from indexpair.notifications import describe_run
from indexpair.pair import check_name
from indexpair.settings import load_settings
from tasks.collections import (
    check_pinned_source,
    create_collection,
    finalize_collection,
    pair_metadata,
    pin_build,
)
from tasks.embedding import embed_and_insert
from tasks.promotion import reject_build
from tasks.registry import probe_model
from tasks.reporting import report_markdown
from tasks.retention import reap_abandoned_builds
from tasks.shadow import shadow_compare
from tasks.source import SourceSpec, inspect_source, verify_source
from tasks.validation import ValidationPolicy, load_golden_queries


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

    The model version is resolved once and pinned on the candidate; a resumed run (after
    a crash, a retry or the approval) reads it back from Milvus and repeats no finished
    stage, so it asks about, and switches, exactly the build it validated.

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
    build = pin_build(settings, run_id, alias, model_name, model_version)
    describe_run(run_id, model=f"{build.ref.name} v{build.ref.version}", alias=alias)
    if build.approved:  # resumed after the approval: only the (idempotent) switch is left
        return decide_and_switch(settings, alias, build, "", approval_timeout_s)
    try:
        golden = load_golden_queries(golden_queries)
        summary, sample = inspect_source(settings, source, golden)
        check_pinned_source(build, summary)
        model = probe_model(settings, build.ref, sample)
        meta = pair_metadata(build, model, summary, alias, run_id, golden_queries, validation)
        create_collection(settings, build.name, meta)
        faults.crash_point("build.created")
        if build.needs_rows:
            embed_and_insert(
                settings, source, model, build.name, summary.rows, fingerprint=summary.fingerprint
            )
            faults.crash_point("build.inserted")
        rows = finalize_collection(settings, build.name, summary.rows)
        verify_source(settings, summary)
        report = validated(settings, build, model, golden, validation, rows)
        shadow = shadow_compare(
            settings, build.name, model.local_path, golden, build.baseline, validation.k
        )
    except Exception as exc:
        reject_build(settings, build.name, build.ref, f"{type(exc).__name__}: {exc}")
        raise
    description = report_markdown(report, build.ref, rows, validation, shadow)
    build.source_fingerprint = summary.fingerprint
    return decide_and_switch(settings, alias, build, description, approval_timeout_s)
