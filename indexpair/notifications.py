"""Approval notifications: Prefect automations that post to a webhook (Slack-compatible JSON)
when a promotion awaits approval, is denied, fails, or is promoted.

Prefect sends them, not the flow: an automation per outcome reacts to the flow run's state
event (``prefect.flow-run.Suspended``, ``.Denied``, ``.Failed``, ``.Completed`` ... of the
``promote`` and ``refresh`` flows) and runs a ``send-notification`` action with one
Custom Webhook block, whose JSON body is ``{"text": "<message>"}``. A receiver that is
down fails that action (Prefect records it on the automation), never the run.

The message is a Jinja template the Prefect server renders over the flow run: its name,
its state message (a denial's reason, a failure's error) and the labels the flow puts on
it with :func:`describe_run` (model version, alias, candidate, validation verdict,
decision). ``INDEXPAIR_NOTIFY_URL`` turns it on; the stack's ``deployments`` step
applies it (:func:`apply`), replacing what an earlier run applied, and removes it when
the URL is unset.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from uuid import UUID

import httpx

from indexpair.errors import IndexPairError
from indexpair.gateways.prefect import prefect_api
from indexpair.settings import Settings

log = logging.getLogger(__name__)
BLOCK_NAME = "indexpair-notify"
AUTOMATION_PREFIX = "indexpair-notify-"
FLOWS = ["promote", "refresh"]
LABEL_PREFIX = "indexpair."
FIELDS = ("model", "alias", "candidate", "verdict", "decision")


@dataclass(frozen=True)
class Notice:
    """One automation: the state events it reacts to and the message it sends."""

    key: str
    events: tuple[str, ...]
    headline: str
    detail: str


def _label(name: str, fallback: str) -> str:
    return f"{{{{ flow_run.labels['{LABEL_PREFIX}{name}'] | default({fallback}) }}}}"


MODEL = _label("model", "flow_run.name")
NOTICES = (
    Notice(
        "awaiting-approval",
        ("prefect.flow-run.Suspended", "prefect.flow-run.Paused"),
        "Approval needed: {model} (candidate {candidate})",
        "Validation: {verdict}",
    ),
    Notice(
        "denied",
        ("prefect.flow-run.Denied",),
        "Denied: {model}",
        "{{{{ flow_run.state.message }}}}",
    ),
    Notice(
        "failed",
        ("prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.TimedOut"),
        "Failed: {model} ({{{{ flow_run.state.name }}}}); production untouched",
        "{{{{ flow_run.state.message }}}}",
    ),
    Notice(
        "promoted",
        ("prefect.flow-run.Completed",),
        "Promoted: {model} is live behind {alias}",
        "Validation: {verdict}\n{decision}",
    ),
)


def message(notice: Notice, ui_url: str) -> str:
    """The Jinja template of a notice's text (rendered by the Prefect server)."""
    values = {
        "model": MODEL,
        "alias": _label("alias", "'the alias'"),
        "candidate": _label("candidate", "'unknown'"),
        "verdict": _label("verdict", "'not validated'"),
        "decision": _label("decision", "''"),
    }
    link = f"{ui_url.rstrip('/')}/runs/flow-run/{{{{ flow_run.id }}}}"
    return "\n".join(
        [
            notice.headline.format(**values),
            notice.detail.format(**values),
            f"Run {{{{ flow_run.name }}}}: {link}",
        ]
    )


def describe_run(flow_run_id: str, **fields: str) -> None:
    """Put what notifications show on the flow run, as labels (``indexpair.<field>``).

    Best effort: a label that cannot be written costs a notification its detail, never
    the run its promotion.

    Raises:
        ValueError: a field that is not one of `FIELDS`.
    """
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown run description field(s) {unknown}; known: {FIELDS}")
    from prefect.client.orchestration import get_client

    labels = {f"{LABEL_PREFIX}{name}": value for name, value in fields.items()}
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(UUID(flow_run_id), labels)  # type: ignore[arg-type]
    except httpx.HTTPError as exc:
        log.warning("could not label flow run %s for notifications: %s", flow_run_id, exc)


def apply(settings: Settings) -> list[str]:
    """Create (or replace) the notification block and automations; remove them when
    ``INDEXPAIR_NOTIFY_URL`` is unset.

    Returns:
        The names of the automations now in place.

    Raises:
        IndexPairError: the Prefect API refused or did not answer.
    """
    try:
        names = _apply(settings)
    except httpx.HTTPError as exc:
        raise IndexPairError(
            f"could not apply the notification automations through {settings.prefect_api_url}:"
            f" {type(exc).__name__}: {exc}"
        ) from exc
    if names:
        log.info("notifications to INDEXPAIR_NOTIFY_URL: %s", ", ".join(names))
    return names


def _apply(settings: Settings) -> list[str]:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    with prefect_api(settings), get_client(sync_client=True) as client:
        for automation in client.read_automations():
            if automation.name.startswith(AUTOMATION_PREFIX):
                client.delete_automation(automation.id)
        if settings.notify_url is None:
            return []
        # The URL (a Slack webhook URL is a credential) is one of the block's secrets.
        block = CustomWebhookNotificationBlock(
            name="indexpair",
            url="{{notify_url}}",
            json_data={"text": "{{body}}"},
            secrets={"notify_url": settings.notify_url.get_secret_value()},  # type: ignore[arg-type]
            timeout=10,
        )
        block_id = block.save(BLOCK_NAME, overwrite=True)
        names = []
        for notice in NOTICES:
            name = f"{AUTOMATION_PREFIX}{notice.key}"
            trigger = EventTrigger(
                expect=set(notice.events),
                match={"prefect.resource.id": "prefect.flow-run.*"},
                match_related={"prefect.resource.role": "flow", "prefect.resource.name": FLOWS},
                posture=Posture.Reactive,
                threshold=1,
            )
            action = SendNotification(
                block_document_id=block_id,
                subject=f"indexpair {notice.key}: {MODEL}",
                body=message(notice, settings.prefect_ui_url),
            )
            client.create_automation(
                AutomationCore(name=name, trigger=trigger, actions=[action], enabled=True)
            )
            names.append(name)
    return names
