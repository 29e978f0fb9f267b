"""The HTTP side the Zentao and PagerDuty collectors share: one httpx client per thread under the
shared policy (`collectors.http.PolicyTransport`: rate limiter, retries on 429/5xx honouring
Retry-After, timeouts, request counting), requests that fail with `TrackerError` naming the
source and the URL (redacted, without its query), and JSON objects checked to be objects.
"""

from __future__ import annotations

from typing import Any

import httpx

from collectors.frame import HttpCollector
from collectors.http import MalformedBody, redact_url


class TrackerError(Exception):
    """A request to a tracker that failed (connection, HTTP status, a body that is no object)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TrackerCollector(HttpCollector[Any]):
    """A tracker's collector: subclasses give `headers()` and `auth()` (collectors.frame)."""

    listing_errors = (TrackerError, MalformedBody)

    def get(self, path: str, params: Any = None) -> dict[str, Any]:
        """The JSON object a GET answers; `TrackerError` otherwise."""
        return self.call("GET", path, params=params)

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """The JSON object a request answers; `TrackerError` on a failed connection, a non-2xx
        status or a body that is not a JSON object."""
        client = self.client()
        try:
            response = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            where = self.last_url(path)
            raise TrackerError(f"{type(exc).__name__}: {exc} (request: {where})") from None
        where = redact_url(str(response.request.url).split("?")[0])
        if response.status_code >= 400:
            raise TrackerError(
                f"HTTP {response.status_code} {response.reason_phrase} (request: {where})",
                response.status_code,
            )
        try:
            body = response.json()
        except ValueError:
            raise TrackerError(f"not JSON from {where}") from None
        if not isinstance(body, dict):
            raise TrackerError(f"expected a JSON object, got {type(body).__name__} from {where}")
        return body

    def describe(self, where: str, stream: str) -> Any:
        """The failure message of a partition's stream (for `run.attempt`)."""

        def message(exc: Exception) -> str:
            return (
                f"{self.source.name}: {where}: {stream}: {exc}; the next sync resumes from the "
                "last saved cursor"
            )

        return message


__all__ = ["TrackerCollector", "TrackerError"]
