"""The CLI refuses bad input before it reaches any service, naming the value."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _nowhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Ports nobody listens on: a command that tried a service would fail differently.
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    monkeypatch.setenv("MILVUS_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("INDEXPAIR_STATE_DIR", str(tmp_path))


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["approve", "not-a-uuid"], "'not-a-uuid' is not a flow-run id"),
        (["deny", "1234"], "'1234' is not a flow-run id"),
        (
            ["promote", "--source", "/no/such/products.parquet"],
            "source '/no/such/products.parquet' does not exist",
        ),
        (
            ["promote", "--golden", "/no/such/golden.json"],
            "golden-query file '/no/such/golden.json' does not exist",
        ),
        (["promote"], "Prefect API at http://127.0.0.1:9/api is unreachable"),
        (["search", "boots", "--alias", "bad-alias"], "'bad-alias' is not a valid Milvus name"),
        (["gc", "--keep-previous", "0"], "keep_previous=0: Input should be greater than"),
        (["gc", "--max-age-days", "-1"], "max_age_days=-1.0: Input should be greater than"),
        (["rollback"], "Prefect API at http://127.0.0.1:9/api is unreachable"),
    ],
)
def test_bad_input_is_refused_with_the_value(args: list[str], fragment: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert fragment in " ".join(result.output.split())


def test_placeholder_secret_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILVUS_TOKEN", "changeme")
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 1
    assert "MILVUS_TOKEN: Value error, is a placeholder value" in " ".join(result.output.split())
    assert "changeme" not in result.output


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["trigger", "start", "--model", "m", "--version", "3"],
            "Prefect API at http://127.0.0.1:9/api is unreachable",
        ),
        (
            ["trigger", "approve", "--run-id-file", "/no/such/file"],
            "'/no/such/file' does not exist",
        ),
        (["trigger", "wait", "--run-id-file", "/no/such/file"], "'/no/such/file' does not exist"),
        (["webhook", "serve"], "INDEXPAIR_WEBHOOK_SECRET is not set"),
    ],
)
def test_trigger_commands_refuse_with_the_value(args: list[str], fragment: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert fragment in " ".join(result.output.split())


def test_trigger_approve_needs_an_approver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CIRCLE_USERNAME", raising=False)
    run_file = tmp_path / "flow-run-id"
    run_file.write_text("4f759fe4-cb81-424d-bcba-ad25b06a059b\n")
    result = runner.invoke(app, ["trigger", "approve", "--run-id-file", str(run_file)])
    assert result.exit_code == 1
    assert "needs an approver name" in result.output


def test_empty_run_id_file_means_nothing_to_do(tmp_path: Path) -> None:
    run_file = tmp_path / "flow-run-id"
    run_file.write_text("")
    for command in ("approve", "wait"):
        result = runner.invoke(
            app,
            ["trigger", command, "--run-id-file", str(run_file), "--approver", "x"]
            if command == "approve"
            else ["trigger", command, "--run-id-file", str(run_file)],
        )
        assert result.exit_code == 0, result.output
        assert "names no run" in " ".join(result.output.split())
