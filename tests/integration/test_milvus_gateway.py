"""The Milvus gateway against both backends: Milvus Lite and a real Milvus 2.3 server."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from indexpair.errors import BuildError, InvalidNameError, PairNotFound, PromotionConflict
from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.milvus import MilvusGateway
from indexpair.pair import PairMetadata, PairState
from indexpair.settings import Settings
from tasks.promotion import switch_alias

pytestmark = pytest.mark.integration


def _meta(build: str, rows: int = 3) -> PairMetadata:
    return PairMetadata(
        model_name="m",
        model_version="1",
        model_uri="models:/m/1",
        dim=4,
        build_id=build,
        source_uri="/tmp/s.parquet",
        source_fingerprint="sha256:0",
        source_rows=rows,
    )


def _vectors(n: int) -> np.ndarray:
    v = np.arange(1, n * 4 + 1, dtype=np.float32).reshape(n, 4)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture()
def gw(milvus_backend: Settings) -> Iterator[MilvusGateway]:
    with MilvusGateway(milvus_backend) as milvus:
        yield milvus


def _built(gw: MilvusGateway, name: str, build: str) -> None:
    gw.create_pair_collection(name, _meta(build))
    gw.insert(name, ["a", "b", "c"], ["h"] * 3, _vectors(3))
    assert gw.finalize(name) == 3


def test_pair_collection_round_trip_and_idempotent_insert(gw: MilvusGateway) -> None:
    name = "it_m_v1_aaaa"
    gw.create_pair_collection(name, _meta("aaaa"))
    gw.insert(name, ["a", "b", "c"], ["h1", "h2", "h3"], _vectors(3))
    gw.insert(name, ["a", "b", "c"], ["h1", "h2", "h3"], _vectors(3))  # a retried batch
    assert gw.finalize(name) == 3
    assert gw.row_count(name) == 3  # a real server's statistics would say 6
    assert gw.is_loaded(name)
    pair = gw.read_pair(name)
    assert (pair.state, pair.dim, pair.build_id) == (PairState.BUILDING, 4, "aaaa")
    gw.set_state(name, PairState.REJECTED, "because")
    assert gw.read_pair(name).reason == "because"
    rows = gw.fetch(name, ["b"])
    assert rows["b"]["content_hash"] == "h2"
    hits = gw.search(name, _vectors(1), 2)[0]
    assert hits[0][0] == "a"
    assert gw.drop(name) is True
    assert gw.drop(name) is False  # already gone counts as done


def test_foreign_collections_are_ignored(gw: MilvusGateway) -> None:
    gw.client.create_collection("it_foreign", dimension=4)
    try:
        assert "it_foreign" not in {n for n, _ in gw.list_pairs()}
        with pytest.raises(PairNotFound, match="carries no indexpair pair metadata"):
            gw.read_pair("it_foreign")
    finally:
        gw.client.drop_collection("it_foreign")


def test_names_are_checked_before_milvus(gw: MilvusGateway) -> None:
    with pytest.raises(InvalidNameError, match="'bad-name'"):
        gw.create_pair_collection("bad-name", _meta("bbbb"))
    with pytest.raises(InvalidNameError, match="'bad alias'"):
        gw.alias_target("bad alias")


def test_server_kind_names_the_backend(request: pytest.FixtureRequest, gw: MilvusGateway) -> None:
    assert gw.server_kind() == request.node.callspec.params["milvus_backend"]
    assert gw.server_kind() == gw.server_kind()  # cached, same answer


def test_switch_alias_compare_and_swap(milvus_backend: Settings, gw: MilvusGateway) -> None:
    stack_settings = milvus_backend
    alias = "it_live"
    _built(gw, "it_m_v1_cccc", "cccc")
    _built(gw, "it_m_v2_dddd", "dddd")
    _built(gw, "it_m_v3_eeee", "eeee")
    with prefect_api.prefect_api(stack_settings):
        first = switch_alias(stack_settings, alias, "it_m_v1_cccc", None)
        assert (first.previous, gw.alias_target(alias)) == (None, "it_m_v1_cccc")
        second = switch_alias(stack_settings, alias, "it_m_v2_dddd", "it_m_v1_cccc")
        assert second.previous == "it_m_v1_cccc"
        assert second.switch_ms < 1000
        again = switch_alias(stack_settings, alias, "it_m_v2_dddd", "it_m_v1_cccc")
        assert again.already_done
        with pytest.raises(PromotionConflict, match="now points at 'it_m_v2_dddd'"):
            switch_alias(stack_settings, alias, "it_m_v3_eeee", "it_m_v1_cccc")
    assert gw.alias_target(alias) == "it_m_v2_dddd"
    assert gw.read_pair("it_m_v1_cccc").state == PairState.PREVIOUS
    assert gw.read_pair("it_m_v2_dddd").state == PairState.LIVE
    with pytest.raises(BuildError, match="alias 'it_live' points at it"):
        gw.drop("it_m_v2_dddd")
    gw.client.drop_alias(alias)
    for name in ("it_m_v1_cccc", "it_m_v2_dddd", "it_m_v3_eeee"):
        gw.drop(name)
