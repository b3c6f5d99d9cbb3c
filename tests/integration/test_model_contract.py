"""``indexpair models check`` against the real MLflow server: supported kinds and refusals.

Each refused model is logged and registered for real; the command must exit 1 with one
line naming the model, what was found and what is needed, never a traceback.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import mlflow
import pytest
from typer.testing import CliRunner

from cli.main import app
from indexpair.settings import Settings
from indexpair.stack import service_env
from tests.conftest import BYO_MODEL
from tests.integration.conftest import FAULTY_MODEL
from tests.support.byo_models import DOCUMENT_PROMPT, QUERY_PROMPT, REFUSED, log_refused

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
REFUSED_MODEL = "byo-refused"


def _check(settings: Settings, monkeypatch: pytest.MonkeyPatch, uri: str) -> tuple[int, str]:
    for key, value in service_env(settings).items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(app, ["models", "check", uri, "--texts", "16"])
    return result.exit_code, " ".join(result.stdout.split())


@pytest.fixture(scope="module")
def refused_versions(stack_settings: Settings) -> dict[str, str]:
    """Every model of ``REFUSED`` registered as a version of one model."""
    mlflow.set_tracking_uri(stack_settings.mlflow_tracking_uri)
    mlflow.set_experiment("indexpair-refused-models")
    versions = {}
    for kind in REFUSED:
        with mlflow.start_run(run_name=f"refused-{kind}"):
            versions[kind] = log_refused(REFUSED_MODEL, kind)
    return versions


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_a_model_outside_the_contract_is_refused_by_name(
    stack_settings: Settings,
    refused_versions: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    version = refused_versions[kind]
    code, out = _check(stack_settings, monkeypatch, f"models:/{REFUSED_MODEL}/{version}")
    assert code == 1, out
    assert out.startswith("error: model "), out  # one line, nothing before it
    assert f"{REFUSED_MODEL} v{version} (models:/{REFUSED_MODEL}/{version})" in out
    assert re.search(REFUSED[kind][2], out), out
    assert "Traceback" not in out


@pytest.mark.parametrize(
    ("fault", "fragment"),
    [("nan", "NaN or infinite values"), ("wide", "its signature declares 384")],
)
def test_nan_and_a_wrong_signature_are_refused(
    stack_settings: Settings,
    faulty_versions: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
    fragment: str,
) -> None:
    code, out = _check(
        stack_settings, monkeypatch, f"models:/{FAULTY_MODEL}/{faulty_versions[fault]}"
    )
    assert code == 1 and fragment in out and "Traceback" not in out, out


def test_the_command_prints_one_line_and_no_traceback(
    stack_settings: Settings, refused_versions: dict[str, str]
) -> None:
    """As a user runs it: a fresh process, its whole output read."""
    uri = f"models:/{REFUSED_MODEL}/{refused_versions['text-out']}"
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "models", "check", uri],
        env={**os.environ, **service_env(stack_settings)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    assert " ".join(done.stdout.split()).startswith(f"error: model {REFUSED_MODEL} v")


def test_an_unknown_version_or_uri_is_named(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch, byo_versions: dict[str, str]
) -> None:
    code, out = _check(stack_settings, monkeypatch, f"models:/{BYO_MODEL}/999")
    assert code == 1 and "has no version '999'" in out, out
    code, out = _check(stack_settings, monkeypatch, "runs:/abc/model")
    assert code == 1 and "'runs:/abc/model' is not models:/NAME/VERSION" in out, out


@pytest.mark.parametrize(
    ("flavor", "prompts", "extra"),
    [
        ("sentence_transformers", (QUERY_PROMPT, DOCUMENT_PROMPT), "256 tokens"),
        ("transformers", ("", ""), "mean"),
        ("python_function", (QUERY_PROMPT, DOCUMENT_PROMPT), "as the model truncates"),
    ],
)
def test_each_supported_kind_is_described(
    stack_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    byo_versions: dict[str, str],
    flavor: str,
    prompts: tuple[str, str],
    extra: str,
) -> None:
    version = byo_versions[flavor]
    code, out = _check(stack_settings, monkeypatch, f"models:/{BYO_MODEL}/{version}")
    assert code == 0, out
    assert out.startswith(f"{BYO_MODEL} v{version} (models:/{BYO_MODEL}/{version}) is inside")
    assert f"flavor {flavor}" in out and "dimension 384" in out, out
    assert "COSINE (vectors L2-normalised)" in out and extra in out, out
    assert f"query prompt {prompts[0]!r}" in out and f"document prompt {prompts[1]!r}" in out
    assert re.search(r"encode [\d,]+ texts/s \(16 texts\)", out), out
