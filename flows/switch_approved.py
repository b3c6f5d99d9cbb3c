"""The switch-approved flow: validate an approved candidate against today's live pair, then
switch it.

A candidate a person approved is kept ``approved`` when its switch could not happen (the
alias moved meanwhile, or Milvus failed). Its report compared it with a live pair that
is no longer live, so it is validated again, against the pair live now, with the golden
queries and policy recorded on it, before the same locked compare-and-swap.
"""

from __future__ import annotations

from prefect import flow

from flows.approval import PromotionResult, promoted
from indexpair.errors import ValidationFailed
from indexpair.gateways.mlflow import ModelVersionRef
from indexpair.pair import check_name
from indexpair.settings import load_settings
from tasks.collections import read_approved, read_live_pair, rebase_candidate
from tasks.promotion import promote_pair
from tasks.registry import fetch_model, label_of
from tasks.reporting import publish_report
from tasks.validation import ValidationPolicy, load_golden_queries, validate_candidate


@flow(name="switch-approved", persist_result=True)
def switch_approved(collection: str, alias: str | None = None) -> PromotionResult:
    """Validate an approved candidate against the live pair again and switch it.

    Args:
        collection: the approved candidate (state ``approved``).
        alias: the alias to switch; default the one it was built for.

    Raises:
        ValidationFailed: it does not pass against the pair live now (it stays approved).
    """
    settings = load_settings()
    pair = read_approved(settings, check_name(collection))
    alias = check_name(alias or pair.alias or settings.production_alias, "alias name")
    ref = ModelVersionRef(name=pair.model_name, version=pair.model_version, uri=pair.model_uri)
    live = read_live_pair(settings, alias)
    policy = ValidationPolicy.model_validate_json(pair.validation or "{}")
    golden = load_golden_queries(pair.golden_queries)
    model_path = fetch_model(settings, ref)
    report = validate_candidate(
        settings, collection, model_path, label_of(ref), golden, policy, live
    )
    publish_report(settings, report, ref, pair.source_rows, policy)
    if not report.passed:
        raise ValidationFailed(
            f"{collection} stays approved but does not pass against {live}: "
            + "; ".join(report.failures)
        )
    rebase_candidate(settings, collection, live)
    switched, warning = promote_pair(
        settings, alias, collection, live, ref, pair.approved_by, "switched after re-validation"
    )
    return promoted(alias, ref, switched, pair.approved_by, warning)
