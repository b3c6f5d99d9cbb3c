"""Table-driven tests of which named rollback targets are accepted or refused."""

from __future__ import annotations

import pytest

from indexpair.errors import RollbackRefused
from indexpair.pair import PairMetadata, PairState
from tasks.rollback import _check_target

ALIAS = "products"


def pair(
    state: PairState, alias: str = ALIAS, model_name: str = "product-embedder"
) -> PairMetadata:
    """A pair of ``model_name`` that served ``alias``."""
    return PairMetadata(
        model_name=model_name,
        model_version="3",
        model_uri=f"models:/{model_name}/3",
        dim=8,
        build_id="abcd1234",
        source_uri="test",
        source_fingerprint="test",
        source_rows=0,
        state=state,
        alias=alias,
    )


ACCEPTED = [
    ("previous", pair(PairState.PREVIOUS)),
    ("rolled back, named on purpose", pair(PairState.ROLLED_BACK)),
    ("another model name on the alias", pair(PairState.PREVIOUS, model_name="other-model")),
    ("no alias recorded, model name is the alias", pair(PairState.PREVIOUS, "", ALIAS)),
]
REFUSED = [
    ("another alias", pair(PairState.PREVIOUS, alias="other"), "served alias 'other'"),
    ("no alias recorded, other model", pair(PairState.PREVIOUS, ""), "'product-embedder'"),
    *[
        (state.value, pair(state), f"is {state.value};")
        for state in PairState
        if state not in (PairState.PREVIOUS, PairState.ROLLED_BACK)
    ],
]


@pytest.mark.parametrize(("case", "target"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_accepted_targets(case: str, target: PairMetadata) -> None:
    _check_target(ALIAS, "target_v3_abcd1234", target)


@pytest.mark.parametrize(("case", "target", "message"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_targets(case: str, target: PairMetadata, message: str) -> None:
    with pytest.raises(RollbackRefused, match="target_v3_abcd1234") as info:
        _check_target(ALIAS, "target_v3_abcd1234", target)
    assert message in str(info.value), (case, str(info.value))
