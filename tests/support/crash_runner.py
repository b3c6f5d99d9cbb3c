"""One step of the pair life cycle in a process of its own, for the crash-point matrix.

``python -m tests.support.crash_runner STEP ARGS...`` runs the step against the services
named in the environment (as the stack's settings), with ``INDEXPAIR_CRASH_FILE`` armed
by the test, so a crash point kills exactly this process. Steps:

- ``promote ALIAS CANDIDATE EXPECTED_LIVE``: the switch and the MLflow mirror, as the
  promote flow's switch task runs them;
- ``rollback ALIAS``: plan and roll back to the default target;
- ``reconcile [ALIAS]``: reconcile one alias (default every alias), applying the fixes;
- ``gc PREFIX``: plan retention and drop what it allows (keep one previous pair, 0 days)
  among the collections whose names start with PREFIX (the test's own).
"""

from __future__ import annotations

import sys

from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.mlflow import ModelVersionRef
from indexpair.reconcile import reconcile
from indexpair.settings import Settings, load_settings
from tasks import retention
from tasks.promotion import switch_alias, sync_registry
from tasks.rollback import prepare, roll_back

GC_POLICY = retention.RetentionPolicy(keep_previous=1, max_age_days=0, abandoned_after_hours=0)


def promote_step(settings: Settings, alias: str, candidate: str, expected: str) -> str:
    """The switch task's work: switch, then mirror in MLflow; the MLflow warning if any."""
    switch_alias(settings, alias, candidate, expected or None)
    with MilvusGateway(settings) as milvus:
        pair = milvus.read_pair(candidate)
    ref = ModelVersionRef(name=pair.model_name, version=pair.model_version, uri=pair.model_uri)
    return sync_registry(settings, ref, {"status": "live", "collection": candidate})


def run(step: str, args: list[str]) -> None:
    settings = load_settings()
    with prefect_api.prefect_api(settings):
        if step == "promote":
            promote_step(settings, args[0], args[1], args[2])
        elif step == "rollback":
            roll_back(settings, prepare(settings, args[0]), "crash matrix")
        elif step == "reconcile":
            reconcile(settings, args[0] if args else None, apply=True)
        elif step == "gc":
            verdicts = retention.plan(settings, GC_POLICY)
            mine = [v for v in verdicts if v.name.startswith(args[0])]
            retention.apply(settings, mine, dry_run=False)
        else:
            raise SystemExit(f"unknown step {step!r}")


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2:])
