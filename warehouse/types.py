"""Column types shared by the warehouse schema.

`UTCDateTime` is the only datetime type the warehouse uses. It refuses naive datetimes (a naive
value is ambiguous: normalisers must say which zone a timestamp is in), stores the instant in UTC and
always returns a timezone-aware UTC datetime, on SQLite (which keeps text) and on PostgreSQL
(`timestamp with time zone`, returned in the session's zone) alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class NaiveDatetimeError(ValueError):
    """A naive datetime was given where the warehouse needs an instant."""


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and returned timezone-aware (UTC) on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}: {value!r}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise NaiveDatetimeError(
                f"naive datetime {value.isoformat()} given to the warehouse; "
                "attach its time zone (normalisers parse timestamps with their offset)"
            )
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # SQLite keeps text; a fixed UTC form keeps ordering and comparisons in SQL correct.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw text from SQLite (e.g. through an aggregate)
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# JSON everywhere; JSONB on PostgreSQL, whose json type has no equality (upserts compare rows).
Json = JSON().with_variant(JSONB(), "postgresql")
