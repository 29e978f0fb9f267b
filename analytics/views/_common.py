"""Helpers shared by the views: rows as dicts, GitLab links."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Float
from sqlalchemy.ext.compiler import compiles

Window = tuple[datetime, datetime]


def as_dicts(result: Any) -> list[dict[str, Any]]:
    """The rows of a result as dicts keyed by column label."""
    return [dict(r._mapping) for r in result]


FAILURE_REASONS = ("incident", "rollback", "hotfix")  # the columns of change_failure, in order


def failure_reasons(row: dict[str, Any]) -> str:
    """What made a deployment a failed change, in words (`incident, rollback`; empty for none),
    popping the row's change_failure flags."""
    return ", ".join(k for k in FAILURE_REASONS if row.pop(k))


def commit_url(repo_url: str | None, sha: str | None) -> str | None:
    """GitLab's page of a commit (None without a repository URL or a sha)."""
    return f"{repo_url}/-/commit/{sha}" if repo_url and sha else None


def compare_url(repo_url: str | None, older: str | None, newer: str | None) -> str | None:
    """GitLab's page of the commits in `newer` and not in `older`."""
    return f"{repo_url}/-/compare/{older}...{newer}" if repo_url and older and newer else None


class Seconds(ColumnElement[float]):
    """Seconds from `start` to `end`, two warehouse timestamps, computed in the database:
    julianday arithmetic on SQLite (which stores them as UTC text), EXTRACT(EPOCH ...) on
    PostgreSQL. Lets a view rank by a time span without fetching every row."""

    inherit_cache = True
    type = Float()

    def __init__(self, start: Any, end: Any) -> None:
        self.start, self.end = start, end


@compiles(Seconds, "sqlite")
def _seconds_sqlite(element: Seconds, compiler: Any, **kw: Any) -> str:
    end, start = compiler.process(element.end, **kw), compiler.process(element.start, **kw)
    return f"((julianday({end}) - julianday({start})) * 86400.0)"


@compiles(Seconds, "postgresql")
def _seconds_postgresql(element: Seconds, compiler: Any, **kw: Any) -> str:
    end, start = compiler.process(element.end, **kw), compiler.process(element.start, **kw)
    return f"EXTRACT(EPOCH FROM ({end} - {start}))"
