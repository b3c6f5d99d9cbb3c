"""The CircleCI API gateway: trigger the promotion pipeline (API v2)."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from indexpair.errors import ConfigError, IndexPairError
from indexpair.settings import Settings

log = logging.getLogger(__name__)
TIMEOUT = httpx.Timeout(20.0, connect=5.0)


def pipeline_request(settings: Settings, parameters: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """URL and JSON body of ``POST /api/v2/project/{slug}/pipeline``.

    Raises:
        ConfigError: no project slug is configured.
    """
    if not settings.circleci_project_slug:
        raise ConfigError(
            "INDEXPAIR_CIRCLECI_PROJECT_SLUG is not set (e.g. 'gh/acme/indexpair'); "
            "needed to trigger CircleCI"
        )
    url = (
        f"{settings.circleci_api_url.rstrip('/')}/api/v2/project/"
        f"{settings.circleci_project_slug}/pipeline"
    )
    return url, {"branch": settings.circleci_branch, "parameters": parameters}


class CircleCiGateway:
    """The CircleCI API through one HTTP client (explicit timeouts) for its lifetime.

    Use it as a context: ``with CircleCiGateway(settings) as circleci: ...``.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.http = httpx.Client(timeout=TIMEOUT)

    def close(self) -> None:
        """Close the HTTP client's connections."""
        self.http.close()

    def __enter__(self) -> CircleCiGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def trigger_pipeline(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Trigger a pipeline with these pipeline parameters; return CircleCI's answer
        (``id``, ``number``, ``state``, ``created_at``).

        Raises:
            ConfigError: the token or the project slug is missing.
            IndexPairError: CircleCI is unreachable or refused the request (status and
                answer quoted; the token never is).
        """
        settings = self.settings
        if settings.circleci_token is None:
            raise ConfigError("INDEXPAIR_CIRCLECI_TOKEN is not set; needed to trigger CircleCI")
        url, body = pipeline_request(settings, parameters)
        headers = {
            "Circle-Token": settings.circleci_token.get_secret_value(),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        try:
            response = self.http.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise IndexPairError(
                f"CircleCI API at {settings.circleci_api_url} is unreachable ({type(exc).__name__})"
            ) from None
        if response.status_code >= 300:
            raise IndexPairError(
                f"CircleCI refused the pipeline trigger for {settings.circleci_project_slug}: "
                f"HTTP {response.status_code} {response.text[:300]!r}"
            )
        answer: dict[str, Any] = response.json()
        log.info("CircleCI pipeline #%s triggered (%s)", answer.get("number"), answer.get("id"))
        return answer
