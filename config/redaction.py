"""Secrets kept out of logs and messages: URLs with their credentials masked, and a log filter
that masks every URL a log record carries.

`install_log_redaction()` is called once at start-up by each entry point (the CLI, the HTTP
service, the dashboard); importing this module changes nothing. Once installed, every log record
of every logger (httpx's request lines, python-gitlab's, urllib3's, ours) has the URLs in its
message masked before any handler formats it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SECRET_PARAMS = re.compile(r"(?i)(token|secret|password|passwd|key|signature|auth)")
# an absolute URL in a message: up to the first blank, quote or closing bracket
URL_IN_TEXT = re.compile(r"""[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'"<>)\]]+""")
# a request target without scheme and host (urllib3 logs it apart from the host): path?query
TARGET_IN_TEXT = re.compile(r"""(?<![\w:/])/[^\s'"<>?]*\?[^\s'"<>)\]]+""")


def redact_url(url: str, *, path: bool = True) -> str:
    """`url` with user info and secret-looking query values replaced by `***`. With `path=False`
    only the scheme and host are kept (`https://hooks.example.com/***`: a webhook's path is its
    secret)."""
    parts = urlsplit(url)
    if not path:
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}/***"
    netloc = parts.netloc.rsplit("@", 1)[-1] if "@" in parts.netloc else parts.netloc
    if "@" in parts.netloc:
        netloc = "***@" + netloc
    query = urlencode(
        [
            (k, "***" if SECRET_PARAMS.search(k) else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*:/,",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str, secrets: Mapping[str, str] | None = None) -> str:
    """`text` with each of `secrets` (literal text -> what to show instead, in order) replaced,
    then every URL and request target in it passed through `redact_url`."""
    for secret, shown in (secrets or {}).items():
        if secret:
            text = text.replace(secret, shown)
    text = URL_IN_TEXT.sub(lambda m: _masked(m.group(0)), text)
    return TARGET_IN_TEXT.sub(lambda m: _masked(m.group(0)), text)


def _masked(url: str) -> str:
    """`redact_url(url)` when it holds a secret, else `url` as it is (not re-encoded)."""
    parts = urlsplit(url)
    secret = "@" in parts.netloc or any(
        SECRET_PARAMS.search(k) for k, _ in parse_qsl(parts.query, keep_blank_values=True)
    )
    return redact_url(url) if secret else url


class RedactingFilter(logging.Filter):
    """Masks the secrets in a log record's message (httpx logs every request at INFO with its full
    URL, presigned query strings included): URLs through `redact_url`, and `secrets` (literal
    text -> what to show instead) a caller knows of, such as a webhook URL."""

    def __init__(self, secrets: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.secrets = dict(secrets or {})

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: logging reports it as it is
            return True
        redacted = redact_text(message, self.secrets)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:  # a traceback's messages name URLs too
            record.exc_text = redact_text(_FORMAT.formatException(record.exc_info), self.secrets)
        return True


_FORMAT = logging.Formatter()


_installed: list[logging.Filter] = []


def install_log_redaction() -> None:
    """Mask URLs in every log record from now on (idempotent): each record is passed through a
    `RedactingFilter` as it is made, whichever logger makes it and whichever handler shows it."""
    if _installed:
        return
    redacting = RedactingFilter()
    make = logging.getLogRecordFactory()

    def redacted_record(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make(*args, **kwargs)
        redacting.filter(record)
        return record

    logging.setLogRecordFactory(redacted_record)
    _installed.append(redacting)
