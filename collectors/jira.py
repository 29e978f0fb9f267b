"""The Jira collector: NOT BUILT YET (issue 18 part A). A placeholder so that `[[sources.jira]]` is
a known kind in collectors/run.py KINDS: a configured Jira source fails its sync with an error
saying so (the summary is not ok, `cdmetrics sync` exits non-zero), never silently."""

from __future__ import annotations

from typing import Any

from collectors.frame import Collector
from collectors.sync import SourceSummary


class JiraCollector(Collector[Any]):
    """Placeholder: every sync of a Jira source ends in an error naming the missing collector."""

    kind = "jira"

    def sync(self) -> SourceSummary:
        """A summary with one error: this collector is not built yet."""
        summary = SourceSummary(self.source.name, self.kind)
        summary.errors.append(
            f"{self.source.name}: the Jira collector is not built yet (issue 18 part A); "
            "remove the source from the config until it is"
        )
        return summary
