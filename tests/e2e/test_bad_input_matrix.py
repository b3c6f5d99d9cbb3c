"""The bad-input matrix: every case ends with its exact error class and a message naming
the value at fault, and production (the alias target, the live collection's rows, the
MLflow ``production`` alias, the set of managed collections) is exactly as before.

Most cases call the stage that must refuse the input (the CLI, the flow's parameter
models, the source and golden-file checks, the model probe) in this process against the
real stack; two run the whole promote flow through the worker. docs/faults.md "The bad-input matrix"
documents the same table. Webhook requests are added by the triggers issue.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from cli.main import app
from indexpair.errors import (
    GoldenQueryError,
    IndexPairError,
    InvalidNameError,
    ModelContractError,
    ModelOutputError,
    RegistryError,
    SourceDataError,
)
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.mlflow import MlflowRegistry, ModelVersionRef
from indexpair.pair import check_name
from indexpair.settings import Settings
from indexpair.stack.specs import service_env
from tasks.registry import probe
from tasks.retention import RetentionPolicy
from tasks.source import SourceSpec, check_source, sample_texts
from tasks.validation import ValidationPolicy, check_golden_ids, load_golden
from tests.conftest import DATA_DIR, MODEL_NAME
from tests.e2e.conftest import promotion_params, start
from tests.integration.conftest import FAULTY_MODEL, faulty_versions  # noqa: F401 - fixture
from tests.support.production import assert_unchanged, production_snapshot

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
SMALL = SourceSpec(uri=str(DATA_DIR / "products_small.parquet"))
GOOD = pd.DataFrame({"id": ["P1", "P2"], "title": ["a", "b"], "description": ["x", "y"]})


class CliRefused(Exception):
    """The CLI exited 1 with this output (it prints the error's message, not its class)."""


@dataclass
class Ctx:
    """What a case may use: settings, a scratch folder, the live pair, model versions."""

    settings: Settings
    tmp: Path
    alias: str
    live_run: str
    versions: dict[str, str]
    faulty: dict[str, str]
    monkeypatch: pytest.MonkeyPatch

    def write(self, name: str, content: pd.DataFrame | str | bytes) -> str:
        path = self.tmp / name
        if isinstance(content, pd.DataFrame):
            content.to_parquet(path) if name.endswith(".parquet") else content.to_csv(
                path, index=False
            )
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return str(path)

    def cli(self, *args: str) -> None:
        for key, value in service_env(self.settings).items():
            self.monkeypatch.setenv(key, value)
        result = CliRunner().invoke(app, list(args))
        if result.exit_code == 1:
            raise CliRefused(" ".join(result.output.split()))
        raise AssertionError(f"exit {result.exit_code}: {result.output}")

    def source(self, content: pd.DataFrame | str | bytes, name: str = "p.parquet") -> None:
        check_source(self.settings, SourceSpec(uri=self.write(name, content)))

    def golden(self, content: str) -> None:
        golden = load_golden(self.write("golden.json", content))
        check_golden_ids(golden, {"P1", "P2"}, "p.parquet")

    def probe(self, fault: str) -> None:
        with MlflowRegistry(self.settings) as registry:
            ref = registry.resolve_version(FAULTY_MODEL, self.faulty[fault])
        probe(self.settings, ref, sample_texts(self.settings, SMALL))

    def flow(self, **params: Any) -> None:
        """Run the promote flow through the worker; raise what its failed state says."""
        full = promotion_params(self.versions["tfidf"], self.alias)
        full.update(params)
        snap = start(self.settings, full)
        assert snap["state_type"] == "FAILED", snap
        raise FlowFailed(snap["message"])


def _resolve(settings: Settings, name: str, version: str | None) -> ModelVersionRef:
    with MlflowRegistry(settings) as registry:
        return registry.resolve_version(name, version)


class FlowFailed(Exception):
    """A promote run through the worker failed with this state message."""


Case = tuple[str, Callable[[Ctx], Any], type[BaseException], str]
CASES: list[Case] = [
    # -- CLI -----------------------------------------------------------------------------
    ("cli approve: not a run id", lambda c: c.cli("approve", "not-a-uuid"), CliRefused,
     "'not-a-uuid' is not a flow-run id"),
    ("cli deny: unknown run", lambda c: c.cli("deny", str(uuid.UUID(int=7)), "--approver", "x"),
     CliRefused, f"flow run {uuid.UUID(int=7)} does not exist"),
    ("cli approve: run not waiting", lambda c: c.cli("approve", c.live_run, "--approver", "x"),
     CliRefused, "is not awaiting approval; it is Completed"),
    ("cli approve: blank approver", lambda c: c.cli("approve", c.live_run, "--approver", " "),
     CliRefused, "an approval needs an approver name"),
    ("cli search: bad alias", lambda c: c.cli("search", "boots", "--alias", "bad-alias"),
     CliRefused, "alias name 'bad-alias' is not a valid Milvus name"),
    ("cli gc: keep_previous 0", lambda c: c.cli("gc", "--keep-previous", "0"), CliRefused,
     "keep_previous=0: Input should be greater than or equal to 1"),
    ("cli promote: missing source", lambda c: c.cli("promote", "--source", "/no/such.parquet"),
     CliRefused, "source '/no/such.parquet' does not exist"),
    ("cli rollback: unknown target",
     lambda c: c.cli("rollback", "--alias", c.alias, "--to", "no_such_pair"),
     CliRefused, "collection 'no_such_pair' does not exist"),
    ("cli: placeholder secret", lambda c: (c.monkeypatch.setenv("MILVUS_TOKEN", "changeme"),
                                           c.cli("status")), CliRefused,
     "MILVUS_TOKEN: Value error, is a placeholder value"),
    # -- flow parameters -----------------------------------------------------------------
    ("param alias with '-'", lambda c: check_name("bad-alias", "alias name"), InvalidNameError,
     "alias name 'bad-alias' is not a valid Milvus name"),
    ("param alias of 300 chars", lambda c: check_name("a" * 300, "alias name"),
     InvalidNameError, "is 300 characters; Milvus allows 255"),
    ("param model not registered",
     lambda c: _resolve(c.settings, "no-such-model", None), RegistryError,
     "model 'no-such-model' is not registered in MLflow at"),
    ("param version missing", lambda c: _resolve(c.settings, MODEL_NAME, "999"),
     RegistryError, f"model '{MODEL_NAME}' has no version '999'"),
    ("param recall floor > 1", lambda c: ValidationPolicy(min_recall_at_k=1.5), ValidationError,
     "min_recall_at_k\n  Input should be less than or equal to 1"),
    ("param k = 0", lambda c: ValidationPolicy(k=0), ValidationError,
     "Input should be greater than or equal to 1"),
    ("param no text fields", lambda c: SourceSpec(uri="p.parquet", text_fields=[]),
     ValidationError, "List should have at least 1 item"),
    ("param retention keep 0", lambda c: RetentionPolicy(keep_previous=0), ValidationError,
     "keep_previous\n  Input should be greater than or equal to 1"),
    # -- source data ---------------------------------------------------------------------
    ("source empty", lambda c: c.source(GOOD.iloc[0:0]), SourceDataError, "is empty"),
    ("source duplicate id", lambda c: c.source(pd.DataFrame(
        {"id": ["P1", "P1"], "title": ["a", "b"], "description": ["x", "y"]})),
     SourceDataError, "has duplicate id 'P1' (again at row 1)"),
    ("source null id", lambda c: c.source(pd.DataFrame(
        {"id": ["P1", None], "title": ["a", "b"], "description": ["x", "y"]})),
     SourceDataError, "row 1 has no 'id'"),
    ("source empty id", lambda c: c.source(pd.DataFrame(
        {"id": ["P1", " "], "title": ["a", "b"], "description": ["x", "y"]})),
     SourceDataError, "row 1 has an empty id"),
    ("source null text", lambda c: c.source(pd.DataFrame(
        {"id": ["P1", "P2"], "title": ["a", None], "description": ["x", "y"]})),
     SourceDataError, "row 1 (id 'P2') has null 'title'"),
    ("source missing column", lambda c: c.source(pd.DataFrame(
        {"id": ["P1"], "name": ["a"], "description": ["x"]})),
     SourceDataError, "has no column(s) ['title']"),
    ("source unknown format", lambda c: c.source("a,b", name="p.xlsx"), SourceDataError,
     "has an unknown extension"),
    ("source not parquet", lambda c: c.source(b"not parquet at all"), SourceDataError,
     "cannot be read as parquet"),
    ("source bad scheme", lambda c: check_source(c.settings, SourceSpec(uri="ftp://h/p.csv")),
     SourceDataError, "scheme 'ftp' is not supported"),
    ("source missing file", lambda c: check_source(c.settings, SourceSpec(uri="/no/p.csv")),
     SourceDataError, "source '/no/p.csv' does not exist"),
    # -- golden queries ------------------------------------------------------------------
    ("golden not JSON", lambda c: c.golden("{not json"), GoldenQueryError, "is not valid JSON"),
    ("golden empty list", lambda c: c.golden("[]"), GoldenQueryError,
     "must hold a non-empty JSON list"),
    ("golden empty query", lambda c: c.golden('[{"query": "", "relevant_ids": ["P1"]}]'),
     GoldenQueryError, "entry #0"),
    ("golden unknown ids",
     lambda c: c.golden('[{"query": "red boots", "relevant_ids": ["P1", "P9"]}]'),
     GoldenQueryError, "'red boots' names ids not in source"),
    ("golden missing file", lambda c: load_golden("/no/golden.json"), GoldenQueryError,
     "does not exist"),
    # -- model outputs -------------------------------------------------------------------
    ("model NaN vectors", lambda c: c.probe("nan"), ModelOutputError,
     "NaN or infinite values in 1 of"),
    ("model zero vectors", lambda c: c.probe("zero"), ModelOutputError, "all-zero vectors"),
    ("model too few vectors", lambda c: c.probe("short"), ModelOutputError, "vectors for"),
    ("model wrong dimension", lambda c: c.probe("wide"), ModelContractError,
     "returned 64-dim vectors; its signature declares 384"),
    # -- whole flows through the worker --------------------------------------------------
    ("flow: duplicate-id source", lambda c: c.flow(source={"uri": c.write(
        "dup.parquet", pd.concat([pd.read_parquet(SMALL.uri), pd.read_parquet(SMALL.uri)]))}),
     FlowFailed, "SourceDataError: source"),
    ("flow: unknown model version", lambda c: c.flow(model_version="999"), FlowFailed,
     "RegistryError: model 'product-embedder' has no version '999'"),
]  # fmt: skip


@pytest.fixture(scope="module")
def live_run(stack_settings: Settings, base_alias: str) -> str:
    """The flow run that made the live pair (it is completed, not waiting)."""
    with MilvusGateway(stack_settings) as milvus:
        target = milvus.alias_target(base_alias)
        assert target is not None
        return milvus.read_pair(target).flow_run_id


def test_matrix_has_enough_cases() -> None:
    assert len(CASES) >= 20
    assert len({name for name, *_ in CASES}) == len(CASES)


@pytest.mark.parametrize(("name", "case", "error", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(
    stack_settings: Settings,
    demo_versions: dict[str, str],
    faulty_versions: dict[str, str],  # noqa: F811 - the imported fixture
    base_alias: str,
    live_run: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    case: Callable[[Ctx], Any],
    error: type[BaseException],
    fragment: str,
) -> None:
    before = production_snapshot(stack_settings, base_alias)
    ctx = Ctx(
        stack_settings, tmp_path, base_alias, live_run, demo_versions, faulty_versions,
        monkeypatch,
    )  # fmt: skip
    with pytest.raises(error) as caught:
        case(ctx)
    assert type(caught.value) is error, repr(caught.value)
    assert fragment in str(caught.value), str(caught.value)
    monkeypatch.undo()
    assert_unchanged(before, production_snapshot(stack_settings, base_alias))
    assert issubclass(error, IndexPairError | ValidationError | CliRefused | FlowFailed)
