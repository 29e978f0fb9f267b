"""The definitions derive and every read share (DESIGN.md section 4): the change-failure
parameters and the repository a deployment's changes come from."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import ColumnElement, and_, func

from warehouse.schema import Deployment, MergeRequest, MrCommit, Pipeline, Service, TestRun

# A deployment's repository: its own (a pushed event may name it), else its service's.
DEPLOYMENT_REPO = func.coalesce(Deployment.repo_id, Service.repo_id)

# A test run's pipeline: by the source's pipeline id (the join of every read of test results).
TEST_RUN_PIPELINE = and_(
    Pipeline.source_id == TestRun.source_id,
    Pipeline.external_id == TestRun.pipeline_external_id,
)

# A merge request's commit rows (the join of every read of an MR's commits).
MR_COMMIT = and_(MrCommit.repo_id == MergeRequest.repo_id, MrCommit.iid == MergeRequest.iid)


def merged(mr: Any = MergeRequest) -> ColumnElement[bool]:
    """`state = 'merged'` of the merge request `mr` (an alias, or the table), written so that no
    index serves it. SQLite plans from its indexes alone (no statistics): given the bare
    equality, it read merge requests through the state index, every merged MR ever, instead of
    the index the rest of the query names ((repo, sha), (repo, merged_at), the merge or squash
    commit): 0.3-3 s instead of milliseconds on the large organisation. A read that wants the
    state index (the unreleased MRs, by (state, released_at)) names `state` bare."""
    return func.coalesce(mr.state, "") == "merged"


@dataclass(frozen=True)
class FailureRules:
    """The parameters of the change-failure definition (config `[metrics]`)."""

    failure_window: timedelta = timedelta(days=7)
    hotfix_window: timedelta = timedelta(hours=24)
    hotfix_refs: tuple[str, ...] = ("hotfix/*",)

    @classmethod
    def from_settings(cls, settings: Any) -> FailureRules:
        """The change-failure parameters of the configuration's `[metrics]` section (a
        `config.settings.Settings`)."""
        m = settings.metrics
        return cls(m.failure_window, m.hotfix_window, tuple(m.hotfix_refs))

    def is_hotfix(self, ref: str | None) -> bool:
        return bool(ref) and self._hotfix.match(ref or "") is not None

    @cached_property
    def _hotfix(self) -> re.Pattern[str]:
        """`hotfix_refs` as one pattern (fnmatch's, case-sensitive as on POSIX): derive asks it
        of every production deployment."""
        return re.compile("|".join(map(fnmatch.translate, self.hotfix_refs)) or "(?!)")
