"""The pair state machine, as a table: which recorded state changes a step may make."""

from __future__ import annotations

import pytest

from indexpair.pair import TRANSITIONS, PairState, can_move

S = PairState


@pytest.mark.parametrize(
    ("old", "new", "allowed"),
    [
        (S.BUILDING, S.AWAITING_APPROVAL, True),
        (S.BUILDING, S.LIVE, False),  # live only through an approved switch
        (S.AWAITING_APPROVAL, S.APPROVED, True),
        (S.AWAITING_APPROVAL, S.REJECTED, True),
        (S.AWAITING_APPROVAL, S.LIVE, False),
        (S.APPROVED, S.LIVE, True),
        (S.APPROVED, S.APPROVED, True),  # a repeated step is a no-op
        (S.APPROVED, S.REJECTED, False),  # an approved candidate is never dropped
        (S.LIVE, S.PREVIOUS, True),
        (S.LIVE, S.ROLLED_BACK, True),
        (S.LIVE, S.REJECTED, False),  # a live pair is never rejected
        (S.PREVIOUS, S.LIVE, True),  # rollback
        (S.ROLLED_BACK, S.LIVE, True),  # an explicit rollback to it
        (S.ROLLED_BACK, S.PREVIOUS, False),  # never a default target again
        (S.PREVIOUS, S.REJECTED, False),
        (S.REJECTED, S.LIVE, False),
        (S.FAILED, S.AWAITING_APPROVAL, False),
    ],
)
def test_transitions(old: PairState, new: PairState, allowed: bool) -> None:
    assert can_move(old, new) is allowed


def test_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(PairState)
