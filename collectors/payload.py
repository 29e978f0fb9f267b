"""Reading source payloads (plain JSON objects) safely: typed field reads whose errors name the
field by its dotted path, timestamps parsed to aware UTC, and `RejectedPayload` — the one error a
normaliser raises, so a sync stores the payload as rejected and goes on."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from warehouse.raw import payload_hash
from warehouse.vocabulary import UnknownStatusError

Row = dict[str, Any]
Payload = Mapping[str, Any]
P = ParamSpec("P")
R = TypeVar("R")


class RejectedPayload(ValueError):
    """A payload that cannot become a row; the message says which field and why."""


# --- timestamps and field access ------------------------------------------------------------

_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2}))?")


def parse_time(value: str | None, field: str) -> datetime | None:
    """The aware UTC datetime of an RFC 3339 timestamp (`T` or a space between date and time; a
    bare date is midnight UTC); None for None/""."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _TIMESTAMP.fullmatch(value):
        raise RejectedPayload(f"bad timestamp in {field}: {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise RejectedPayload(f"bad timestamp in {field}: {value!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def require(payload: Payload, *fields: str) -> None:
    """Returns None when every field (dotted for nesting: `commit.id`) is present and not None;
    else raises RejectedPayload naming the first one that is missing."""
    for field in fields:
        value: Any = payload
        for depth, part in enumerate(field.split(".")):
            if value is None:
                break
            if not isinstance(value, Mapping):
                parent = ".".join(field.split(".")[:depth]) or "payload"
                raise RejectedPayload(f"{parent} is not an object: {short(value)}")
            value = value.get(part)
        if value is None:
            raise RejectedPayload(f"missing {field}")


def short(value: Any) -> str:
    """`value` as repr, cut to 80 characters for an error message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class Fields:
    """Typed reads of one JSON object; every error names the field by its dotted path."""

    def __init__(self, payload: Any, path: str = "") -> None:
        if not isinstance(payload, Mapping):
            raise RejectedPayload(f"{path or 'payload'} is not an object: {short(payload)}")
        self._payload = payload
        self._path = path

    def name(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def has(self, key: str) -> bool:
        return key in self._payload

    def raw(self, key: str) -> Any:
        return self._payload.get(key)

    def _bad(self, key: str, what: str) -> RejectedPayload:
        return RejectedPayload(f"{self.name(key)} is not {what}: {short(self.raw(key))}")

    def obj(self, key: str) -> Fields:
        value = self.raw(key)
        return Fields({} if value is None else value, self.name(key))

    def array(self, key: str) -> list[Any]:
        value = self.raw(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._bad(key, "a list")
        return value

    def objects(self, key: str) -> list[Fields]:
        return [Fields(item, f"{self.name(key)}[{i}]") for i, item in enumerate(self.array(key))]

    def string(self, key: str) -> str | None:
        value = self.raw(key)
        if value is not None and not isinstance(value, str):
            raise self._bad(key, "a string")
        return value

    def required(self, key: str) -> str:
        value = self.string(key)
        if not value:
            raise RejectedPayload(f"missing {self.name(key)}")
        return value

    def ident(self, key: str) -> str:
        value = self.raw(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return self.required(key)

    def integer(self, key: str) -> int | None:
        value = self.raw(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise self._bad(key, "an integer")
        return value

    def number(self, key: str) -> float | None:
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._bad(key, "a number")
        return float(value)

    def flag(self, key: str) -> bool:
        value = self.raw(key)
        if value is not None and not isinstance(value, bool):
            raise self._bad(key, "true or false")
        return bool(value)

    def time(self, key: str) -> datetime | None:
        return parse_time(self.raw(key), self.name(key))

    def required_time(self, key: str) -> datetime:
        value = self.time(key)
        if value is None:
            raise RejectedPayload(f"missing {self.name(key)}")
        return value

    def status(self, key: str, normalise: Callable[[str], str]) -> tuple[str, str]:
        """(normalised, raw) status; an unknown one is rejected naming the field."""
        raw = self.required(key)
        try:
            return normalise(raw), raw
        except UnknownStatusError as exc:
            raise RejectedPayload(f"unknown status in {self.name(key)}: {raw!r}") from exc


def rejects(kind: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Prefix a normaliser's RejectedPayload messages with the kind of object it reads."""

    def decorate(normalise: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(normalise)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return normalise(*args, **kwargs)
            except RejectedPayload as exc:
                raise RejectedPayload(f"{kind}: {exc}") from exc

        return wrapper

    return decorate


def external_id_of(payload: Any) -> str:
    """The payload's `id` as a string, else "sha256:" + the hash of its canonical JSON (to store a
    rejected payload that lacks its id)."""
    if isinstance(payload, Mapping):
        value = payload.get("id")
        if (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and value
        ):
            return str(value)
    return "sha256:" + payload_hash(payload)


def partitioned(partition: str, item_id: str) -> str:
    """`<partition>/<item id>`: a raw payload's key in a stream read per partition (a GitLab
    project), so items whose ids are unique only within one (branch `main`, a commit shared by a
    fork) are each kept."""
    return f"{partition}/{item_id}"
