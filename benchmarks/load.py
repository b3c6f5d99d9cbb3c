"""Load generators for the zero-downtime benchmark, each run in a process of its own.

Both write one JSON line per request: ``t`` (send time, epoch s), ``lat_ms``, ``ok``,
``error``, ``q`` and, for answers, the collection, model version and hits they name.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

PROJECT_TIMEOUT_S = 30.0


class Sync:
    """Start line for the client processes: each says it is ready, all start together."""

    def __init__(self, ctx: Any, clients: int) -> None:
        self.ready = ctx.Semaphore(0)
        self.go = ctx.Event()
        self.stop_at = ctx.Value("d", 0.0)
        self.clients = clients

    def started(self) -> float:
        """Called by a client once set up: wait for the start; return the stop time."""
        self.ready.release()
        self.go.wait()
        return float(self.stop_at.value)

    def start(self, duration_s: float, timeout_s: float = 600) -> float:
        """Called by the driver: wait until every client is ready, start them; return t0."""
        for _ in range(self.clients):
            if not self.ready.acquire(timeout=timeout_s):
                raise RuntimeError(f"a load client was not ready within {timeout_s} s")
        t0 = time.time()
        self.stop_at.value = t0 + duration_s
        self.go.set()
        return t0


def service_client(
    url: str,
    queries: list[str],
    k: int,
    sync: Sync,
    out: str,
    seed: int,
    think_s: float,
) -> None:
    """Query the search service in a closed loop from the start signal until the stop time."""
    import httpx

    rng = random.Random(seed)
    with httpx.Client(timeout=PROJECT_TIMEOUT_S) as http, Path(out).open("w") as f:
        stop_at = sync.started()
        while time.time() < stop_at:
            q = rng.choice(queries)
            t = time.time()
            started = time.perf_counter()
            rec: dict[str, Any] = {"client": "service", "t": t, "q": q}
            try:
                r = http.get(f"{url}/search", params={"q": q, "k": k})
                rec["lat_ms"] = (time.perf_counter() - started) * 1000
                rec["ok"] = r.status_code == 200
                body = r.json()
                if rec["ok"]:
                    rec.update(
                        collection=body["collection"],
                        model_name=body["model_name"],
                        model_version=body["model_version"],
                        hits=[[h["id"], h["score"]] for h in body["hits"]],
                        took_ms=body.get("took_ms"),  # inside the service
                    )
                else:
                    rec["error"] = f"HTTP {r.status_code}: {str(body)[:200]}"
            except Exception as exc:  # a benchmark records every failure, whatever it is
                rec.update(lat_ms=(time.perf_counter() - started) * 1000, ok=False)
                rec["error"] = f"{type(exc).__name__}: {exc}"[:300]
            f.write(json.dumps(rec) + "\n")
            time.sleep(think_s)


def naive_client(
    env: dict[str, str],
    alias: str,
    model_version: str,
    queries: list[str],
    k: int,
    sync: Sync,
    out: str,
    seed: int,
    think_s: float,
) -> None:
    """The naive way: one model loaded at start, every search sent to the alias itself.

    It believes it is talking to the collection the alias named when it started.
    """
    import logging
    import os

    from pymilvus import MilvusClient

    os.environ.update(env)
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)  # its errors are counted, not logged
    from indexpair.gateways.milvus import auth_token
    from indexpair.gateways.mlflow import MlflowRegistry, ModelVersionRef
    from indexpair.models import load_model
    from indexpair.settings import load_settings

    settings = load_settings()
    name = "product-embedder"
    ref = ModelVersionRef(name=name, version=model_version, uri=f"models:/{name}/{model_version}")
    with MlflowRegistry(settings) as registry:
        model = load_model(registry.download_model(ref), ref.display)
    client = MilvusClient(
        uri=settings.milvus_uri,
        token=auth_token(settings),
        timeout=PROJECT_TIMEOUT_S,
        dedicated=True,
    )
    model.encode(["warm up"], "load", allow_zero=True)
    stop_at = sync.started()
    believed = str(client.describe_alias(alias)["collection_name"])
    rng = random.Random(seed)
    with Path(out).open("w") as f:
        while time.time() < stop_at:
            q = rng.choice(queries)
            t = time.time()
            started = time.perf_counter()
            rec: dict[str, Any] = {"client": "naive", "t": t, "q": q}
            try:
                vec = model.encode([q], "load", allow_zero=True)
                res = client.search(alias, data=vec.tolist(), limit=k, anns_field="vector")
                rec.update(
                    ok=True,
                    collection=believed,
                    model_name=name,
                    model_version=model_version,
                    hits=[[str(h["id"]), float(h["distance"])] for h in res[0]],
                )
            except Exception as exc:  # every failure of the naive client counts
                rec.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:300])
            rec["lat_ms"] = (time.perf_counter() - started) * 1000
            f.write(json.dumps(rec) + "\n")
            time.sleep(think_s)
    client.close()


def read_records(paths: list[Path]) -> list[dict[str, Any]]:
    """Every request record of every client, in send order."""
    records: list[dict[str, Any]] = []
    for path in paths:
        with path.open() as f:
            records.extend(json.loads(line) for line in f if line.strip())
    return sorted(records, key=lambda r: r["t"])
