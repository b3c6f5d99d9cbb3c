""".circleci/config.yml against CircleCI's published schema (offline) and its contract."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.circleci import CONFIG, INSTALL_COMMAND, job_steps, load_config

CHECK = Path(sys.executable).parent / "check-jsonschema"
# Any attempt to reach the network goes to a closed port and fails.
OFFLINE = {
    **os.environ,
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "",
}


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [str(CHECK), "--builtin-schema", "vendor.circle-ci", str(path)],
        env=OFFLINE, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_config_matches_circleci_schema_offline() -> None:
    result = check(CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok -- validation done" in result.stdout


def test_schema_check_catches_a_broken_config(tmp_path: Path) -> None:
    broken = tmp_path / "config.yml"
    text = CONFIG.read_text(encoding="utf-8").replace("type: approval", "type: approve-it")
    broken.write_text(text.replace("    type: string\n", "    type: text\n", 1), encoding="utf-8")
    result = check(broken)
    assert result.returncode == 1, result.stdout + result.stderr


def test_pipeline_parameters_and_workflows() -> None:
    config = load_config()
    assert config["version"] == 2.1
    params = config["parameters"]
    assert params["model_name"]["type"] == params["model_version"]["type"] == "string"
    assert params["approve_in_circleci"]["type"] == "boolean"
    in_ci = config["workflows"]["promote-approve-in-circleci"]["jobs"]
    names = [next(iter(j)) if isinstance(j, dict) else j for j in in_ci]
    assert names == ["start-promotion", "hold-for-approval", "approve-promotion"]
    assert in_ci[1]["hold-for-approval"]["type"] == "approval"
    assert in_ci[2]["approve-promotion"]["requires"] == ["hold-for-approval"]
    in_prefect = config["workflows"]["promote-approve-in-prefect"]["jobs"]
    assert [next(iter(j)) for j in in_prefect] == ["start-promotion", "wait-for-approval"]
    for workflow in config["workflows"].values():
        for job in workflow["jobs"]:
            ((name, body),) = job.items()
            if body.get("type") != "approval":
                assert body["context"] == "indexpair-prefect", name  # secrets from a context


@pytest.mark.parametrize("job", ["start-promotion", "approve-promotion", "wait-for-approval"])
def test_jobs_install_the_project_and_pass_the_run_id(job: str) -> None:
    config = load_config()
    steps = job_steps(config, job)
    assert steps[0] == "checkout"
    assert steps[1]["run"]["command"] == INSTALL_COMMAND
    kinds = [next(iter(s)) for s in steps[2:]]
    if job == "start-promotion":
        assert kinds == ["run", "persist_to_workspace"]
        assert steps[3]["persist_to_workspace"] == {"root": "workspace", "paths": ["flow-run-id"]}
    else:
        assert kinds == ["attach_workspace", "run"]
    command = next(s["run"]["command"] for s in steps[2:] if "run" in s)
    assert command.startswith("indexpair trigger ")
    assert "--run-id-file workspace/flow-run-id" in command
    if job == "approve-promotion":
        # The approver is read from the approval job (CircleCI's API), never taken from
        # $CIRCLE_USERNAME, the user who triggered the pipeline.
        assert "--approval-job hold-for-approval" in command
        assert "CIRCLE_USERNAME" not in command
