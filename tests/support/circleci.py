"""Run the jobs of .circleci/config.yml by hand: the exact commands, in a local job folder;
and a local stand-in for the parts of CircleCI's API v2 those commands read.

CircleCI runs each `run` step with ``/bin/bash -eo pipefail``, in the checkout, with
pipeline parameters substituted and the job's context in the environment; workspaces
carry files between jobs. This does the same with local folders.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

CONFIG = Path(__file__).resolve().parents[2] / ".circleci" / "config.yml"
INSTALL_COMMAND = 'make install\necho \'export PATH="$PWD/.venv/bin:$PATH"\' >> "$BASH_ENV"\n'


def load_config() -> dict[str, Any]:
    """The parsed CircleCI config."""
    return dict(yaml.safe_load(CONFIG.read_text(encoding="utf-8")))


def substitute(text: str, pipeline: dict[str, Any]) -> str:
    """Replace ``<< pipeline.parameters.X >>`` and ``<< pipeline.number >>``."""

    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        if key.startswith("pipeline.parameters."):
            return str(pipeline["parameters"][key.removeprefix("pipeline.parameters.")])
        return str(pipeline[key.removeprefix("pipeline.")])

    return re.sub(r"<<\s*([\w.]+)\s*>>", value, text)


def job_steps(config: dict[str, Any], job: str) -> list[Any]:
    """A job's steps with reusable commands (``commands:``) expanded."""
    steps: list[Any] = []
    for step in config["jobs"][job]["steps"]:
        name = step if isinstance(step, str) else next(iter(step))
        if name in config.get("commands", {}):
            steps.extend(config["commands"][name]["steps"])
        else:
            steps.append(step)
    return steps


@dataclass
class JobResult:
    """What one job's `run` steps did."""

    job: str
    returncode: int
    output: str
    commands: list[str] = field(default_factory=list)


def run_job(
    config: dict[str, Any],
    job: str,
    pipeline: dict[str, Any],
    workdir: Path,
    workspace: Path,
    env: dict[str, str],
    timeout_s: float = 900,
) -> JobResult:
    """Run one job's steps in ``workdir``; ``workspace`` stands for the CircleCI workspace.

    The install step is checked to be ``make install`` (the project is already installed
    here; `make install` itself is what `.ci/run` runs) and not executed.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    result = JobResult(job, 0, "")
    for step in job_steps(config, job):
        if step == "checkout":
            continue
        ((kind, body),) = step.items()
        if kind == "attach_workspace":
            shutil.copytree(workspace, workdir / body["at"], dirs_exist_ok=True)
        elif kind == "persist_to_workspace":
            for path in body["paths"]:
                source = workdir / body["root"] / path
                if not source.exists():  # CircleCI fails the job on a missing path
                    result.returncode = 1
                    result.output += f"persist_to_workspace: {source} missing\n"
                    return result
                workspace.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, workspace / path)
        elif kind == "run":
            body = body if isinstance(body, dict) else {"command": body}
            command = body["command"]
            if body.get("name") == "Install indexpair":
                assert command == INSTALL_COMMAND, command
                continue
            command = substitute(command, pipeline)
            result.commands.append(command)
            proc = subprocess.run(  # noqa: S603 - the config's own command
                ["/bin/bash", "-eo", "pipefail", "-c", command],
                cwd=workdir, env={**os.environ, **env}, capture_output=True, text=True,
                timeout=timeout_s, check=False,
            )  # fmt: skip
            result.output += proc.stdout + proc.stderr
            if proc.returncode != 0:
                result.returncode = proc.returncode
                return result
        else:
            raise AssertionError(f"job {job}: step {kind!r} is not simulated")
    return result


@dataclass
class FakeCircleCi:
    """Workflows and users the fake API knows, and every request it got.

    ``workflows`` maps a workflow id to its jobs as ``GET /api/v2/workflow/{id}/job``
    lists them; ``users`` maps a user id to ``GET /api/v2/user/{id}``'s answer.
    """

    token: str
    url: str = ""
    workflows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def approval(self, workflow_id: str, job: str, login: str | None, user_id: str) -> None:
        """A workflow whose approval job ``job`` was approved by ``login`` (None: on hold)."""
        approval = {
            "name": job,
            "type": "approval",
            "id": f"{workflow_id}-{job}",
            "approval_request_id": f"{workflow_id}-{job}",
            "status": "success" if login else "on_hold",
            "dependencies": [],
        }
        if login:
            approval["approved_by"] = user_id
            self.users[user_id] = {"id": user_id, "login": login, "name": login.title()}
        start = {"name": "start-promotion", "type": "build", "status": "success", "job_number": 1}
        self.workflows[workflow_id] = [start, approval]


@contextmanager
def fake_circleci_api(token: str) -> Iterator[FakeCircleCi]:
    """CircleCI's ``workflow/{id}/job`` and ``user/{id}`` endpoints on a free loopback port;
    a request without the right ``Circle-Token`` gets 401, as from CircleCI."""
    fake = FakeCircleCi(token=token)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            fake.requests.append(self.path)
            parts = self.path.split("?")[0].strip("/").split("/")
            answer: Any = None
            if self.headers.get("Circle-Token") != fake.token:
                status, answer = 401, {"message": "You must log in first."}
            elif parts[:3] == ["api", "v2", "workflow"] and parts[4:] == ["job"]:
                jobs = fake.workflows.get(parts[3])
                status = 200 if jobs is not None else 404
                answer = {"items": jobs, "next_page_token": None} if jobs is not None else None
            elif parts[:3] == ["api", "v2", "user"] and len(parts) == 4:
                user = fake.users.get(parts[3])
                status, answer = (200, user) if user else (404, None)
            else:
                status = 404
            body = json.dumps(answer or {"message": "Not found"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
