"""The abandoned-build reaper: garbage collection's rule, applied to unfinished builds only.

A suspend that times out fails the run on the server, and no code of the run is left to
clean up; its candidate is rejected here, by the next promote run or ``indexpair
cleanup``. The reaper drops exactly what garbage collection would (default policy): a
build whose flow run ended goes only after the grace period, and a build whose run the
Prefect API does not know is left for a person.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from prefect import task
from prefect.logging import get_run_logger

from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.mlflow import ModelVersionRef
from indexpair.pair import UNFINISHED, PairMetadata
from indexpair.settings import Settings
from tasks.promotion import reject
from tasks.retention.collect import gather, recheck
from tasks.retention.decision import CollectionFacts, RetentionPolicy, Verdict, decide

log = logging.getLogger(__name__)


def to_reap(
    facts: list[CollectionFacts], current_run: str, now: datetime
) -> list[tuple[Verdict, PairMetadata]]:
    """Unfinished builds the default policy drops at ``now``, other than ``current_run``'s."""
    pairs = {f.name: f.pair for f in facts if f.pair is not None}
    found = []
    for verdict in decide(facts, RetentionPolicy(), now):
        pair = pairs.get(verdict.name)
        if verdict.action != "drop" or verdict.state not in UNFINISHED or pair is None:
            continue
        if current_run and pair.flow_run_id == current_run:
            continue
        found.append((verdict, pair))
    return found


def reap_abandoned(settings: Settings, current_run: str = "") -> list[str]:
    """Reject and drop unfinished builds that garbage collection would drop now.

    Each is read again under the lock of the alias it was built for (as garbage
    collection does), then marked ``rejected`` with the reason, its model version tagged
    with it, and dropped. Must run where the Prefect API is reachable (in a flow run, or
    inside :func:`indexpair.gateways.prefect.prefect_api`).

    Args:
        settings: where Milvus, MLflow and the Prefect API are.
        current_run: the calling flow run's id; its own build is never touched.

    Returns:
        The collections rejected.
    """
    reaped = []
    with MilvusGateway(settings) as milvus:
        for verdict, pair in to_reap(gather(settings), current_run, datetime.now(UTC)):
            with prefect_api.alias_lock(settings.lock_name(verdict.group)):
                outcome = recheck(milvus, verdict)
                if not outcome:
                    ref = ModelVersionRef(
                        name=pair.model_name, version=pair.model_version, uri=pair.model_uri
                    )
                    dropped = reject(settings, verdict.name, ref, f"abandoned: {verdict.reason}")
                    outcome = "rejected and dropped" if dropped else "rejected, not dropped"
                    reaped.append(verdict.name)
            log.info("abandoned build %s: %s", verdict.name, outcome)
    return reaped


@task(name="reap-abandoned-builds")
def reap_abandoned_builds(settings: Settings, current_run: str) -> list[str]:
    """Task wrapper of :func:`reap_abandoned`."""
    reaped = reap_abandoned(settings, current_run)
    if reaped:
        get_run_logger().info("cleaned up abandoned builds: %s", ", ".join(reaped))
    return reaped
