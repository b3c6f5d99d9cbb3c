"""How the build spreads over Ray: embedding actors, threads, GPUs and insert writers.

A pure function of the settings and what the cluster has, so the defaults can be shown
and checked (``tests/unit/test_embedding_layout.py``); measured with
``benchmarks/reindex.py``.
"""

from __future__ import annotations

from pydantic import BaseModel

from indexpair.errors import ConfigError
from indexpair.settings import Settings

WRITER_CPUS = 0.1  # a writer actor mostly waits on Milvus
WRITER_SLOT = 1.0  # kept out of the automatic actor count, for the insert writers
# A model replica costs seconds of start-up (imports, weights); below this many rows per
# actor, fewer actors with more threads each finish sooner.
MIN_ROWS_PER_ACTOR = 5000
SERVER_WRITERS = 4  # parallel writers on a Milvus server; Milvus Lite takes one
# Texts per forward pass. On the CPU small batches pad less (texts of one batch are
# padded to its longest) and lose nothing else: MiniLM, one thread, 256-row calls: 68.3
# texts/s at 64, 71.9 at 32, 74.3 at 16, 72.9 at 8 (docs/performance.md). A GPU wants them big.
CPU_FORWARD_BATCH = 16
GPU_FORWARD_BATCH = 256


class Layout(BaseModel):
    """Where the build's work runs."""

    actors: int
    threads: int
    cpus_per_actor: float
    gpus_per_actor: float
    writers: int
    forward_batch: int

    def describe(self) -> str:
        """One line for the log: ``2 embedding actor(s) × 1 thread(s) (CPU), forward batch
        16, 1 writer(s)``."""
        device = f"{self.gpus_per_actor:g} GPU each" if self.gpus_per_actor else "CPU"
        return (
            f"{self.actors} embedding actor(s) × {self.threads} thread(s) ({device}), "
            f"forward batch {self.forward_batch}, {self.writers} writer(s)"
        )


def forward_batch(settings: Settings, on_gpu: bool) -> int:
    """Texts per forward pass of the model: the setting, or the default for the device."""
    if settings.embed_model_batch_size:
        return settings.embed_model_batch_size
    return GPU_FORWARD_BATCH if on_gpu else CPU_FORWARD_BATCH


def plan(
    settings: Settings, cpus: float, gpus: float, backend: str, rows: int | None = None
) -> Layout:
    """The layout for a cluster with ``cpus``/``gpus`` logical resources, for ``rows``
    rows to embed (when known).

    On the CPU one single-threaded actor per core beats one actor using every core
    (measured: 2 × 1 thread ≈ 1.15–1.3× 1 × 2 threads on 2 cores), so that is the
    default. One logical CPU stays out of the count, shared by the insert writers (a
    local Ray has the cores plus that one); the source is read by the driver. A small
    build gets fewer actors, one per ``MIN_ROWS_PER_ACTOR`` rows, with the cores shared
    out among them.

    Raises:
        ConfigError: the settings ask for more than the cluster has (Ray would wait
            for ever), naming the values.
    """
    num_gpus = settings.embed_num_gpus
    if num_gpus:
        actors = settings.embed_actors or max(1, int(gpus // num_gpus))
        threads = settings.embed_threads or 1
    elif settings.embed_actors:
        actors = settings.embed_actors
        threads = settings.embed_threads or max(1, int((cpus - WRITER_SLOT) // actors))
    else:
        threads = settings.embed_threads or 1
        actors = max(1, int((cpus - WRITER_SLOT) // threads))
        if rows is not None and actors > max(1, rows // MIN_ROWS_PER_ACTOR):
            actors = max(1, rows // MIN_ROWS_PER_ACTOR)
            threads = settings.embed_threads or max(1, int((cpus - WRITER_SLOT) // actors))
    writers = settings.insert_writers or (1 if backend == "lite" else SERVER_WRITERS)
    layout = Layout(
        actors=actors,
        threads=threads,
        cpus_per_actor=float(threads),
        gpus_per_actor=num_gpus,
        writers=writers,
        forward_batch=forward_batch(settings, on_gpu=num_gpus > 0),
    )
    _check_fits(layout, cpus, gpus)
    return layout


def _check_fits(layout: Layout, cpus: float, gpus: float) -> None:
    writer_cpus = layout.writers * WRITER_CPUS if layout.writers > 1 else 0.0
    needed = layout.actors * layout.cpus_per_actor + writer_cpus
    if needed > cpus + 1e-9:
        raise ConfigError(
            f"INDEXPAIR_EMBED_ACTORS={layout.actors} × INDEXPAIR_EMBED_THREADS="
            f"{layout.threads} needs {needed:g} CPUs with the insert writers; the Ray "
            f"cluster has {cpus:g}"
        )
    if layout.gpus_per_actor and layout.actors * layout.gpus_per_actor > gpus:
        raise ConfigError(
            f"INDEXPAIR_EMBED_NUM_GPUS={layout.gpus_per_actor:g} × {layout.actors} actor(s) "
            f"needs {layout.actors * layout.gpus_per_actor:g} GPUs; the Ray cluster has {gpus:g}"
        )
