"""The gates a candidate passes in promote and refresh: golden-query validation, then a
person's approval bound to the build, then the locked switch.

Shared by :mod:`flows.promote` and :mod:`flows.refresh`; both call :func:`validated` and
:func:`decide_and_switch` in that order.
"""

from __future__ import annotations

from typing import Literal

from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput
from prefect.logging import get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, State
from pydantic import BaseModel, Field

from indexpair import faults
from indexpair.approval import ApprovalBinding, mismatches, report_digest
from indexpair.errors import ApprovalMismatch, ApprovedNotSwitched, ValidationFailed
from indexpair.gateways.mlflow import ModelVersionRef
from indexpair.notifications import describe_run
from indexpair.settings import Settings
from tasks.collections import BuildPin, record_approval, record_validation
from tasks.promotion import SwitchResult, promote_pair, reject_build
from tasks.registry import ModelProbe
from tasks.reporting import publish_report
from tasks.validation import GoldenSet, ValidationPolicy, ValidationReport, validate_candidate

MAX_ASKS = 3


class ApprovalDecision(RunInput):
    """The approval form shown in the Prefect UI when a candidate waits.

    The last five fields are filled in with the build the report describes; the run
    checks them after resume, so an answer meant for another build never promotes this
    one. Leave them as they are.
    """

    approve: bool = Field(description="Promote this pair to production?")
    approver: str = Field(min_length=1, description="Who decides (name or e-mail)")
    comment: str = Field("", description="Why; recorded in Prefect and on the MLflow version")
    candidate: str = Field(description="The collection this decision is for")
    model_name: str = Field(description="Its model")
    model_version: str = Field(description="Its model version")
    source_fingerprint: str = Field(description="The source it was built from")
    report_digest: str = Field(description="Digest of the validation report shown")


class PromotionResult(BaseModel):
    """The outcome of one promote or refresh run."""

    outcome: Literal["promoted", "denied"]
    alias: str
    collection: str
    model_name: str
    model_version: str
    previous: str | None = None
    switch_ms: float | None = None
    approver: str = ""
    warnings: list[str] = []


def validated(
    settings: Settings,
    build: BuildPin,
    model: ModelProbe,
    golden: GoldenSet,
    validation: ValidationPolicy,
    rows: int,
) -> ValidationReport:
    """The golden-query gate; a resumed run takes the report recorded on the candidate.

    Raises:
        ValidationFailed: naming the metrics that failed.
    """
    if build.report:
        return ValidationReport.model_validate_json(build.report)
    report = validate_candidate(
        settings, build.name, model.local_path, model.label, golden, validation, build.baseline
    )
    publish_report(settings, report, build.ref, rows, validation)
    if not report.passed:
        failures = "; ".join(report.failures)
        raise ValidationFailed(f"{model.label} rejected by validation: {failures}")
    build.report = report.model_dump_json()
    record_validation(settings, build.name, build.report)
    faults.crash_point("build.validated")
    return report


def binding_of(build: BuildPin) -> ApprovalBinding:
    """What an approval of this build must name."""
    return ApprovalBinding(
        candidate=build.name,
        model_name=build.ref.name,
        model_version=build.ref.version,
        source_fingerprint=build.source_fingerprint,
        report_digest=report_digest(build.report),
    )


def ask(
    settings: Settings, binding: ApprovalBinding, description: str, timeout_s: int
) -> ApprovalDecision:
    """Suspend for the approval form; ask again (new form) when the answer names another build.

    The form's key carries the binding's digest: a stored answer is only ever returned
    for the same build.

    Raises:
        ApprovalMismatch: three answers in a row named another build.
    """
    logger = get_run_logger()
    url = settings.flow_run_url(str(flow_run.id))
    for attempt in range(1, MAX_ASKS + 1):
        key = f"approval-{binding.digest()}" + (f"-{attempt}" if attempt > 1 else "")
        logger.info("candidate %s awaits approval: %s", binding.candidate, url)
        form = ApprovalDecision.with_initial_data(description=description, **binding.model_dump())
        decision = ApprovalDecision.model_validate(
            suspend_flow_run(wait_for_input=form, timeout=timeout_s, key=key).model_dump()
        )
        wrong = mismatches(binding, decision.model_dump())
        if not wrong:
            return decision
        logger.warning("the answer is for another build (%s); asking again", "; ".join(wrong))
    raise ApprovalMismatch(
        f"{MAX_ASKS} answers did not match candidate {binding.candidate!r}: {'; '.join(wrong)}"
    )


def decide_and_switch(
    settings: Settings,
    alias: str,
    build: BuildPin,
    description: str,
    timeout_s: int,
    auto: ApprovalDecision | None = None,
) -> PromotionResult | State:
    """Ask a person (unless ``auto`` decided), then switch, or reject on a denial.

    Once approved, the candidate is never dropped: a conflict or an error in the switch
    leaves it ``approved`` for `indexpair switch-approved`. Once the alias has moved,
    the run is a promotion; MLflow trouble after that is a warning.
    """
    binding = binding_of(build)
    run_id = str(flow_run.id)
    verdict = ValidationReport.model_validate_json(build.report).summary() if build.report else ""
    describe_run(run_id, candidate=build.name, verdict=verdict)  # for the notifications
    decision = auto or ask(settings, binding, description, timeout_s)
    if not decision.approve:
        reason = f"denied by {decision.approver}: {decision.comment or 'no comment'}"
        describe_run(run_id, decision=reason)
        reject_build(settings, build.name, build.ref, reason)
        return Completed(name="Denied", message=reason)
    describe_run(
        run_id, decision=f"approved by {decision.approver}: {decision.comment or 'no comment'}"
    )
    faults.crash_point("approval.verified")
    record_approval(settings, build.name, decision.approver)
    try:
        switched, warning = promote_pair(
            settings,
            alias,
            build.name,
            build.baseline,
            build.ref,
            decision.approver,
            decision.comment,
        )
    except Exception as exc:
        raise ApprovedNotSwitched(
            f"{build.name} stays approved but was not switched ({type(exc).__name__}: {exc}); "
            f"`indexpair switch-approved {build.name}` validates it against the live pair "
            "again and switches it"
        ) from exc
    get_run_logger().info(
        "approved by %s: %s is live behind %s", decision.approver, build.name, alias
    )
    return promoted(alias, build.ref, switched, decision.approver, warning)


def promoted(
    alias: str,
    ref: ModelVersionRef,
    switched: SwitchResult,
    approver: str,
    warning: str,
) -> PromotionResult:
    """The result of a run whose alias switch happened."""
    return PromotionResult(
        outcome="promoted",
        alias=alias,
        collection=switched.collection,
        model_name=ref.name,
        model_version=ref.version,
        previous=switched.previous,
        switch_ms=switched.switch_ms,
        approver=approver,
        warnings=[warning] if warning else [],
    )
