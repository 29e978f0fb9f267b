"""Merged MRs not yet in production (DESIGN.md section 4, `lead_time.merged_not_in_production`) on
hand-built warehouses, SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from tests.analytics_world import World, at


@pytest.fixture
def world(engine: Engine) -> World:
    """a (first production deployment) <- b <- c <- d, one MR per commit after a; production
    runs a, then c (which carries b); d is merged and only reaches staging."""
    w = World(engine)
    w.line("a", "b", "c", "d")
    w.merge_request(1, ["a"], created=at(-2), merged=at(-1), merge_sha="a")  # before history
    w.merge_request(2, ["b"], created=at(0), merged=at(1.5), squash_sha="b")
    w.merge_request(3, ["c"], created=at(1), merged=at(2.5), merge_sha="c")
    w.merge_request(4, ["d"], created=at(2), merged=at(3.5), head="d")  # fast-forward
    w.deploy("a", at(1))
    w.deploy("c", at(10))
    w.deploy("d", at(5), "staging")
    w.derive()
    return w


def waiting(world: World, until_hours: float, **scope: object) -> dict[str, object]:
    lead = world.metrics(until=at(until_hours), **scope)["lead_time"]
    return lead["merged_not_in_production"]  # type: ignore[no-any-return]


def test_merged_but_not_deployed_are_counted_with_their_age(world: World) -> None:
    # before c reached production: b, c and d wait; a was merged before the first deployment
    assert waiting(world, 8) == {
        "count": 3,
        "median_age_hours": pytest.approx(8 - 2.5),
        "oldest_age_hours": pytest.approx(8 - 1.5),
    }
    # after: only d, which reached staging, not production
    assert waiting(world, 20) == {
        "count": 1,
        "median_age_hours": pytest.approx(20 - 3.5),
        "oldest_age_hours": pytest.approx(20 - 3.5),
    }


def test_merged_after_the_end_is_not_counted_and_none_is_no_figure(world: World) -> None:
    assert waiting(world, 1.2) == {"count": 0, "median_age_hours": None, "oldest_age_hours": None}
    # before the first production deployment finished, MR 1 was waiting too
    assert waiting(world, 0.5) == {
        "count": 1,
        "median_age_hours": pytest.approx(1.5),
        "oldest_age_hours": pytest.approx(1.5),
    }


def test_the_scopes_environment_decides_what_in_production_means(world: World) -> None:
    assert waiting(world, 20, environment="staging")["count"] == 0  # d ran in staging
    assert waiting(world, 20, services=("other",))["count"] == 0


def test_a_week_row_counts_what_waited_at_that_weeks_end(world: World) -> None:
    """Sliced by week (CLI `--by week`, the dashboard's weeks, the report's trend): each week's
    figure is the one of a scope ending with that week, not the merges made in it."""
    since, until = at(0), at(24 * 9)
    rows = world.metrics(since=since, until=until, by="week")["rows"]
    assert len(rows) == 2  # T0 is a Monday: the week of T0 and the next one
    for row, end in zip(rows, (at(24 * 7 - 9), until), strict=True):  # T0 is 09:00
        alone = world.metrics(since=since, until=end)["lead_time"]["merged_not_in_production"]
        assert row["lead_time"]["merged_not_in_production"] == alone
    assert [r["lead_time"]["merged_not_in_production"]["count"] for r in rows] == [1, 1]


@pytest.mark.parametrize("by", ["week", "month"])
def test_a_merge_or_a_release_at_a_slices_end_counts_as_in_a_scope_ending_there(
    engine: Engine, by: str
) -> None:
    """A slice's end is exclusive for the merge and inclusive for the release, as for a scope
    ending there: merged at the first week's end, an MR waits at no end (released with it);
    released at that end, it waited at it."""
    w = World(engine)
    w.line("a", "b", "c")
    end = at(24 * 7 - 9)  # the first week's end (T0 is Monday 09:00 UTC)
    w.merge_request(1, ["b"], created=at(0), merged=end, merge_sha="b")
    w.merge_request(2, ["c"], created=at(0), merged=at(5), merge_sha="c")
    w.deploy("a", at(1))
    w.deploy("c", end)  # carries b: both released at the first week's end
    w.derive()
    since, until = at(0), at(24 * 9)
    rows = w.metrics(since=since, until=until, by=by)["rows"]
    ends = [end, until] if by == "week" else [until]
    assert len(rows) == len(ends)
    for row, row_end in zip(rows, ends, strict=True):
        alone = w.metrics(since=since, until=row_end)["lead_time"]["merged_not_in_production"]
        assert row["lead_time"]["merged_not_in_production"] == alone
    counts = [r["lead_time"]["merged_not_in_production"]["count"] for r in rows]
    assert counts == ([1, 0] if by == "week" else [0])
