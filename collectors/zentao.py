"""The Zentao collector: NOT BUILT YET (issue 18 part B). A placeholder so that `[[sources.zentao]]` is
a known kind in collectors/run.py KINDS: a configured Zentao source fails its sync with an error
saying so (the summary is not ok, `cdmetrics sync` exits non-zero), never silently."""

from __future__ import annotations

from typing import Any

from collectors.frame import Collector
from collectors.sync import SourceSummary


class ZentaoCollector(Collector[Any]):
    """Placeholder: every sync of a Zentao source ends in an error naming the missing collector."""

    kind = "zentao"

    def sync(self) -> SourceSummary:
        """A summary with one error: this collector is not built yet."""
        summary = SourceSummary(self.source.name, self.kind)
        summary.errors.append(
            f"{self.source.name}: the Zentao collector is not built yet (issue 18 part B); "
            "remove the source from the config until it is"
        )
        return summary
