"""Posting the Markdown summary to a Slack- or Mattermost-compatible incoming webhook.

A webhook URL is a credential (whoever has it can post to the channel): it is never logged or
shown whole; messages name only its scheme and host."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx

log = logging.getLogger(__name__)


class PostError(RuntimeError):
    """The webhook refused the message or could not be reached; the message names the host only."""


def redact_webhook(url: str) -> str:
    """`https://hooks.example.com/***`: scheme and host, never the path or query (the secret)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/***"


class _Redact(logging.Filter):
    """Replaces the webhook URL in log records (httpx logs every request's URL at INFO)."""

    def __init__(self, secret: str, shown: str) -> None:
        super().__init__()
        self.secret, self.shown = secret, shown

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        path = urlsplit(self.secret).path
        if self.secret in message or (len(path) > 1 and path in message):
            message = message.replace(self.secret, self.shown)
            record.msg, record.args = (
                message.replace(path, "/***") if len(path) > 1 else message,
                (),
            )
        return True


@contextmanager
def _redacted_logs(url: str, shown: str) -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in ("httpx", "httpcore")]
    redact = _Redact(url, shown)
    for logger in loggers:
        logger.addFilter(redact)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(redact)


def post_markdown(url: str, text: str, timeout: float = 15.0) -> None:
    """POST {"text": text} as JSON to the webhook; a PostError on anything but a 2xx answer."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise PostError(f"webhook URL {redact_webhook(url)} is not http(s)")
    shown = redact_webhook(url)
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
