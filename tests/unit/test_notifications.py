"""The notification texts, rendered by the Prefect server's own template engine over flow
runs with and without the labels the flows set; the settings that turn them on."""

from __future__ import annotations

from uuid import uuid4

import pytest

from indexpair.errors import ConfigError
from indexpair.notifications import FIELDS, NOTICES, Notice, describe_run, message
from indexpair.settings import load_settings

UI = "http://127.0.0.1:4200"
LABELS = {
    "indexpair.model": "product-embedder v7",
    "indexpair.alias": "products",
    "indexpair.candidate": "product_embedder_v7_0a1b2c3d4e5f",
    "indexpair.verdict": "passed: recall@10 0.912, MRR 0.801, nDCG@10 0.780 on 30 golden queries",
    "indexpair.decision": "approved by alice: looks good",
}


def render(key: str, labels: dict[str, str], state: str, text: str | None = None) -> str:
    from prefect.server.schemas.core import FlowRun
    from prefect.server.schemas.states import State, StateType
    from prefect.server.utilities.user_templates import (
        render_user_template_sync,
        validate_user_template,
    )

    notice: Notice = next(n for n in NOTICES if n.key == key)
    template = message(notice, UI)
    validate_user_template(template)  # what the server checks when the automation is made
    kind = {"Denied": "COMPLETED", "Suspended": "PAUSED"}.get(state, state.upper())
    run = FlowRun(
        id=uuid4(),
        name="promote-product-embedder-v7",
        flow_id=uuid4(),
        labels=labels,
        state=State(type=StateType(kind), name=state, message=text),
    )
    rendered = render_user_template_sync(template, {"flow_run": run})
    assert f"{UI}/runs/flow-run/{run.id}" in rendered
    return rendered


def test_awaiting_approval_names_version_verdict_and_link() -> None:
    text = render("awaiting-approval", LABELS, "Suspended")
    assert text.startswith(
        "Approval needed: product-embedder v7 (candidate product_embedder_v7_0a1b2c3d4e5f)"
    )
    assert "Validation: passed: recall@10 0.912" in text


def test_outcomes_carry_the_reason() -> None:
    denied = render("denied", LABELS, "Denied", "denied by bob: recall too low")
    assert denied.startswith("Denied: product-embedder v7\ndenied by bob: recall too low")
    failed = render("failed", LABELS, "Failed", "ValidationFailed: recall_at_k 0.1 < 0.4")
    assert failed.startswith("Failed: product-embedder v7 (Failed); production untouched")
    assert "ValidationFailed: recall_at_k 0.1 < 0.4" in failed
    promoted = render("promoted", LABELS, "Completed")
    assert promoted.startswith("Promoted: product-embedder v7 is live behind products")
    assert "approved by alice: looks good" in promoted


def test_a_run_that_failed_before_its_labels_still_says_which_run() -> None:
    text = render("failed", {}, "Failed", "model 'product-embedder' has no version '999'")
    assert text.startswith("Failed: promote-product-embedder-v7 (Failed)")
    assert "has no version '999'" in text


def test_describe_run_takes_only_known_fields() -> None:
    with pytest.raises(ValueError, match=r"unknown run description field\(s\) \['version'\]"):
        describe_run(str(uuid4()), version="7")
    assert set(FIELDS) == {"model", "alias", "candidate", "verdict", "decision"}


def test_notify_url_must_be_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INDEXPAIR_NOTIFY_URL", "hooks.slack.com/services/T0/B0/xyz")
    with pytest.raises(ConfigError, match="notify_url: Value error, is not an http") as caught:
        load_settings()
    assert "xyz" not in str(caught.value)  # a webhook URL is a credential: never repeated
    monkeypatch.setenv("INDEXPAIR_NOTIFY_URL", "https://hooks.slack.com/services/T0/B0/xyz")
    settings = load_settings()
    assert settings.notify_url is not None and "xyz" not in repr(settings)
