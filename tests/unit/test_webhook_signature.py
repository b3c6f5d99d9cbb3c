"""The receiver's signature is MLflow's own, byte for byte; the filters act on one event."""

from __future__ import annotations

import pytest

from deployments.webhook import parse_event, signature, wanted
from indexpair.settings import Settings


def test_signature_matches_mlflow_delivery_code() -> None:
    from mlflow.webhooks.delivery import _generate_hmac_signature

    body = '{"entity": "model_version_alias", "action": "created", "data": {"version": "3"}}'
    ours = signature("s3cr3t-value", "d-1", "1760000000", body.encode())
    assert ours == _generate_hmac_signature("s3cr3t-value", "d-1", "1760000000", body)
    assert ours.startswith("v1,")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"entity": "model_version_alias", "action": "created", "data": {"a": 1}}',
         ("model_version_alias.created", {"a": 1})),
        (b"not json", None),
        (b"[1, 2]", None),
        (b'{"entity": "x", "action": "y", "data": [1]}', None),
        (b"\xff\xfe", None),
    ],
)  # fmt: skip
def test_parse_event(body: bytes, expected: object) -> None:
    assert parse_event(body) == expected


@pytest.mark.parametrize(
    ("event", "data", "reason"),
    [
        ("model_version_alias.created", {"name": "m", "alias": "staging", "version": "4"}, None),
        ("model_version.created", {"name": "m", "version": "4"}, "is not 'model_version_alias"),
        ("model_version_alias.created", {"name": "m", "alias": "production", "version": "4"},
         "alias 'production' is not 'staging'"),
        ("model_version_alias.created", {"name": "other", "alias": "staging", "version": "4"},
         "model 'other' is not in ['m', 'n']"),
        ("model_version_alias.created", {"name": "m", "alias": "staging", "version": "x; rm"},
         "version 'x; rm' is not a model version"),
    ],
)  # fmt: skip
def test_only_the_staging_alias_of_a_watched_model_counts(
    event: str, data: dict[str, str], reason: str | None
) -> None:
    settings = Settings(trigger_models="m, n")
    found = wanted(settings, event, data)
    assert found == reason if reason is None else reason in str(found)
