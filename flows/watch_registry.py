"""The registry watcher: a staging version with no pair and no build in flight gets one.

It catches what a webhook missed: a lost delivery, or a version moved to the legacy
``Staging`` stage (stage changes fire no webhook).
"""

from __future__ import annotations

from prefect import flow

from indexpair.settings import load_settings
from indexpair.triggers import TriggerResult
from tasks.watch import find_staging_versions, start_promotion


@flow(name="watch-registry")
def watch_registry(model_names: list[str] | None = None) -> list[TriggerResult]:
    """Start ``promote`` for every staging version that has no pair and no run yet.

    Args:
        model_names: registered models to watch; default ``INDEXPAIR_TRIGGER_MODELS``.
    """
    settings = load_settings()
    results = []
    for model_name in model_names or settings.trigger_model_names:
        for version in find_staging_versions(settings, model_name):
            results.append(start_promotion(settings, model_name, version))
    return results
