"""Posting the Markdown summary to a Slack- or Mattermost-compatible incoming webhook.

A webhook URL is a credential (whoever has it can post to the channel): it is never logged or
shown whole; messages name only its scheme and host."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx

from config.redaction import RedactingFilter, redact_url

log = logging.getLogger(__name__)


class PostError(RuntimeError):
    """The webhook refused the message or could not be reached; the message names the host only."""


@contextmanager
def _redacted_logs(url: str, shown: str) -> Iterator[None]:
    """The webhook URL (and its path alone) masked in the HTTP libraries' log lines meanwhile
    (httpx logs every request's URL at INFO)."""
    path = urlsplit(url).path
    redact = RedactingFilter({url: shown, **({path: "/***"} if len(path) > 1 else {})})
    loggers = [logging.getLogger(name) for name in ("httpx", "httpcore")]
    for logger in loggers:
        logger.addFilter(redact)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(redact)


def post_markdown(url: str, text: str, timeout: float = 15.0) -> None:
    """POST {"text": text} as JSON to the webhook; a PostError on anything but a 2xx answer."""
    shown = redact_url(url, path=False)  # `https://hooks.example.com/***`: the path is the secret
    if urlsplit(url).scheme not in ("http", "https"):
        raise PostError(f"webhook URL {shown} is not http(s)")
    try:
        with _redacted_logs(url, shown):
            response = httpx.post(url, json={"text": text}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise PostError(f"cannot post to {shown}: {type(exc).__name__}") from None
    if not response.is_success:
        raise PostError(
            f"{shown} answered {response.status_code} {response.reason_phrase}: "
            f"{response.text[:200]}"
        )
    log.info("posted the weekly summary to %s", shown)
