"""Pure decisions of the triggers: CI exit codes, and which pairs make a build pointless."""

from __future__ import annotations

import pytest

from deployments.ci import FAILED, OK, STILL_RUNNING, exit_code
from indexpair.gateways.prefect import RunSnapshot
from indexpair.pair import PairMetadata, PairState
from indexpair.triggers import pair_of_version, trigger_lock_name


def snap(state_type: str, state_name: str) -> RunSnapshot:
    return RunSnapshot(id="r", name="n", state_type=state_type, state_name=state_name, message="")


@pytest.mark.parametrize(
    ("state_type", "state_name", "until_paused", "code"),
    [
        ("PAUSED", "Suspended", True, OK),  # start job: the approval point is reached
        ("PAUSED", "Suspended", False, STILL_RUNNING),  # approve/wait job: not decided yet
        ("RUNNING", "Running", True, STILL_RUNNING),
        ("SCHEDULED", "Scheduled", False, STILL_RUNNING),
        ("COMPLETED", "Completed", False, OK),  # promoted
        ("COMPLETED", "Completed", True, OK),
        ("COMPLETED", "Denied", False, FAILED),  # ends Completed, but nothing was promoted
        ("FAILED", "Failed", True, FAILED),
        ("FAILED", "Failed", False, FAILED),
        ("CRASHED", "Crashed", False, FAILED),
        ("CANCELLED", "Cancelled", True, FAILED),
    ],
)
def test_ci_exit_codes(state_type: str, state_name: str, until_paused: bool, code: int) -> None:
    assert exit_code(snap(state_type, state_name), until_paused) == code


def pair(version: str, state: PairState, model: str = "m") -> tuple[str, PairMetadata]:
    meta = PairMetadata(
        model_name=model, model_version=version, model_uri=f"models:/{model}/{version}", dim=8,
        build_id="b", source_uri="s", source_fingerprint="f", source_rows=1, state=state,
    )  # fmt: skip
    return f"{model}_v{version}_b", meta


@pytest.mark.parametrize(
    ("pairs", "blocked_by"),
    [
        ([], None),
        ([pair("3", PairState.LIVE)], "m_v3_b"),
        ([pair("3", PairState.PREVIOUS)], "m_v3_b"),
        ([pair("3", PairState.REJECTED)], None),  # a rejected build never blocks a new one
        ([pair("4", PairState.LIVE)], None),  # another version
        ([pair("3", PairState.LIVE, model="other")], None),  # another model
    ],
)
def test_pairs_that_make_a_build_pointless(
    pairs: list[tuple[str, PairMetadata]], blocked_by: str | None
) -> None:
    found = pair_of_version("m", "3", pairs)
    assert (found[0] if found else None) == blocked_by


def test_lock_names_are_safe_for_prefect() -> None:
    assert trigger_lock_name("team/embedder v2") == "indexpair-trigger-team-embedder-v2"
