"""The compare-and-swap decision, table-driven."""

import pytest

from tasks.promotion import cas_decision


@pytest.mark.parametrize(
    ("current", "expected", "candidate", "verdict"),
    [
        (None, None, "m_v1_a", "switch"),  # first promotion creates the alias
        ("m_v1_a", "m_v1_a", "m_v2_b", "switch"),  # alias still where validation compared
        ("m_v2_b", "m_v1_a", "m_v2_b", "done"),  # repeated call after a crash: idempotent
        ("m_v3_c", "m_v1_a", "m_v2_b", "conflict"),  # someone else promoted meanwhile
        ("m_v1_a", None, "m_v2_b", "conflict"),  # alias appeared since validation
        (None, "m_v1_a", "m_v2_b", "conflict"),  # alias vanished since validation
    ],
)
def test_cas_decision(
    current: str | None, expected: str | None, candidate: str, verdict: str
) -> None:
    assert cas_decision(current, expected, candidate) == verdict
