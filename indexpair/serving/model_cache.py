"""Model versions the query side holds in memory, shared by concurrent requests."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from indexpair.errors import RegistryError
from indexpair.gateways.mlflow import MlflowRegistry, ModelVersionRef
from indexpair.models import load_model
from indexpair.pair import PairMetadata
from indexpair.settings import Settings

log = logging.getLogger(__name__)


class _Entry:
    def __init__(self) -> None:
        self.model: Any = None
        self.error: BaseException | None = None
        self.users = 0
        self.ready = threading.Event()


class ModelCache:
    """Loaded model versions: least recently used evicted first, never one still in use.

    A version being loaded blocks only the requests that need it; requests on an older
    version keep running on the model they hold.
    """

    def __init__(self, settings: Settings, capacity: int) -> None:
        self.settings = settings
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._warming: set[tuple[str, str]] = set()
        self._failed: set[tuple[str, str]] = set()  # background loads that raised
        # Called with True after a model version is loaded, False after one is unloaded.
        self.on_change: Callable[[bool], None] | None = None

    def _load(self, pair: PairMetadata) -> Any:
        ref = ModelVersionRef(name=pair.model_name, version=pair.model_version, uri=pair.model_uri)
        started = time.perf_counter()
        try:
            with MlflowRegistry(self.settings) as registry:
                model = load_model(registry.download_model(ref), ref.display)
        except Exception as exc:  # MLflow, network, unpickling: one typed error naming the model
            raise RegistryError(
                f"model {ref.name} v{ref.version} ({ref.uri}) could not be loaded from "
                f"MLflow at {self.settings.mlflow_tracking_uri}: {str(exc)[:300]}"
            ) from exc
        log.info("loaded %s v%s in %.1f s", ref.name, ref.version, time.perf_counter() - started)
        return model

    @contextmanager
    def use(self, pair: PairMetadata) -> Iterator[Any]:
        """Hold the pair's model version for one request (loading it the first time)."""
        key = (pair.model_name, pair.model_version)
        with self._lock:
            entry = self._entries.get(key)
            loader = entry is None
            if entry is None:
                entry = self._entries[key] = _Entry()
            self._entries.move_to_end(key)
            entry.users += 1
        try:
            if loader:
                try:
                    entry.model = self._load(pair)
                    with self._lock:
                        self._failed.discard(key)
                    if self.on_change is not None:
                        self.on_change(True)
                except BaseException as exc:
                    entry.error = exc
                    with self._lock:  # the next request tries again
                        self._entries.pop(key, None)
                    raise
                finally:
                    entry.ready.set()
            entry.ready.wait()
            if entry.error is not None:
                raise RegistryError(str(entry.error)) from entry.error  # a waiter's copy
            yield entry.model
        finally:
            with self._lock:
                entry.users -= 1
                unloaded = self._evict()
            if unloaded and self.on_change is not None:
                self.on_change(False)

    def _evict(self) -> int:
        """Unload idle models beyond the capacity; returns how many."""
        unloaded = 0
        while len(self._entries) > self.capacity:
            idle = [k for k, e in self._entries.items() if e.users == 0 and e.ready.is_set()]
            if not idle:
                break
            log.info("unloading model %s v%s", *idle[0])
            del self._entries[idle[0]]
            unloaded += 1
        return unloaded

    def is_ready(self, pair: PairMetadata) -> bool:
        """True when the pair's model version is loaded and can be used without waiting."""
        with self._lock:
            entry = self._entries.get((pair.model_name, pair.model_version))
            return entry is not None and entry.ready.is_set() and entry.error is None

    def failed(self, pair: PairMetadata) -> bool:
        """True when a background load of the pair's model raised (and none succeeded since)."""
        with self._lock:
            return (pair.model_name, pair.model_version) in self._failed

    def load_in_background(self, pair: PairMetadata) -> None:
        """Start loading the pair's model version in a thread (once; errors are logged)."""
        key = (pair.model_name, pair.model_version)
        with self._lock:
            if key in self._warming or key in self._entries:
                return
            self._warming.add(key)

        def load() -> None:
            try:
                with self.use(pair):
                    pass
            except Exception:
                log.exception("background load of %s v%s failed", *key)
                with self._lock:
                    self._failed.add(key)
            finally:
                with self._lock:
                    self._warming.discard(key)

        threading.Thread(target=load, name=f"load-{key[0]}-v{key[1]}", daemon=True).start()

    def loaded(self) -> list[tuple[str, str]]:
        """Model versions held now, least recently used first."""
        with self._lock:
            return [k for k, e in self._entries.items() if e.ready.is_set()]
