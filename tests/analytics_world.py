"""A tiny hand-built warehouse for analytics tests: one service, its repo, three environments,
and whatever commits, merge requests, deployments and incidents a test adds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from analytics.derive import DeriveSummary, derive
from analytics.metrics import metrics
from analytics.rules import FailureRules
from analytics.scope import Scope
from warehouse.dimensions import ensure_id, ensure_source
from warehouse.schema import (
    Branch,
    Commit,
    CommitParent,
    Deployment,
    Environment,
    Incident,
    MergeRequest,
    MrCommit,
    Pipeline,
    Repo,
    Service,
    Team,
)
from warehouse.upsert import upsert

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday


def at(hours: float) -> datetime:
    """T0 plus `hours`."""
    return T0 + timedelta(hours=hours)


class World:
    def __init__(self, engine: Engine, service: str = "shop", team: str = "core") -> None:
        self.engine = engine
        with engine.begin() as conn:
            self.source = ensure_source(conn, "gitlab", "gitlab")
            self.repo = ensure_id(
                conn,
                Repo,
                {
                    "source_id": self.source,
                    "external_id": service,
                    "path": service,
                    "default_branch": "main",
                },
            )
            team_id = ensure_id(conn, Team, {"name": team})
            self.service = ensure_id(
                conn, Service, {"name": service, "team_id": team_id, "repo_id": self.repo}
            )
            self.env = {
                name: ensure_id(
                    conn,
                    Environment,
                    {"name": name, "tier": tier, "position": i, "raw_names": [name]},
                )
                for i, (name, tier) in enumerate(
                    (("test", "testing"), ("staging", "staging"), ("production", "production"))
                )
            }
        self.deployments = 0

    def add(self, table: Any, rows: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            upsert(conn, table, rows)

    def commit(self, sha: str, *parents: str, authored: datetime = T0) -> str:
        self.add(
            Commit,
            [
                {
                    "repo_id": self.repo,
                    "sha": sha,
                    "authored_at": authored,
                    "committed_at": authored,
                    "is_merge": len(parents) > 1,
                }
            ],
        )
        if parents:
            self.add(
                CommitParent,
                [
                    {"repo_id": self.repo, "sha": sha, "parent_sha": p, "position": i}
                    for i, p in enumerate(parents)
                ],
            )
        return sha

    def line(self, *shas: str, start: datetime = T0, step_h: float = 1) -> None:
        """Commits in a line, each the parent of the next, authored `step_h` apart."""
        parent: tuple[str, ...] = ()
        for i, sha in enumerate(shas):
            self.commit(sha, *parent, authored=start + timedelta(hours=i * step_h))
            parent = (sha,)

    def merge_request(
        self,
        iid: int,
        commits: list[str],
        *,
        created: datetime,
        merged: datetime,
        first_review: datetime | None = None,
        merge_sha: str | None = None,
        squash_sha: str | None = None,
        source: str | None = None,
        target: str | None = None,
        author: str | None = None,
        head: str | None = None,
        state: str = "merged",
    ) -> None:
        self.add(
            MergeRequest,
            [
                {
                    "repo_id": self.repo,
                    "iid": iid,
                    "state": state,
                    "created_at": created,
                    "merged_at": merged if state == "merged" else None,
                    "first_review_at": first_review,
                    "merge_commit_sha": merge_sha,
                    "squash_commit_sha": squash_sha,
                    "source_branch": source,
                    "target_branch": target,
                    "author": author,
                    "head_sha": head,
                }
            ],
        )
        self.add(MrCommit, [{"repo_id": self.repo, "iid": iid, "sha": sha} for sha in commits])

    def branch(self, name: str, last_commit: datetime, *, default: bool = False) -> None:
        """A branch whose head was committed at `last_commit`."""
        self.add(
            Branch,
            [
                {
                    "repo_id": self.repo,
                    "name": name,
                    "is_default": default,
                    "head_sha": f"{name}-head",
                    "last_commit_at": last_commit,
                }
            ],
        )

    def deploy(
        self,
        sha: str,
        finished: datetime,
        env: str = "production",
        *,
        status: str = "success",
        ref: str = "main",
        digest: str | None = None,
        pinned: bool = True,
        service: int | None = None,
    ) -> str:
        """A deployment finished at `finished` (started 5 minutes before), of image
        `sha256:<sha>` unless `digest` names one; `pinned=False`: the source named no image;
        `service`: of that service, naming no repository (its service's counts)."""
        self.deployments += 1
        external = f"d{self.deployments}"
        self.add(
            Deployment,
            [
                {
                    "source_id": self.source,
                    "external_id": external,
                    "service_id": service or self.service,
                    "environment_id": self.env[env],
                    "repo_id": None if service else self.repo,
                    "status": status,
                    "sha": sha,
                    "ref": ref,
                    "created_at": finished - timedelta(minutes=5),
                    "started_at": finished - timedelta(minutes=5),
                    "finished_at": finished,
                    "image_digest": (digest or f"sha256:{sha}") if pinned else None,
                    "image_resolution": "explicit" if pinned else "none",
                }
            ],
        )
        return external

    def incident(
        self,
        name: str,
        opened: datetime,
        resolved: datetime | None = None,
        linked_to: str | None = None,
    ) -> None:
        self.add(
            Incident,
            [
                {
                    "source_id": self.source,
                    "external_id": name,
                    "service_id": self.service,
                    "opened_at": opened,
                    "resolved_at": resolved,
                    "deployment_source_id": self.source if linked_to else None,
                    "deployment_external_id": linked_to,
                }
            ],
        )

    def pipeline(
        self, name: str, status: str, finished: datetime, duration: float = 600, ref: str = "main"
    ) -> None:
        self.add(
            Pipeline,
            [
                {
                    "source_id": self.source,
                    "external_id": name,
                    "repo_id": self.repo,
                    "ref": ref,
                    "status": status,
                    "created_at": finished - timedelta(seconds=duration + 60),
                    "finished_at": finished,
                    "duration_s": duration,
                    "queued_s": 60.0,
                }
            ],
        )

    def derive(self, **rules: Any) -> DeriveSummary:
        return derive(self.engine, FailureRules(**rules))

    def metrics(
        self,
        since: datetime = T0 - timedelta(days=1),
        until: datetime = T0 + timedelta(days=27),
        **options: Any,
    ) -> dict[str, Any]:
        by = options.pop("by", None)
        rules = options.pop("rules", None)
        with self.engine.connect() as conn:
            return metrics(conn, Scope(since, until, **options), by=by, rules=rules)
