"""The Subversion collector against a real repository (sandbox/svn_repo.py: svnadmin, Debian's `svn`
client, svnserve on loopback with a password), into a real warehouse (SQLite and PostgreSQL),
compared with the repository's ground truth; and the pure parsers on real `svn` output."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

import collectors.svn as svn_module
from collectors.frame import SyncOptions
from collectors.git import GitCollector
from collectors.svn import SvnCollector
from collectors.svn_log import new_ranges, parse_log, parse_mergeinfo
from collectors.svn_normalize import History, locate
from collectors.sync import SourceSummary
from config.settings import ConfigError, GitSource, Settings, SvnSource, load_settings
from sandbox.svn_repo import PASSWORD, USER, SvnRepository, SvnTruth, start_repository
from warehouse.schema import Branch, Commit, CommitParent, RawPayload, Repo, Service, SyncState

FIXTURES = Path(__file__).parent / "fixtures" / "svn"
START = datetime(2026, 11, 2, 8, tzinfo=UTC)
pytestmark = pytest.mark.skipif(
    not all(shutil.which(c) for c in ("svn", "svnadmin", "svnserve")),
    reason="needs Debian's subversion (make install adds it)",
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SvnRepository]:
    """The sandbox repository, whole history, served by svnserve (built once for the module)."""
    repo = start_repository(tmp_path_factory.mktemp("svn"))
    yield repo
    repo.stop()


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SVN_USER", USER)
    monkeypatch.setenv("SVN_PASSWORD", PASSWORD)


def source(url: str, **extra: Any) -> SvnSource:
    return SvnSource(
        name="svn",
        url=url,
        username_env="SVN_USER",
        password_env="SVN_PASSWORD",
        service="payments",
        **extra,
    )


def sync(engine: Engine, src: SvnSource) -> tuple[SourceSummary, SvnCollector]:
    collector = SvnCollector(src, SyncOptions(Settings(), engine))
    return collector.sync(), collector


def warehouse_state(engine: Engine) -> dict[str, Any]:
    """What the warehouse holds of the repository, in the truth's shape."""
    with engine.connect() as conn:
        commits = {
            sha: {"line": line, "author": author, "date": date, "title": title}
            for sha, line, author, date, title in conn.execute(
                select(
                    Commit.sha,
                    Commit.svn_line,
                    Commit.author_name,
                    Commit.authored_at,
                    Commit.title,
                )
            )
        }
        parents = set(
            conn.execute(select(CommitParent.sha, CommitParent.parent_sha, CommitParent.position))
        )
        merges = {
            sha: sorted(p for s, p, pos in parents if s == sha and pos > 0)
            for sha in conn.execute(select(Commit.sha).where(Commit.is_merge)).scalars()
        }
        branches = dict(conn.execute(select(Branch.name, Branch.head_sha)).all())
        tags = {
            p["name"]: p["target"]
            for p in conn.execute(
                select(RawPayload.payload).where(RawPayload.stream == "tags")
            ).scalars()
        }
        default = conn.execute(select(Branch.name).where(Branch.is_default)).scalars().all()
    return {
        "commits": commits,
        "parents": parents,
        "merges": merges,
        "branches": branches,
        "tags": tags,
        "default": default,
    }


def assert_equals_truth(engine: Engine, truth: SvnTruth, whole: bool = True) -> None:
    found = warehouse_state(engine)
    assert found["commits"] == truth.commits
    assert found["parents"] == truth.parents
    assert found["merges"] == truth.merges
    if whole:
        assert found["branches"] == truth.branches
        assert found["tags"] == truth.tags
        assert found["default"] == ["trunk"]


def test_first_sync_equals_the_truth(engine: Engine, served: SvnRepository) -> None:
    summary, collector = sync(engine, source(served.url))
    assert summary.ok, summary.errors
    assert_equals_truth(engine, served.truth())
    # svn info, svn log, one svn propget (the merge r8; r11 changed a file's property only)
    assert [c[1] for c in collector.svn.commands] == ["info", "log", "propget"]
    assert summary.requests == 3
    with engine.connect() as conn:
        repo = conn.execute(select(Repo.id, Repo.default_branch)).one()
        assert repo.default_branch == "trunk"
        assert (
            conn.execute(select(Service.repo_id).where(Service.name == "payments")).scalar()
            == repo.id
        )
        kept = conn.execute(
            select(func.count()).select_from(RawPayload).where(RawPayload.stream == "revisions")
        ).scalar()
        assert kept == served.revisions  # each revision's XML is kept raw
        xml = conn.execute(
            select(RawPayload.payload).where(
                RawPayload.stream == "revisions", RawPayload.external_id == "8"
            )
        ).scalar_one()["xml"]
        assert ET.fromstring(xml).get("revision") == "8"


def test_a_sync_with_no_new_revision_runs_one_log_and_writes_nothing(
    engine: Engine, served: SvnRepository
) -> None:
    sync(engine, source(served.url))
    before = warehouse_state(engine)
    with engine.connect() as conn:
        first = conn.execute(select(SyncState.finished_at, SyncState.cursor)).one()
    assert json.loads(first.cursor)["history"]["events"] == []  # copies and merges replayed
    summary, collector = sync(engine, source(served.url))
    assert summary.ok, summary.errors
    assert [c[1] for c in collector.svn.commands] == ["log"]
    assert summary.requests == 1
    assert summary.rows == 0
    assert warehouse_state(engine) == before
    with engine.connect() as conn:  # only the partition's finish is recorded (its lease row)
        second = conn.execute(select(SyncState.finished_at, SyncState.cursor)).one()
    assert second.cursor == first.cursor and second.finished_at > first.finished_at


def test_an_incremental_sync_adds_the_new_revisions(engine: Engine, tmp_path: Path) -> None:
    repo = SvnRepository(tmp_path / "payments", START)
    repo.build(upto=7)
    try:
        sync(engine, source(repo.file_url))
        assert_equals_truth(engine, repo.truth(7), whole=False)
        repo.build()  # r8 (the merge) to r20
        summary, collector = sync(engine, source(repo.file_url))
        assert summary.ok, summary.errors
        assert [c[1] for c in collector.svn.commands] == ["log", "propget"]
        assert_equals_truth(engine, repo.truth())
    finally:
        repo.stop()


def test_an_interrupted_sync_resumes_without_gaps_or_duplicates(
    engine: Engine, served: SvnRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(svn_module, "CHECKPOINT", 3)
    apply = History.apply

    def fail_at_revision_8(self: History, payload: dict[str, Any], lookup: Any) -> Any:
        if payload["revision"] == "8":
            raise ConnectionResetError("svn: E210002: connection closed by the server")
        return apply(self, payload, lookup)

    monkeypatch.setattr(History, "apply", fail_at_revision_8)
    summary, _ = sync(engine, source(served.url))
    assert not summary.ok
    with engine.connect() as conn:
        state = conn.execute(select(SyncState.cursor, SyncState.status)).one()
        assert json.loads(state.cursor)["history"]["revision"] == 6  # two checkpoints of 3
        assert state.status == "failed"
        written = set(conn.execute(select(Commit.sha)).scalars())
    assert written == {f"r{n}" for n in range(1, 7)}

    monkeypatch.setattr(History, "apply", apply)
    summary, collector = sync(engine, source(served.url))
    assert summary.ok, summary.errors
    assert collector.svn.commands[0][-3:] == ["-r", "6:HEAD", served.url]
    assert_equals_truth(engine, served.truth())


def test_credentials_are_never_in_arguments_or_logs(
    engine: Engine, served: SvnRepository, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    summary, collector = sync(engine, source(served.url))
    assert summary.ok, summary.errors
    assert all(PASSWORD not in arg for command in collector.svn.commands for arg in command)
    assert all("--password-from-stdin" in command for command in collector.svn.commands)
    assert PASSWORD not in caplog.text


def test_a_wrong_password_fails_the_source_naming_no_secret(
    engine: Engine, served: SvnRepository, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    monkeypatch.setenv("SVN_PASSWORD", "wrong-and-secret")
    summary, _ = sync(engine, source(served.url))
    assert len(summary.errors) == 1
    assert "svn source svn" in summary.errors[0] and "credentials" in summary.errors[0]
    assert "wrong-and-secret" not in summary.errors[0] + caplog.text


# --- the pure parsers on real svn output -----------------------------------------------------


def _shuffled(text: str) -> str:
    """The same log with every element's attributes and every `<paths>` reversed (svn's order
    varies between runs)."""
    root = ET.fromstring(text)
    for element in root.iter():
        element.attrib = dict(reversed(list(element.attrib.items())))
        if element.tag == "paths":
            element[:] = list(reversed(list(element)))
    return ET.tostring(root, encoding="unicode")


def _content(payloads: list[dict[str, Any]]) -> set[Any]:
    return {
        (p["revision"], p["author"], p["date"], p["msg"],
         frozenset(tuple(sorted(path.items())) for path in p["paths"]))
        for p in payloads
    }  # fmt: skip


def _history(payloads: list[dict[str, Any]]) -> tuple[list[Any], dict[str, Any]]:
    history = History()
    rows = []
    for payload in sorted(payloads, key=lambda p: int(p["revision"])):
        for revision in history.apply(payload, lambda *_: None):
            rows.append((revision.commit["sha"], revision.commit["svn_line"], revision.parents))
    return rows, history.as_json()


def test_the_log_is_read_by_names_whatever_the_attribute_order() -> None:
    text = (FIXTURES / "svn-log-verbose.xml").read_text(encoding="utf-8")
    original = list(parse_log([text.encode()]))
    shuffled = list(parse_log([_shuffled(text).encode()]))
    assert len(original) == 14
    assert _content(original) == _content(shuffled)
    assert _history(original) == _history(shuffled)
    rows, state = _history(original)
    assert ("r6", "trunk", [3]) in rows and ("r8", "branches/hotfix-1.0.1", [7]) in rows
    assert ("r12", "trunk", [6]) in rows  # a rename on trunk; r11 (delete) was on the branch
    assert state["projects"][""]["tags"]["release-1.0.0"]["target"] == "r6"
    assert state["projects"][""]["tags"]["release-1.0.1"]["target"] == "r9"
    assert set(state["projects"][""]["lines"]) == {
        "trunk", "branches/hotfix-1.0.1", "tags/release-1.0.0", "tags/release-1.0.1",
    }  # fmt: skip
    chars = next(p for p in original if p["revision"] == "12")
    assert chars["author"] == "张伟"


def test_a_log_streamed_in_small_chunks_parses_the_same() -> None:
    data = (FIXTURES / "svn-log-verbose.xml").read_bytes()
    chunks = [data[i : i + 7] for i in range(0, len(data), 7)]
    assert _content(list(parse_log(chunks))) == _content(list(parse_log([data])))


def test_a_multi_project_changelog_places_each_path_in_its_project() -> None:
    """Jenkins' Subversion plugin changelog of a multi-project root (paths without `kind`,
    indented text)."""
    text = (FIXTURES / "changelog_unsorted.xml").read_text(encoding="utf-8")
    payloads = list(parse_log([text.encode()]))
    places = {locate(path["path"], "", "projects") for p in payloads for path in p["paths"]}
    assert {(pl.project, pl.line) for pl in places if pl} == {
        ("module-a", "trunk"), ("module-b", "trunk"), ("integration-tests", "trunk"),
    }  # fmt: skip
    assert all(not re.search(r"\s$", path["path"]) for p in payloads for path in p["paths"])


def test_mergeinfo_ranges() -> None:
    merged = parse_mergeinfo("/branches/a:4-5,7,9-12*\n/trunk:-3\n/branches/b:bad")
    assert merged == {"/branches/a": [(4, 5), (7, 7), (9, 12)]}
    assert new_ranges([(4, 12)], [(4, 5), (9, 10)]) == [(6, 8), (11, 12)]
    assert new_ranges([(4, 5)], [(1, 9)]) == []


# --- the git-svn route: a `git svn clone` mirror read by the git collector --------------------


@pytest.mark.skipif(
    subprocess.run(["git", "svn", "--version"], capture_output=True).returncode != 0,
    reason="needs Debian's git-svn (make install adds it)",
)
def test_a_git_svn_mirror_gives_revisions_branches_and_tags(
    engine: Engine, served: SvnRepository, tmp_path: Path
) -> None:
    mirror = tmp_path / "mirror"
    subprocess.run(
        ["git", "svn", "clone", "-q", "--stdlayout", served.file_url, str(mirror)],
        check=True, capture_output=True,
    )  # fmt: skip
    source = GitSource(name="mirror", path=str(mirror))
    summary = GitCollector(source, SyncOptions(Settings(), engine)).sync()
    assert summary.ok, summary.errors
    truth = served.truth()
    with engine.connect() as conn:
        commits = {
            sha: (revision, line, merge)
            for sha, revision, line, merge in conn.execute(
                select(Commit.sha, Commit.svn_revision, Commit.svn_line, Commit.is_merge)
            )
        }
        revision_of = {sha: found[0] for sha, found in commits.items()}
        parents = {
            (revision_of[sha], revision_of[parent], position)
            for sha, parent, position in conn.execute(
                select(CommitParent.sha, CommitParent.parent_sha, CommitParent.position)
            )
        }
        branches = {
            name: (revision_of[head], default)
            for name, head, default in conn.execute(
                select(Branch.name, Branch.head_sha, Branch.is_default)
            )
        }
        tags = {
            p["name"]: revision_of[p["target"]]
            for p in conn.execute(
                select(RawPayload.payload).where(RawPayload.stream == "tags")
            ).scalars()
        }
    # every revision but r15 (a branch deletion: git-svn makes no commit of it)
    by_revision = {revision: (line, merge) for revision, line, merge in commits.values()}
    assert set(by_revision) == set(range(1, 21)) - {15}
    assert all(by_revision[r][0] == truth.commits[f"r{r}"]["line"] for r in by_revision)
    assert parents == {(int(s[1:]), int(p[1:]), i) for s, p, i in truth.parents if s != "r15"}
    assert [r for r, (_, merge) in by_revision.items() if merge] == [8]
    # branches from refs/remotes/origin/*: trunk the default; feature-login's ref outlives it
    assert branches == {
        "trunk": (19, True), "hotfix-1.0.1": (13, False), "experiment": (17, False),
        "feature-login": (6, False),
    }  # fmt: skip
    # tags from refs/remotes/origin/tags/*: git-svn's commit of each tag's copy
    assert tags == {"release-1.0": 9, "release-1.0.1": 14, "release-1.1": 20}


# --- layouts: a multi-project root, and a standard layout below the repository root ----------


def _svn(*args: str) -> None:
    subprocess.run(["svn", *args, "-q", "--non-interactive"], check=True, capture_output=True)


@pytest.fixture
def projects_root(tmp_path: Path) -> str:
    """A repository with two projects, `/billing/...` and `/ledger/...`: r1 their layouts, r2 a
    billing commit, r3 a ledger branch, r4 a commit touching both trunks."""
    subprocess.run(["svnadmin", "create", str(tmp_path / "multi")], check=True)
    url = (tmp_path / "multi").as_uri()
    folders = [
        f"{url}/{p}/{f}" for p in ("billing", "ledger") for f in ("trunk", "branches", "tags")
    ]
    _svn("mkdir", "--parents", "-m", "layouts", *folders)
    wc = tmp_path / "wc"
    _svn("checkout", url, str(wc))
    (wc / "billing" / "trunk" / "a.txt").write_text("a\n")
    _svn("add", str(wc / "billing" / "trunk" / "a.txt"))
    _svn("commit", "-m", "billing work", str(wc))
    _svn("copy", "-m", "ledger branch", f"{url}/ledger/trunk", f"{url}/ledger/branches/x")
    _svn("update", str(wc))
    for project in ("billing", "ledger"):
        (wc / project / "trunk" / "b.txt").write_text("b\n")
        _svn("add", str(wc / project / "trunk" / "b.txt"))
    _svn("commit", "-m", "both", str(wc))
    return url


def test_a_multi_project_root_is_one_repository_per_project(
    engine: Engine, projects_root: str
) -> None:
    src = SvnSource(
        name="multi", url=projects_root, layout="projects",
        projects={"billing": "billing-api", "ledger": "ledger"},
    )  # fmt: skip
    summary, _ = sync(engine, src)
    assert summary.ok, summary.errors
    with engine.connect() as conn:
        repos = dict(conn.execute(select(Repo.path, Repo.id)).all())
        commits = set(conn.execute(select(Repo.path, Commit.sha, Commit.svn_line).join(Repo)))
        parents = set(
            conn.execute(
                select(Repo.path, CommitParent.sha, CommitParent.parent_sha).join(
                    Repo, Repo.id == CommitParent.repo_id
                )
            )
        )
        services = dict(conn.execute(select(Service.name, Service.repo_id)).all())
        branches = set(conn.execute(select(Repo.path, Branch.name, Branch.head_sha).join(Repo)))
    assert set(repos) == {"billing", "ledger"}
    assert services == {"billing-api": repos["billing"], "ledger": repos["ledger"]}
    assert commits == {
        ("billing", "r1", "trunk"), ("billing", "r2", "trunk"), ("billing", "r4", "trunk"),
        ("ledger", "r1", "trunk"), ("ledger", "r3", "branches/x"), ("ledger", "r4", "trunk"),
    }  # fmt: skip
    assert parents == {
        ("billing", "r2", "r1"), ("billing", "r4", "r2"), ("ledger", "r3", "r1"),
        ("ledger", "r4", "r1"),
    }  # fmt: skip
    assert branches == {
        ("billing", "trunk", "r4"), ("ledger", "trunk", "r4"), ("ledger", "x", "r3"),
    }  # fmt: skip


def test_a_standard_layout_below_the_root(engine: Engine, projects_root: str) -> None:
    summary, collector = sync(engine, SvnSource(name="ledger", url=f"{projects_root}/ledger"))
    assert summary.ok, summary.errors
    with engine.connect() as conn:
        commits = set(conn.execute(select(Commit.sha, Commit.svn_line)))
        branches = set(conn.execute(select(Branch.name, Branch.head_sha)))
    assert commits == {("r1", "trunk"), ("r3", "branches/x"), ("r4", "trunk")}
    assert branches == {("trunk", "r4"), ("x", "r3")}
    # a second sync reads from the last revision of this folder's history
    summary, collector = sync(engine, SvnSource(name="ledger", url=f"{projects_root}/ledger"))
    assert [c[1] for c in collector.svn.commands] == ["log"] and summary.rows == 0


def test_a_revision_that_cannot_be_read_is_kept_and_counted(engine: Engine, tmp_path: Path) -> None:
    """A repository loaded with `--bypass-prop-validation` (a migrated legacy one) may hold a
    date that is not a date: that revision is kept raw with the reason and counted as rejected;
    the sync goes on (the revision after it is on its line, from the one before)."""
    subprocess.run(["svnadmin", "create", str(tmp_path / "made")], check=True)
    url = (tmp_path / "made").as_uri()
    _svn("mkdir", "-m", "layout", f"{url}/trunk")
    _svn("mkdir", "-m", "two", f"{url}/trunk/a")
    _svn("mkdir", "-m", "three", f"{url}/trunk/b")
    dump = subprocess.run(
        ["svnadmin", "dump", "-q", str(tmp_path / "made")], check=True, capture_output=True
    ).stdout
    key = b"svn:date\nV 27\n"
    at = dump.index(key)
    for _ in range(2):  # r0, r1: the third date is r2's
        at = dump.index(key, at + 1)
    at += len(key)
    dump = dump[:at] + b"yesterday at noon, roughly." + dump[at + 27 :]
    subprocess.run(["svnadmin", "create", str(tmp_path / "bad")], check=True)
    subprocess.run(
        ["svnadmin", "load", "-q", "--bypass-prop-validation", str(tmp_path / "bad")],
        input=dump, check=True, capture_output=True,
    )  # fmt: skip
    summary, _ = sync(engine, SvnSource(name="bad", url=(tmp_path / "bad").as_uri()))
    assert summary.ok, summary.errors
    assert summary.rejected == 1
    with engine.connect() as conn:
        commits = set(conn.execute(select(Commit.sha)).scalars())
        parents = set(conn.execute(select(CommitParent.sha, CommitParent.parent_sha)))
        kept = conn.execute(
            select(RawPayload.external_id, RawPayload.error).where(RawPayload.error.is_not(None))
        ).all()
    assert commits == {"r1", "r3"} and parents == {("r3", "r1")}
    assert [k for k, _ in kept] == ["2"] and "bad timestamp in date" in kept[0][1]


def test_a_command_running_too_long_fails_the_source(engine: Engine, served: SvnRepository) -> None:
    summary, _ = sync(engine, source(served.url, timeout_s=0.001))
    assert len(summary.errors) == 1 and "ran longer than" in summary.errors[0]


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ('url = "ftp://svn.example.com/repo"', "sources.svn[0].url"),
        ('url = "svn://h/r"\nlayout = "flat"', "sources.svn[0].layout"),
        ('url = "svn://h/r"\npassword_env = "not a name"', "sources.svn[0].password_env"),
    ],
)
def test_a_bad_svn_source_fails_naming_the_key(tmp_path: Path, line: str, named: str) -> None:
    config = tmp_path / "cdmetrics.toml"
    config.write_text(f'[[sources.svn]]\nname = "svn"\n{line}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_settings(config)


def test_an_empty_repository_syncs_and_syncs_again(engine: Engine, tmp_path: Path) -> None:
    subprocess.run(["svnadmin", "create", str(tmp_path / "empty")], check=True)
    src = SvnSource(name="empty", url=(tmp_path / "empty").as_uri())
    for _ in range(2):  # no revision: `svn info` says HEAD is 0, and no `svn log` runs
        summary, collector = sync(engine, src)
        assert summary.ok, summary.errors
        assert [c[1] for c in collector.svn.commands] == ["info"] and summary.rows == 0
    _svn("mkdir", "-m", "layout", f"{src.url}/trunk")
    summary, collector = sync(engine, src)
    assert summary.ok and [c[1] for c in collector.svn.commands] == ["info", "log"]
    with engine.connect() as conn:
        assert conn.execute(select(Branch.name, Branch.head_sha)).all() == [("trunk", "r1")]
