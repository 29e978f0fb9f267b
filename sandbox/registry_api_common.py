"""Helpers shared by the registry simulators."""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Callable
from typing import Any

from sandbox.server import Request, Response

Handler = Callable[[Request], Any]


def basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return None
    return user, password


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def int_arg(query: dict[str, str], name: str, default: int, cap: int) -> int:
    try:
        value = int(query.get(name, ""))
    except ValueError:
        return default
    return min(value, cap) if value > 0 else default


HTML_PAGE = "<!DOCTYPE html><html><head><title>Sign in</title></head><body>Sign in</body></html>"


def html_page(request: Request, paths: list[str]) -> Response | None:
    """A 200 HTML page (what a proxy's login or error page looks like) when the request's path
    matches one of the regexes `paths` (searched), else None."""
    if any(re.search(p, request.path) for p in paths):
        return Response(HTML_PAGE.encode(), content_type="text/html; charset=utf-8")
    return None
