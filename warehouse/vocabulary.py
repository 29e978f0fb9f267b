"""The shared vocabulary: normalised statuses and canonical environments.

Pure functions, table-tested; collectors, the sandbox and analytics all speak this language.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

# --- statuses -------------------------------------------------------------------------------

SUCCESS, FAILED, CANCELED, RUNNING, PENDING, SKIPPED, MANUAL = (
    "success",
    "failed",
    "canceled",
    "running",
    "pending",
    "skipped",
    "manual",
)
STATUSES: Final = (SUCCESS, FAILED, CANCELED, RUNNING, PENDING, SKIPPED, MANUAL)
FINISHED: Final = frozenset({SUCCESS, FAILED, CANCELED, SKIPPED})

# GitLab: deployments (created, running, success, failed, canceled, skipped, blocked), pipelines
# and jobs (the rest). `canceling` is on its way to canceled; `blocked` waits for an approval.
_GITLAB: Final[Mapping[str, str]] = {
    "created": PENDING,
    "waiting_for_resource": PENDING,
    "preparing": PENDING,
    "pending": PENDING,
    "scheduled": PENDING,
    "waiting_for_callback": PENDING,
    "running": RUNNING,
    "success": SUCCESS,
    "failed": FAILED,
    "canceled": CANCELED,
    "canceling": CANCELED,
    "skipped": SKIPPED,
    "manual": MANUAL,
    "blocked": MANUAL,
}

# Jenkins build results. UNSTABLE (built, but tests failed) counts as failed; the raw value is kept.
_JENKINS: Final[Mapping[str, str]] = {
    "SUCCESS": SUCCESS,
    "FAILURE": FAILED,
    "UNSTABLE": FAILED,
    "ABORTED": CANCELED,
    "NOT_BUILT": SKIPPED,
}


class UnknownStatusError(ValueError):
    """A source reported a status this vocabulary does not know."""


def gitlab_status(raw: str) -> str:
    """Normalise a GitLab pipeline, job or deployment status."""
    try:
        return _GITLAB[raw.lower()]
    except KeyError:
        raise UnknownStatusError(f"unknown GitLab status {raw!r}") from None


def jenkins_status(result: str | None, building: bool = False) -> str:
    """Normalise a Jenkins build: running while `building` (a declarative pipeline sets an
    interim `result` before its post steps finish), else its `result`, else pending."""
    if result is None:
        return RUNNING if building else PENDING
    try:
        status = _JENKINS[result.upper()]
    except KeyError:
        raise UnknownStatusError(f"unknown Jenkins build result {result!r}") from None
    return RUNNING if building else status


# --- environments ---------------------------------------------------------------------------

TIERS: Final = ("development", "testing", "staging", "production", "other")

# The canonical environment name for each tier when no alias names one.
TIER_NAMES: Final[Mapping[str, str]] = {
    "development": "development",
    "testing": "test",
    "staging": "staging",
    "production": "production",
}

# Ctrip-style FAT/UAT/PRO and the usual names, as in DESIGN.md's example config.
DEFAULT_ALIASES: Final[Mapping[str, Sequence[str]]] = {
    "test": ["(?i)^(fat|test|qa)"],
    "staging": ["(?i)^(uat|pre|stag)"],
    "production": ["(?i)^(pro|prod|production|live)$"],
}

# Production regions: `prod-cn`, `PRO_US`, `production.eu-west` are production environments of
# their own (`production-cn`, ...), each with its own deployment chain (DESIGN.md section 9).
DEFAULT_REGIONS: Final = (
    r"(?i)^(?:pro|prod|production|live)[-_.](?P<region>[a-z0-9]+(?:-[a-z0-9]+)*)$"
)

# GitLab's own guess of a tier from an environment name (Environment#guess_tier), plus uat.
_GUESSES: Final = (
    ("development", re.compile(r"(dev|review|trunk)", re.I)),
    ("testing", re.compile(r"(test|tst|int|ac(ce|)pt|qa|qc|control|quality)", re.I)),
    ("staging", re.compile(r"(st(a|)g|mod(e|)l|pre|demo|non|uat)", re.I)),
    ("production", re.compile(r"(pr(o|)d|live)", re.I)),
)


@dataclass(frozen=True)
class CanonicalEnvironment:
    """Where a raw environment name lands: canonical name, tier, and which rule decided."""

    name: str
    tier: str
    rule: str  # alias | region | tier | guess | raw
    stage: str | None = None  # a region's place on the promotion path: its tier's name

    @property
    def path_name(self) -> str:
        """The name that places it on the promotion path (a region stands where production does)."""
        return self.stage or self.name


def tier_of(name: str) -> str:
    """GitLab's name guess of a tier (`other` when nothing matches)."""
    for tier, pattern in _GUESSES:
        if pattern.search(name):
            return tier
    return "other"


class EnvironmentMapper:
    """Maps raw environment names to canonical ones: config aliases first, then production
    regions (`regions`, a pattern with a `region` group; empty: none), then the source's tier
    (GitLab's `tier` field), then GitLab's name guess; anything else keeps its raw name, tier other.
    """

    def __init__(
        self, aliases: Mapping[str, Sequence[str]] = DEFAULT_ALIASES, regions: str = DEFAULT_REGIONS
    ) -> None:
        self._aliases = [
            (canonical, re.compile(pattern))
            for canonical, patterns in aliases.items()
            for pattern in patterns
        ]
        self._regions = re.compile(regions) if regions else None

    def canonical(self, raw_name: str, tier: str | None = None) -> CanonicalEnvironment:
        """The canonical environment of `raw_name` (with the source's tier when it gives one)."""
        for canonical, pattern in self._aliases:
            if pattern.search(raw_name):
                return CanonicalEnvironment(canonical, self._tier_of_canonical(canonical), "alias")
        region = self._regions.search(raw_name) if self._regions else None
        if region:
            base = TIER_NAMES["production"]
            return CanonicalEnvironment(
                f"{base}-{region['region'].lower()}", "production", "region", stage=base
            )
        if tier is not None and tier in TIER_NAMES:
            return CanonicalEnvironment(TIER_NAMES[tier], tier, "tier")
        guessed = tier_of(raw_name)
        if guessed in TIER_NAMES:
            return CanonicalEnvironment(TIER_NAMES[guessed], guessed, "guess")
        return CanonicalEnvironment(raw_name.lower(), "other", "raw")

    @staticmethod
    def _tier_of_canonical(canonical: str) -> str:
        for tier, name in TIER_NAMES.items():
            if name == canonical:
                return tier
        return tier_of(canonical)
