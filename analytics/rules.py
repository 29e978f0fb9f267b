"""The definitions derive and every read share (DESIGN.md section 4): the change-failure
parameters and the repository a deployment's changes come from."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import func

from warehouse.schema import Deployment, Service

# A deployment's repository: its own (a pushed event may name it), else its service's.
DEPLOYMENT_REPO = func.coalesce(Deployment.repo_id, Service.repo_id)


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
