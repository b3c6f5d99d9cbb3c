"""Who approved a CircleCI approval job, read from (a local stand-in for) CircleCI's API:
the approver's login, or a clear error and no name at all."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from cli.main import app
from deployments.ci import approver_of_job
from indexpair.errors import ConfigError, IndexPairError
from indexpair.settings import Settings
from tests.conftest import free_port
from tests.support.circleci import FakeCircleCi, fake_circleci_api

pytestmark = pytest.mark.integration
TOKEN = "circle-token-test-41c9aa"
WORKFLOW = "5034460f-c7c4-4c43-9457-de07e2029e7b"


@pytest.fixture()
def circleci() -> Iterator[FakeCircleCi]:
    with fake_circleci_api(TOKEN) as fake:
        yield fake


def settings_for(url: str, token: str | None = TOKEN) -> Settings:
    return Settings(circleci_api_url=url, circleci_token=token)


def test_the_approver_is_the_login_of_who_approved_the_job(circleci: FakeCircleCi) -> None:
    circleci.approval(WORKFLOW, "hold-for-approval", "bob-approver", "u-1")
    assert approver_of_job(settings_for(circleci.url), WORKFLOW, "hold-for-approval") == (
        "bob-approver"
    )
    assert circleci.requests == [f"/api/v2/workflow/{WORKFLOW}/job", "/api/v2/user/u-1"]


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("on hold", "approval job 'hold-for-approval' of workflow 5034460f-c7c4-4c43-9457-"
         "de07e2029e7b is not approved (status 'on_hold')"),
        ("other job", "has no approval job 'hold-for-approval' (its jobs: ['other-approval',"),
        ("unknown workflow", "answered GET /api/v2/workflow/5034460f-c7c4-4c43-9457-de07e2029e7b"
         "/job with HTTP 404"),
        ("wrong token", "with HTTP 401 '{\"message\": \"You must log in first.\"}'"),
        ("api down", "is unreachable (ConnectError); cannot read who approved "
         "'hold-for-approval'"),
        ("no workflow id", "CIRCLE_WORKFLOW_ID is empty"),
    ],
)  # fmt: skip
def test_no_approver_is_named_when_the_api_cannot_say(
    circleci: FakeCircleCi, case: str, fragment: str
) -> None:
    settings, workflow = settings_for(circleci.url), WORKFLOW
    if case == "on hold":
        circleci.approval(WORKFLOW, "hold-for-approval", None, "")
    elif case == "other job":
        circleci.approval(WORKFLOW, "other-approval", "bob-approver", "u-1")
    elif case == "wrong token":
        circleci.approval(WORKFLOW, "hold-for-approval", "bob-approver", "u-1")
        settings = settings_for(circleci.url, "another-token-7e1")
    elif case == "api down":
        settings = settings_for(f"http://127.0.0.1:{free_port()}")
    elif case == "no workflow id":
        workflow = " "
    with pytest.raises(IndexPairError) as caught:
        approver_of_job(settings, workflow, "hold-for-approval")
    assert fragment in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_no_token_is_a_config_error(circleci: FakeCircleCi) -> None:
    with pytest.raises(ConfigError, match="INDEXPAIR_CIRCLECI_TOKEN is not set; needed to read"):
        approver_of_job(settings_for(circleci.url, None), WORKFLOW, "hold-for-approval")
    assert circleci.requests == []


def test_approve_command_sends_nothing_when_the_approver_is_unknown(
    circleci: FakeCircleCi, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pathlib import Path

    run_file = Path(str(tmp_path)) / "flow-run-id"
    run_file.write_text("4f759fe4-cb81-424d-bcba-ad25b06a059b\n")
    circleci.approval(WORKFLOW, "hold-for-approval", None, "")
    for name, value in {
        "CIRCLE_WORKFLOW_ID": WORKFLOW,
        "CIRCLE_USERNAME": "pipeline-trigger-bot",
        "INDEXPAIR_CIRCLECI_API_URL": circleci.url,
        "INDEXPAIR_CIRCLECI_TOKEN": TOKEN,
        "PREFECT_API_URL": "http://127.0.0.1:9/api",  # never reached
    }.items():
        monkeypatch.setenv(name, value)
    args = ["trigger", "approve", "--run-id-file", str(run_file)]
    result = CliRunner().invoke(app, [*args, "--approval-job", "hold-for-approval"])
    assert result.exit_code == 1, result.output
    out = " ".join(result.output.split())
    assert "is not approved (status 'on_hold')" in out
    assert "pipeline-trigger-bot" not in out and "approval by" not in out
    both = CliRunner().invoke(app, [*args, "--approval-job", "h", "--approver", "x"])
    assert both.exit_code == 1 and "not both" in both.output
