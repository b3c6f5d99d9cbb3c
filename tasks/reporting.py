"""Reporting stage: the approval report in Prefect and the validation figures in MLflow."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from indexpair.gateways.mlflow import MlflowRegistry, ModelVersionRef
from indexpair.serving.canary import report_key
from indexpair.settings import Settings
from tasks.shadow import ShadowReport, shadow_markdown
from tasks.validation import ValidationPolicy, ValidationReport


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def report_markdown(
    report: ValidationReport,
    ref: ModelVersionRef,
    rows: int,
    policy: ValidationPolicy,
    shadow: ShadowReport | None = None,
) -> str:
    """The approval report: candidate vs live on the golden queries, and the verdict."""
    live = report.live
    floors = {
        "recall_at_k": policy.min_recall_at_k,
        "mrr": policy.min_mrr,
        "ndcg_at_k": policy.min_ndcg_at_k,
    }
    lines = [
        f"# Candidate pair `{report.collection}`",
        "",
        f"Model **{ref.name} v{ref.version}** (`{ref.uri}`), {rows} rows, "
        f"{report.candidate.queries} golden queries, k={report.k}.",
        f"Live pair: `{report.live_collection or 'none (first promotion)'}`"
        + (f" ({report.live_model})" if report.live_model else ""),
        "",
        "| metric | candidate | live | delta | threshold |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, value in report.candidate.as_dict().items():
        before = live.as_dict()[name] if live else None
        delta = f"{value - before:+.3f}" if before is not None else "—"
        lines.append(
            f"| {name} | {_fmt(value)} | {_fmt(before)} | {delta} | ≥ {floors[name]:.3f} |"
        )
    lines.append(
        f"| search ms per query (mean) | {report.candidate.mean_query_ms:.1f} | "
        f"{_fmt(live.mean_query_ms) if live else '—'} | | |"
    )
    if shadow is not None:
        lines += shadow_markdown(shadow)
    lines += [
        "",
        "While this run waits, the search service adds live evidence (shadow traffic and an "
        f"interleaved comparison) to the artifact `{report_key(report.collection)}`; "
        "`indexpair status` and the service's `GET /canary` show it too.",
    ]
    lines += [
        "",
        "**Verdict:** "
        + (
            "passed — awaiting approval"
            if report.passed
            else "rejected: " + "; ".join(report.failures)
        ),
    ]
    return "\n".join(lines)


@task(name="publish-report", cache_policy=NO_CACHE)
def publish_report(
    settings: Settings,
    report: ValidationReport,
    ref: ModelVersionRef,
    rows: int,
    policy: ValidationPolicy,
) -> str:
    """Write the Prefect markdown artifact and the MLflow run, metrics and version tags."""
    create_markdown_artifact(
        report_markdown(report, ref, rows, policy),
        key=report_key(report.collection),
        description=f"Validation of {ref.name} v{ref.version}",
    )
    metrics = {f"candidate_{k}": v for k, v in report.candidate.as_dict().items()}
    if report.live:
        metrics.update({f"live_{k}": v for k, v in report.live.as_dict().items()})
    with MlflowRegistry(settings) as registry:
        run_id = registry.log_validation_run(
            ref,
            report.collection,
            metrics,
            {
                "k": report.k,
                "live_collection": report.live_collection or "",
                "rows": rows,
                "passed": report.passed,
            },
        )
        c = report.candidate
        registry.set_build_tags(
            ref,
            {
                "collection": report.collection,
                "candidate_collection": report.collection,
                "validation_run_id": run_id,
                f"recall_at_{report.k}": f"{c.recall_at_k:.4f}",
                "mrr": f"{c.mrr:.4f}",
                f"ndcg_at_{report.k}": f"{c.ndcg_at_k:.4f}",
                "status": "awaiting_approval" if report.passed else "rejected",
            },
        )
    get_run_logger().info(
        "validation of %s: recall@%d %.3f, MRR %.3f, nDCG@%d %.3f — %s",
        report.collection,
        report.k,
        c.recall_at_k,
        c.mrr,
        report.k,
        c.ndcg_at_k,
        "passed" if report.passed else "; ".join(report.failures),
    )
    return run_id
