"""Re-index throughput: the raw model, raw inserts, a seed-style loop and the indexpair build.

    python -m benchmarks.reindex [--docs 20000 100000] [--model minilm|tfidf]
                                 [--backend lite|standalone] [--modes encode ... build]
                                 [--refresh 0.001]

One run, the same generated documents, the same registered model, the same machine. For
each corpus size it measures, each in a fresh process whose process tree's peak memory
(PSS, Ray's processes included) is sampled:

(a) ``encode``: the model's own ``encode`` over all texts (model loaded beforehand);
(b) ``insert``: (a)'s vectors upserted into Milvus with the gateway, then flushed;
(c) ``loop``: the seed system's loop: read a batch, encode it, insert it, repeat; flush;
(d) ``build``: the indexpair build stage as the promote flow calls it (``tasks.embedding
    .embed``: Ray start, actor pool, pipelined source read / embedding / inserts), flushed;
(e) ``refresh`` (with ``--refresh F``): a refresh of (d)'s collection after a fraction F
    of the descriptions were edited: compare (streamed), copy unchanged, embed changed.

``--modes`` picks a subset (``build`` needs ``encode``, whose vectors it is checked
against).

It prints docs/s, d/a, d/c, peak memory, and the growth of (d)'s peak memory from the
smallest to the largest corpus (target ≤ 1.3×); it checks that (d) stored every row and
the same vectors as (a). Milvus (Lite, or the real standalone server) and MLflow run on
free loopback ports in a temporary directory. With a CUDA GPU, the model runs on it in
fp16 and the actors ask Ray for one GPU each. Results also go to
``benchmarks/results/reindex-<backend>-<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.memory import PeakMemory, tree_pss_mib

PROJECT_DIR = Path(__file__).resolve().parent.parent
RESULTS = PROJECT_DIR / "benchmarks" / "results"
MODEL_NAME = "bench-embedder"
MODES = ("encode", "insert", "loop", "build", "refresh")
LETTER = dict(zip(MODES, "abcde", strict=True))
MEMORY_TARGET, RATIO_TARGET = 1.3, 0.9
# On a CUDA machine, unless set: one actor per GPU, fp16, GPU-sized batches.
GPU_SETTINGS = {
    "INDEXPAIR_EMBED_NUM_GPUS": "1",
    "INDEXPAIR_EMBED_BATCH_SIZE": "4096",
    "INDEXPAIR_EMBED_MODEL_BATCH_SIZE": "512",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def device_name() -> str:
    """The GPU's name, or the CPU model and core count."""
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA)"
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return f"{model}, {os.cpu_count()} cores"


def _register(settings: Any, model: str, corpus: Path) -> Any:
    import mlflow
    import pandas as pd

    from demo.catalog import product_texts
    from demo.models import minilm_dir
    from indexpair.gateways.mlflow import MlflowRegistry
    from indexpair.models.helpers import log_sentence_transformer_model, log_tfidf_model
    from tasks.registry import probe
    from tasks.source import SourceSpec, sample_texts

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    tags = {"bench": "reindex"}
    if model == "minilm":
        version = log_sentence_transformer_model(minilm_dir(), MODEL_NAME, tags)
    else:
        texts = product_texts(pd.read_parquet(corpus))
        version = log_tfidf_model(texts, MODEL_NAME, settings.state_dir, tags)
    with MlflowRegistry(settings) as registry:
        ref = registry.resolve_version(MODEL_NAME, version)
    return probe(settings, ref, sample_texts(settings, SourceSpec(uri=str(corpus))))


def _measure(mode: str, job: Path) -> dict[str, Any]:
    """Run one measurement in a fresh process; sample its process tree's memory."""
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.reindex_modes", mode, str(job)],
        cwd=PROJECT_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    with PeakMemory(child.pid) as memory:
        out, _ = child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"{mode} failed with exit code {child.returncode}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["peak_mib"] = memory.peak_mib
    result["docs_per_s"] = result["rows"] / result["seconds"]
    return result


def _run_size(
    tmp: Path, docs: int, model_probe: Any, corpus: Path, modes: list[str], changed: float
) -> dict:
    job = tmp / f"job-{docs}.json"
    spec: dict[str, Any] = {
        "corpus": str(corpus),
        "rows": docs,
        "probe": model_probe.model_dump(mode="json"),
        "vectors": str(tmp / f"vectors-{docs}.npy"),
    }
    if "refresh" in modes:
        spec["edited"] = str(_edit(tmp, corpus, docs, changed))
    job.write_text(json.dumps(spec))
    results: dict[str, Any] = {}
    for mode in modes:
        results[mode] = _measure(mode, job)
        r = results[mode]
        extra = ""
        if mode == "build":
            extra = (
                f"; first rows stored after {r['first_insert_s']:.1f} s (Ray start, actors "
                f"loading the model); (d) vs (a) vectors max diff {r['max_diff_vs_a']:.1e}"
            )
        if mode == "refresh":
            phases = ", ".join(f"{k} {v:.1f} s" for k, v in r["phases_s"].items())
            extra = (
                f"; {r['changes']}; {phases}; compare step raised the peak resident memory "
                f"by {r['compare_grew_mib']:.0f} MiB"
            )
        print(
            f"  ({LETTER[mode]}) {mode:<7} {r['seconds']:8.1f} s {r['docs_per_s']:9.1f} docs/s "
            f"peak {r['peak_mib']:7.0f} MiB{extra}",
            flush=True,
        )
    return results


def _generate(tmp: Path, docs: int) -> Path:
    from demo.catalog import generate_catalog

    path = tmp / f"corpus-{docs}.parquet"
    generate_catalog(docs).to_parquet(path, row_group_size=10_000)
    return path


def _edit(tmp: Path, corpus: Path, docs: int, changed: float) -> Path:
    """A copy of the corpus with a fraction of the descriptions edited."""
    import pandas as pd

    df = pd.read_parquet(corpus)
    picked = df.sample(n=max(1, int(docs * changed)), random_state=11).index
    df.loc[picked, "description"] = df.loc[picked, "description"] + " Updated edition."
    path = tmp / f"corpus-{docs}-edited.parquet"
    df.to_parquet(path, row_group_size=10_000)
    return path


def _rate(run: dict[str, Any], mode: str, digits: int = 1) -> str:
    return f"{run[mode]['docs_per_s']:.{digits}f}" if mode in run else "–"


def _ratio(run: dict[str, Any], a: str, b: str) -> str:
    if a in run and b in run:
        return f"{run[a]['docs_per_s'] / run[b]['docs_per_s']:.3f}"
    return "–"


def _table(runs: dict[int, dict[str, Any]]) -> list[str]:
    lines = [
        "| docs | (a) encode docs/s | (b) insert docs/s | (c) loop docs/s | (d) build docs/s "
        "| d/a | d/b | d/c | peak MiB a / c / d |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for docs, r in runs.items():
        peaks = " / ".join(
            f"{r[m]['peak_mib']:.0f}" if m in r else "–" for m in ("encode", "loop", "build")
        )
        lines.append(
            f"| {docs:,} | {_rate(r, 'encode')} | {_rate(r, 'insert', 0)} | {_rate(r, 'loop')} "
            f"| {_rate(r, 'build')} | {_ratio(r, 'build', 'encode')} "
            f"| {_ratio(r, 'build', 'insert')} | {_ratio(r, 'build', 'loop')} | {peaks} |"
        )
    if any("refresh" in r for r in runs.values()):
        lines += [
            "",
            "| docs | (e) refresh s | changed rows | compare s | copy s | embed s | (e) / (d) "
            "| peak MiB (e) | compare step + MiB |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for docs, r in runs.items():
            if "refresh" not in r:
                continue
            e, ph = r["refresh"], r["refresh"]["phases_s"]
            vs_build = f"{e['seconds'] / r['build']['seconds']:.3f}" if "build" in r else "–"
            lines.append(
                f"| {docs:,} | {e['seconds']:.1f} | {e['changes']['changed']:,} "
                f"| {ph['compare']:.1f} | {ph['copy']:.1f} | {ph['embed']:.1f} | {vs_build} "
                f"| {e['peak_mib']:.0f} | {e['compare_grew_mib']:.0f} |"
            )
    return lines


def _verdicts(runs: dict[int, dict[str, Any]], model: str) -> list[str]:
    sizes = sorted(runs)
    lines = []
    for docs in sizes:
        if "build" not in runs[docs]:
            continue
        build = runs[docs]["build"]
        ratio = build["docs_per_s"] / runs[docs]["encode"]["docs_per_s"]
        if model == "minilm":  # the model is the bottleneck: the build should keep its pace
            met = "met" if ratio >= RATIO_TARGET else "NOT met"
            lines.append(f"d/a at {docs:,} docs: {ratio:.3f} (target ≥ {RATIO_TARGET}: {met})")
        else:  # TF-IDF encodes faster than Milvus stores: the inserts are the bottleneck
            lines.append(
                f"d/a at {docs:,} docs: {ratio:.3f}; the model outruns Milvus here, so compare "
                f"d/b (the build against one writer upserting precomputed vectors): "
                f"{_ratio(runs[docs], 'build', 'insert')}"
            )
        stored = "every row once" if build["rows"] == docs else "ROWS MISSING OR DOUBLED"
        lines.append(
            f"(d) at {docs:,} docs stored {build['rows']:,} rows ({stored}); vectors equal "
            f"(a)'s within {build['max_diff_vs_a']:.1e} on {build['checked_rows']} sampled rows"
        )
    if len(sizes) > 1 and all("build" in runs[d] for d in sizes):
        small, large = runs[sizes[0]]["build"], runs[sizes[-1]]["build"]
        growth = large["peak_mib"] / small["peak_mib"]
        met = "met" if growth <= MEMORY_TARGET else "NOT met"
        lines.append(
            f"build peak memory {sizes[-1]:,} vs {sizes[0]:,} docs: {large['peak_mib']:.0f} / "
            f"{small['peak_mib']:.0f} MiB = {growth:.2f}× (target ≤ {MEMORY_TARGET}×: {met})"
        )
    return lines


def _environment(backend: str) -> dict[str, str]:
    env = {
        "MILVUS_URI": f"http://127.0.0.1:{_free_port()}",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_free_port()}",
        "PREFECT_API_URL": f"http://127.0.0.1:{_free_port()}/api",
        "INDEXPAIR_MILVUS_BACKEND": backend,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    import torch

    if torch.cuda.is_available():  # the same benchmark, unchanged, on a GPU machine
        for key, value in GPU_SETTINGS.items():
            env[key] = os.environ.get(key, value)
    return env


def _local_layout(settings: Any, backend: str, rows: int | None = None) -> str:
    import torch

    from indexpair.build.layout import plan
    from indexpair.gateways.ray_cluster import local_cpus

    return plan(settings, local_cpus(), torch.cuda.device_count(), backend, rows).describe()


def run(
    sizes: list[int], model: str, backend: str, modes: list[str], changed: float
) -> dict[str, Any]:
    """Start the services, measure every size, print and save the table."""
    from indexpair import stack
    from indexpair.settings import load_settings

    tmp = Path(tempfile.mkdtemp(prefix="indexpair-bench-reindex-"))
    os.environ.update(_environment(backend))
    os.environ["INDEXPAIR_STATE_DIR"] = str(tmp / "state")
    settings = load_settings()
    device = device_name()
    print(f"machine: {device}; backend: Milvus {backend}; model: {model}", flush=True)
    print(f"settings: {settings.model_dump(include=_TUNING)}", flush=True)
    print(f"build layout on the local Ray: {_local_layout(settings, backend)}", flush=True)
    started = time.perf_counter()
    stack.up(settings, PROJECT_DIR, ["milvus", "mlflow"])
    runs: dict[int, dict[str, Any]] = {}
    try:
        corpora = {docs: _generate(tmp, docs) for docs in sizes}
        model_probe = _register(settings, model, corpora[min(sizes)])
        print(f"model {model_probe.label}, {model_probe.dim}-dim", flush=True)
        for docs in sizes:
            print(
                f"{docs:,} documents; build: {_local_layout(settings, backend, docs)}:", flush=True
            )
            runs[docs] = _run_size(tmp, docs, model_probe, corpora[docs], modes, changed)
    finally:
        stack.down(settings)
    lines = _table(runs) + [""] + _verdicts(runs, model)
    print("\n" + "\n".join(lines))
    report = {
        "machine": device,
        "backend": backend,
        "model": model,
        "settings": settings.model_dump(include=_TUNING),
        "layout": _local_layout(settings, backend),
        "driver_idle_mib": tree_pss_mib(os.getpid()),
        "total_s": time.perf_counter() - started,
        "runs": {str(k): v for k, v in runs.items()},
        "table": lines,
    }
    RESULTS.mkdir(exist_ok=True)
    kind = "gpu" if "CUDA" in device else "cpu"
    (RESULTS / f"reindex-{backend}-{kind}.json").write_text(json.dumps(report, indent=2))
    return report


_TUNING = {
    "embed_batch_size",
    "embed_actors",
    "embed_num_gpus",
    "embed_threads",
    "embed_model_batch_size",
    "embed_fp16",
    "insert_batch_size",
    "insert_writers",
    "milvus_backend",
}


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--docs", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--model", choices=["minilm", "tfidf"], default="minilm")
    parser.add_argument("--backend", choices=["lite", "standalone"], default="lite")
    parser.add_argument("--modes", nargs="+", choices=MODES[:4], default=list(MODES[:4]))
    parser.add_argument(
        "--refresh", type=float, metavar="FRACTION", help="also (e): refresh after FRACTION changed"
    )
    args = parser.parse_args()
    modes = [m for m in MODES if m in args.modes or (m == "refresh" and args.refresh)]
    needs = {"build": "encode", "refresh": "build"}
    if any(m in modes and needs[m] not in modes for m in needs):
        parser.error("build is checked against encode's vectors, refresh refreshes build's")
    # A SIGTERM (a timeout, a CI cancel) still stops the services it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run(sorted(args.docs), args.model, args.backend, modes, args.refresh or 0.0)


if __name__ == "__main__":
    main()
