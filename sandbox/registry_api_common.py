"""Helpers shared by the registry simulators."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable
from typing import Any

from sandbox.server import Request

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
