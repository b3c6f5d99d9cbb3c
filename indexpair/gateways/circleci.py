"""The CircleCI API gateway (API v2): trigger the promotion pipeline, and read who approved
an approval job."""

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

    def _headers(self, what: str) -> dict[str, str]:
        if self.settings.circleci_token is None:
            raise ConfigError(f"INDEXPAIR_CIRCLECI_TOKEN is not set; needed to {what}")
        return {
            "Circle-Token": self.settings.circleci_token.get_secret_value(),
            "Accept": "application/json",
        }

    def _get(self, path: str, what: str, params: dict[str, str] | None = None) -> Any:
        """GET one API v2 resource; its JSON answer.

        Raises:
            IndexPairError: unreachable, or an answer other than 200 (status and answer
                quoted; the token never is).
        """
        base = self.settings.circleci_api_url.rstrip("/")
        try:
            response = self.http.get(
                f"{base}/api/v2/{path}", headers=self._headers(what), params=params
            )
        except httpx.HTTPError as exc:
            raise IndexPairError(
                f"CircleCI API at {self.settings.circleci_api_url} is unreachable "
                f"({type(exc).__name__}); cannot {what}"
            ) from None
        if response.status_code != 200:
            raise IndexPairError(
                f"CircleCI answered GET /api/v2/{path} with HTTP {response.status_code} "
                f"{response.text[:300]!r}; cannot {what}"
            )
        return response.json()

    def approver(self, workflow_id: str, job_name: str) -> str:
        """The login of the person who approved the approval job ``job_name`` of a workflow.

        Reads the workflow's jobs (the approval job carries ``approved_by``, a user id),
        then that user.

        Raises:
            ConfigError: no token is configured.
            IndexPairError: the API cannot be read, the workflow has no such approval job,
                or the job is not approved (yet).
        """
        what = f"read who approved {job_name!r}"
        jobs: list[dict[str, Any]] = []
        page: str | None = None
        while True:
            answer = self._get(
                f"workflow/{workflow_id}/job", what, {"page-token": page} if page else None
            )
            jobs.extend(answer.get("items") or [])
            page = answer.get("next_page_token")
            if not page:
                break
        found = [j for j in jobs if j.get("name") == job_name and j.get("type") == "approval"]
        if not found:
            names = sorted(str(j.get("name")) for j in jobs)
            raise IndexPairError(
                f"workflow {workflow_id} has no approval job {job_name!r} (its jobs: {names})"
            )
        user_id = found[0].get("approved_by")
        if not user_id:
            raise IndexPairError(
                f"approval job {job_name!r} of workflow {workflow_id} is not approved "
                f"(status {found[0].get('status')!r})"
            )
        user = self._get(f"user/{user_id}", what)
        login = str(user.get("login") or "").strip()
        if not login:
            raise IndexPairError(f"CircleCI user {user_id} has no login: {user!r}")
        return login

    def trigger_pipeline(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Trigger a pipeline with these pipeline parameters; return CircleCI's answer
        (``id``, ``number``, ``state``, ``created_at``).

        Raises:
            ConfigError: the token or the project slug is missing.
            IndexPairError: CircleCI is unreachable or refused the request (status and
                answer quoted; the token never is).
        """
        settings = self.settings
        headers = self._headers("trigger CircleCI") | {"Content-Type": "application/json"}
        url, body = pipeline_request(settings, parameters)
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
