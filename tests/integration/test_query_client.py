"""The query client against real Milvus (Lite, and for some tests a Milvus 2.3 server) and
MLflow: errors, TTL, reconnect, model cache, micro-batching, pre-loading."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from demo.catalog import product_texts
from indexpair.errors import PairNotFound, RegistryError
from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.mlflow import MlflowRegistry, ModelVersionRef
from indexpair.models import load_model
from indexpair.pair import PairMetadata, PairState
from indexpair.serving.consistency import ConsistencyChecker
from indexpair.serving.model_cache import ModelCache
from indexpair.serving.preload import Preloader
from indexpair.serving.query import PairSearcher, PairTarget
from indexpair.settings import Settings
from tasks.promotion import switch_alias
from tests.conftest import DATA_DIR, MODEL_NAME
from tests.integration.conftest import FAULTY_MODEL

pytestmark = pytest.mark.integration
ALIAS = "it_query"


def _build(settings: Settings, gw: MilvusGateway, name: str, version: str, rows: int) -> None:
    """A real pair of ``rows`` products embedded by a registered model version."""
    catalog = pd.read_parquet(DATA_DIR / "products_small.parquet").head(rows)
    ref = ModelVersionRef(name=MODEL_NAME, version=version, uri=f"models:/{MODEL_NAME}/{version}")
    with MlflowRegistry(settings) as registry:
        model = load_model(registry.download_model(ref), ref.display)
    vectors = model.encode(product_texts(catalog), "build")
    meta = PairMetadata(
        model_name=MODEL_NAME,
        model_version=version,
        model_uri=ref.uri,
        dim=int(vectors.shape[1]),
        build_id=name.rsplit("_", 1)[1],
        source_uri="products_small.parquet",
        source_fingerprint="sha256:test",
        source_rows=rows,
    )
    gw.create_pair_collection(name, meta)
    gw.insert(name, list(catalog["id"].astype(str)), ["h"] * rows, vectors)
    assert gw.finalize(name) == rows


@pytest.fixture(scope="module")
def two_pairs(stack_settings: Settings, demo_versions: dict[str, str]) -> Iterator[list[str]]:
    """A TF-IDF pair and a MiniLM pair, the alias on the first."""
    names = [f"it_q_v{demo_versions['tfidf']}_aaaa", f"it_q_v{demo_versions['minilm']}_bbbb"]
    with MilvusGateway(stack_settings) as milvus:
        _build(stack_settings, milvus, names[0], demo_versions["tfidf"], 300)
        _build(stack_settings, milvus, names[1], demo_versions["minilm"], 200)
        with prefect_api.prefect_api(stack_settings):
            switch_alias(stack_settings, ALIAS, names[0], None)
        yield names
        milvus.client.drop_alias(ALIAS)
        for name in names:
            milvus.drop(name)


def _move(settings: Settings, target: str) -> None:
    with MilvusGateway(settings) as milvus:
        current = milvus.alias_target(ALIAS)
    with prefect_api.prefect_api(settings):
        switch_alias(settings, ALIAS, target, current)


def test_missing_alias_and_foreign_collection_are_named(milvus_backend: Settings) -> None:
    searcher = PairSearcher(milvus_backend, "it_no_such_alias")
    try:
        with pytest.raises(PairNotFound, match="alias 'it_no_such_alias' does not exist"):
            searcher.search("boots")
    finally:
        searcher.close()
    with MilvusGateway(milvus_backend) as milvus:
        milvus.client.create_collection("it_q_foreign", dimension=4)
        milvus.client.create_alias("it_q_foreign", "it_foreign_alias")
        searcher = PairSearcher(milvus_backend, "it_foreign_alias")
        try:
            with pytest.raises(PairNotFound, match="'it_q_foreign' carries no indexpair pair"):
                searcher.search("boots")
        finally:
            searcher.close()
            milvus.client.drop_alias("it_foreign_alias")
            milvus.client.drop_collection("it_q_foreign")


def test_a_pair_answers_through_its_alias_on_each_backend(
    milvus_backend: Settings, demo_versions: dict[str, str]
) -> None:
    settings, alias = milvus_backend, "it_query_each"
    name = f"it_q_v{demo_versions['tfidf']}_cccc"
    with MilvusGateway(settings) as milvus:
        _build(settings, milvus, name, demo_versions["tfidf"], 100)
        searcher = PairSearcher(settings, alias)
        checker = ConsistencyChecker(settings)
        try:
            with prefect_api.prefect_api(settings):
                switch_alias(settings, alias, name, None)
            r = searcher.search("waterproof hiking boots", k=5)
            assert (r.collection, r.model_version) == (name, demo_versions["tfidf"])
            hits = [(h.id, h.score) for h in r.hits]
            assert len(hits) == 5
            assert checker.check(
                "waterproof hiking boots", r.collection, r.model_name, r.model_version, hits
            ).ok
        finally:
            searcher.close()
            checker.close()
            if milvus.alias_target(alias) is not None:
                milvus.client.drop_alias(alias)
            milvus.drop(name)


def test_response_names_the_pair_and_passes_the_independent_check(
    stack_settings: Settings, two_pairs: list[str], demo_versions: dict[str, str]
) -> None:
    searcher = PairSearcher(stack_settings, ALIAS)
    checker = ConsistencyChecker(stack_settings)
    try:
        r = searcher.search("waterproof hiking boots", k=5)
        assert (r.collection, r.model_version) == (two_pairs[0], demo_versions["tfidf"])
        hits = [(h.id, h.score) for h in r.hits]
        assert len(hits) == 5
        assert checker.check(
            "waterproof hiking boots",
            r.collection,
            r.model_name,
            r.model_version,
            hits,
        ).ok
        # The same hits claimed for the other pair do not reproduce their scores.
        other = checker.check(
            "waterproof hiking boots", two_pairs[1], r.model_name, demo_versions["minilm"], hits
        )
        assert not other.ok, other
        # Nor for another model version (the collection's own metadata disagrees).
        assert not checker.check(
            "waterproof hiking boots", r.collection, r.model_name, demo_versions["minilm"], hits
        ).ok
    finally:
        searcher.close()
        checker.close()


def test_alias_ttl(stack_settings: Settings, two_pairs: list[str]) -> None:
    blocking = stack_settings.model_copy(update={"warm_switch": False})
    per_request = PairSearcher(blocking, ALIAS, ttl_s=0)
    cached = PairSearcher(blocking, ALIAS, ttl_s=3)
    try:
        assert per_request.search("boots").collection == two_pairs[0]
        assert cached.search("boots").collection == two_pairs[0]
        _move(stack_settings, two_pairs[1])
        moved_at = time.monotonic()
        assert per_request.search("boots").collection == two_pairs[1]
        if time.monotonic() - moved_at < 2.5:  # the MiniLM load above took < 2.5 s
            assert cached.search("boots").collection == two_pairs[0]  # still trusted
        time.sleep(max(0.0, 3.1 - (time.monotonic() - moved_at)))
        assert cached.search("boots").collection == two_pairs[1]
    finally:
        _move(stack_settings, two_pairs[0])
        per_request.close()
        cached.close()


def test_warm_switch_answers_from_the_old_pair_until_the_new_model_is_loaded(
    stack_settings: Settings, two_pairs: list[str]
) -> None:
    searcher = PairSearcher(stack_settings, ALIAS)
    checker = ConsistencyChecker(stack_settings)
    seen = []
    try:
        first = searcher.search("walnut desk lamp")
        _move(stack_settings, two_pairs[1])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            r = searcher.search("walnut desk lamp")
            seen.append(r)
            if r.collection == two_pairs[1]:
                break
            time.sleep(0.05)
        # The first answer after the move still came from the old pair (its model was
        # loaded; MiniLM was not), and the new pair answered once MiniLM was ready.
        assert seen[0].collection == first.collection == two_pairs[0]
        assert seen[-1].collection == two_pairs[1]
        for r in [first, *seen]:
            hits = [(h.id, h.score) for h in r.hits]
            assert checker.check(
                "walnut desk lamp", r.collection, r.model_name, r.model_version, hits
            ).ok
    finally:
        _move(stack_settings, two_pairs[0])
        searcher.close()
        checker.close()


def test_reconnects_when_its_connection_is_gone(
    stack_settings: Settings, two_pairs: list[str]
) -> None:
    searcher = PairSearcher(stack_settings, ALIAS)
    try:
        assert searcher.search("boots").hits
        searcher.gateway.client.close()  # the connection is gone under a live searcher
        assert searcher.search("boots").collection == two_pairs[0]
        assert searcher.reconnects == 1
    finally:
        searcher.close()


def test_model_cache_keeps_versions_in_use_and_evicts_least_recent(
    stack_settings: Settings, faulty_versions: dict[str, str]
) -> None:
    def pair(fault: str) -> PairMetadata:
        v = faulty_versions[fault]
        return PairMetadata(
            model_name=FAULTY_MODEL,
            model_version=v,
            model_uri=f"models:/{FAULTY_MODEL}/{v}",
            dim=64,
            build_id="cache",
            source_uri="x",
            source_fingerprint="x",
            source_rows=0,
        )

    cache = ModelCache(stack_settings, capacity=1)
    a, b, c = pair("nan"), pair("short"), pair("zero")
    key = {p.model_version: (FAULTY_MODEL, p.model_version) for p in (a, b, c)}
    with cache.use(a) as held:
        with cache.use(b) as other:
            assert other is not held
            assert cache.loaded() == [key[a.model_version], key[b.model_version]]
        # Over capacity: the idle version goes, the one in use stays.
        assert cache.loaded() == [key[a.model_version]]
        assert held.model.predict(["boots"]) is not None  # still usable: it was kept
    with cache.use(c):
        pass
    assert cache.loaded() == [key[c.model_version]]


def test_a_model_that_cannot_be_loaded_is_reported_not_hidden(
    stack_settings: Settings, two_pairs: list[str]
) -> None:
    # A pair whose model version is gone from MLflow: the searcher keeps answering from
    # the old pair while it tries to load it, then says why the new pair cannot answer.
    with MilvusGateway(stack_settings) as milvus:
        name = "it_q_v999_cccc"
        old = milvus.read_pair(two_pairs[0])
        meta = old.model_copy(
            update={
                "model_version": "999",
                "model_uri": f"models:/{MODEL_NAME}/999",
                "build_id": "cccc",
            }
        )
        rows = milvus.client.query(
            two_pairs[0], filter='id != ""', limit=3, output_fields=["vector"]
        )
        meta = meta.model_copy(update={"source_rows": len(rows)})
        milvus.create_pair_collection(name, meta)
        vectors = np.asarray([r["vector"] for r in rows], dtype=np.float32)
        milvus.insert(name, [r["id"] for r in rows], ["h"] * len(rows), vectors)
        milvus.finalize(name)
        searcher = PairSearcher(stack_settings, ALIAS)
        try:
            assert searcher.search("boots").collection == two_pairs[0]
            _move(stack_settings, name)
            assert searcher.search("boots").collection == two_pairs[0]  # loading in background
            deadline = time.monotonic() + 60
            while not searcher.models.failed(searcher._resolve_now().pair):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            with pytest.raises(RegistryError, match=f"model {MODEL_NAME} v999 .* could not be"):
                searcher.search("boots")
        finally:
            _move(stack_settings, two_pairs[0])
            searcher.close()
            milvus.drop(name)


def _ask_while_moving(
    settings: Settings,
    pairs: list[str],
    texts: list[str],
    ask: Any,
    stop: threading.Event,
) -> None:
    """One thread per text runs ``ask`` while the alias moves 3 times; all are joined."""
    threads = [threading.Thread(target=ask, args=(t,)) for t in texts]
    try:
        for t in threads:
            t.start()
        for target in [pairs[1], pairs[0], pairs[1]]:
            time.sleep(1.0)
            _move(settings, target)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(60)


def test_concurrent_queries_are_batched_and_every_answer_names_its_pair(
    stack_settings: Settings, two_pairs: list[str]
) -> None:
    """Queries from many threads share forward passes while the alias moves back and
    forth; each answer still comes whole from the one pair it names."""
    batched = PairSearcher(stack_settings.model_copy(update={"query_batch_wait_ms": 20}), ALIAS)
    single = PairSearcher(stack_settings.model_copy(update={"query_batch_max": 1}), ALIAS)
    checker = ConsistencyChecker(stack_settings)
    texts = [f"{w} {n}" for w in ("lamp", "boots", "kettle", "desk") for n in ("oak", "red", "xl")]
    answers: list[Any] = []
    stop = threading.Event()

    def ask(text: str) -> None:
        while not stop.is_set():
            answers.append((text, batched.search(text, k=5)))

    try:
        _ask_while_moving(stack_settings, two_pairs, texts, ask, stop)
    finally:
        stop.set()
        _move(stack_settings, two_pairs[0])
    try:
        batcher = batched._batcher
        assert batcher is not None and batcher.batches < batcher.answered, "nothing batched"
        assert {r.collection for _, r in answers} == set(two_pairs), "the alias never moved"
        targets = {}
        for text, r in answers:
            hits = [(h.id, h.score) for h in r.hits]
            verdict = checker.check(text, r.collection, r.model_name, r.model_version, hits)
            assert verdict.ok, verdict.detail
            targets.setdefault((text, r.collection), [h.id for h in r.hits])
        # Batched or not, one pair gives one query the same hits.
        for (text, collection), ids in list(targets.items())[:6]:
            t = PairTarget(collection, single.gateway.read_pair(collection))
            assert [h.id for h in single.search_in(t, text, 5).hits] == ids
    finally:
        batched.close()
        single.close()
        checker.close()


def test_a_preloaded_candidate_answers_nothing_before_the_switch(
    stack_settings: Settings, two_pairs: list[str]
) -> None:
    """The pre-loader warms the candidate (its model ready, its collection loaded); the
    alias alone still decides, and right after the switch the candidate answers."""
    live, candidate = two_pairs
    searcher = PairSearcher(stack_settings, ALIAS)
    try:
        with MilvusGateway(stack_settings) as milvus:
            milvus.update_pair(candidate, state=PairState.AWAITING_APPROVAL.value, alias=ALIAS)
            pair = milvus.read_pair(candidate)
        assert searcher.search("walnut desk lamp").collection == live
        assert not searcher.models.is_ready(pair)
        assert Preloader(searcher, 0).run_once() == [candidate]
        assert searcher.models.is_ready(pair)
        for _ in range(5):
            assert searcher.search("walnut desk lamp").collection == live
        _move(stack_settings, candidate)
        # No warm switch needed: the first answer after the switch comes from it.
        assert searcher.search("walnut desk lamp").collection == candidate
    finally:
        _move(stack_settings, live)
        searcher.close()


def test_the_service_batches_concurrent_requests_and_every_answer_names_its_pair(
    stack_settings: Settings, two_pairs: list[str]
) -> None:
    """The same through the HTTP service (a real uvicorn on loopback): requests wait for
    their micro-batch on the event loop, batches are encoded and searched in two stages,
    and while the alias moves every answer still comes whole from the pair it names."""
    import socket

    import httpx
    import uvicorn

    from indexpair.serving.app import create_app

    settings = stack_settings.model_copy(update={"query_batch_wait_ms": 20})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(settings, PairSearcher(settings, ALIAS))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    runner = threading.Thread(target=server.run, daemon=True)
    runner.start()
    url = f"http://127.0.0.1:{port}"
    checker = ConsistencyChecker(stack_settings)
    texts = [f"{w} {n}" for w in ("lamp", "boots", "kettle") for n in ("oak", "red", "xl", "tall")]
    answers: list[tuple[str, dict[str, Any]]] = []
    failures: list[str] = []
    stop = threading.Event()

    def ask(text: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            while not stop.is_set():
                r = http.get("/search", params={"q": text, "k": 5})
                if r.status_code != 200:
                    failures.append(f"{r.status_code}: {r.text[:200]}")
                    return
                answers.append((text, r.json()))

    try:
        deadline = time.monotonic() + 60
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.started, "the service did not start"
        _ask_while_moving(stack_settings, two_pairs, texts, ask, stop)
        metrics = {
            line.split(" ")[0]: float(line.split(" ")[1])
            for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines()
            if line.startswith("indexpair_query_batch")
        }
    finally:
        stop.set()
        server.should_exit = True
        runner.join(30)
        _move(stack_settings, two_pairs[0])
    try:
        assert not failures, failures
        assert metrics["indexpair_query_batched_queries"] == len(answers)
        assert metrics["indexpair_query_batches"] < len(answers), "nothing batched"
        assert {body["collection"] for _, body in answers} == set(two_pairs), "never moved"
        for text, body in answers:
            hits = [(h["id"], h["score"]) for h in body["hits"]]
            verdict = checker.check(
                text, body["collection"], body["model_name"], body["model_version"], hits
            )
            assert verdict.ok, verdict.detail
    finally:
        checker.close()
