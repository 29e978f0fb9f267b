"""The policies by id (DESIGN.md section 5, docs/POLICIES.md), in the order a scan evaluates them:
each module holds one policy's id, default severity, typed parameters (`Params`, the model of its
`[policies.<id>]` table in config.settings, validated at start), its predicate and its scan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection

import analytics.policies.direct_push as direct_push
import analytics.policies.long_lived_branch as long_lived_branch
import analytics.policies.merge_without_approval as merge_without_approval
import analytics.policies.merge_without_green_pipeline as merge_without_green_pipeline
import analytics.policies.moved_tag as moved_tag
import analytics.policies.non_release_ref as non_release_ref
import analytics.policies.quality_gate_failed as quality_gate_failed
import analytics.policies.quality_gate_missing as quality_gate_missing
import analytics.policies.rebuilt_image as rebuilt_image
import analytics.policies.schema_skipped_env as schema_skipped_env
import analytics.policies.stale_branch as stale_branch
import analytics.policies.unpinned_image as unpinned_image
import analytics.policies.unrecorded_change as unrecorded_change
import analytics.policies.untested_image as untested_image
from analytics.policies.period import Scan
from analytics.policies.violation import Violation
from config.settings import PolicySettings

Check = Callable[[Connection, Scan], list[Violation]]


@dataclass(frozen=True)
class Policy:
    """A policy: its id, default severity, parameters' model and scan."""

    id: str
    severity: str
    params: type[PolicySettings]
    check: Check


POLICIES: dict[str, Policy] = {
    m.ID: Policy(m.ID, m.SEVERITY, m.Params, m.check)
    for m in (
        untested_image,
        rebuilt_image,
        unpinned_image,
        moved_tag,
        non_release_ref,
        quality_gate_failed,
        quality_gate_missing,
        schema_skipped_env,
        merge_without_green_pipeline,
        merge_without_approval,
        direct_push,
        long_lived_branch,
        stale_branch,
        unrecorded_change,
    )
}
