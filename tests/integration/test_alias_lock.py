"""The per-alias lock on the real Prefect server: one holder at a time, a bounded wait,
the limit created when missing, the lease renewed while held and released after."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import pytest

from indexpair.gateways import prefect as prefect_api
from indexpair.settings import Settings

pytestmark = pytest.mark.integration


def _limit(name: str) -> tuple[int, int]:
    """The limit's size and its slots taken now, read back from the server."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(name)
    return limit.limit, limit.active_slots


def test_holders_take_turns_and_the_limit_is_created(stack_settings: Settings) -> None:
    name = f"test-lock-{uuid.uuid4().hex[:8]}"
    spans: dict[str, tuple[float, float]] = {}
    first_in = threading.Event()

    def hold(who: str, seconds: float) -> None:
        with prefect_api.prefect_api(stack_settings), prefect_api.alias_lock(name, 30):
            start = time.monotonic()
            first_in.set()
            time.sleep(seconds)
            spans[who] = (start, time.monotonic())

    with prefect_api.prefect_api(stack_settings):
        first = threading.Thread(target=hold, args=("first", 1.5))
        first.start()
        assert first_in.wait(30)
        assert _limit(name) == (1, 1)  # created on first use, one slot, taken
        hold("second", 0.0)
        first.join()
        assert _limit(name) == (1, 0)  # released
    assert spans["second"][0] >= spans["first"][1]  # the second waited for the first


def test_a_wait_is_bounded_and_names_the_lock(stack_settings: Settings) -> None:
    name = f"test-lock-{uuid.uuid4().hex[:8]}"
    with prefect_api.prefect_api(stack_settings), prefect_api.alias_lock(name):
        started = time.monotonic()
        with pytest.raises(prefect_api.LockTimeout) as caught, prefect_api.alias_lock(name, 1):
            pytest.fail("a held lock was taken twice")
        assert time.monotonic() - started < 15
    assert isinstance(caught.value, TimeoutError)  # what the trigger catches
    assert name in str(caught.value)


def test_the_lease_is_renewed_while_held(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from prefect.client.orchestration import SyncPrefectClient

    renewed: list[object] = []
    renew = SyncPrefectClient.renew_concurrency_lease

    def counted(self: SyncPrefectClient, *args: object, **kwargs: object) -> object:
        result = renew(self, *args, **kwargs)  # the real call to the server
        renewed.append(kwargs.get("lease_id"))
        return result

    monkeypatch.setattr(SyncPrefectClient, "renew_concurrency_lease", counted)
    monkeypatch.setattr(prefect_api, "RENEW_EVERY_S", 0.2)
    name = f"test-lock-{uuid.uuid4().hex[:8]}"
    caplog.set_level(logging.WARNING, logger=prefect_api.__name__)
    with prefect_api.prefect_api(stack_settings):
        with prefect_api.alias_lock(name):
            time.sleep(1.0)
            assert _limit(name) == (1, 1)
        assert _limit(name) == (1, 0)
    assert len(renewed) >= 3 and len(set(renewed)) == 1  # the one lease, renewed
    assert not [r for r in caplog.records if "lease" in r.getMessage()]
