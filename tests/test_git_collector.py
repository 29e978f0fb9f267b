"""The git collector against real repositories built here with the git CLI, into a real warehouse
(SQLite, and PostgreSQL where the `engine` fixture runs), and against this project's own history."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from rich.progress import Progress
from sqlalchemy import Engine, select

from collectors.frame import SyncOptions
from collectors.git import (
    Git,
    GitCollector,
    Ref,
    default_branch,
    parse_log,
    repository_name,
    sync_git,
)
from collectors.sync import SourceSummary
from config.settings import GitSource, Settings
from warehouse.engine import make_engine
from warehouse.migrate import upgrade
from warehouse.schema import (
    Branch,
    Commit,
    CommitParent,
    RawPayload,
    Repo,
    Service,
    Source,
    SyncState,
)

ROOT = Path(__file__).resolve().parents[1]
IDENTITY = ("-c", "user.name=Test Dev", "-c", "user.email=dev@example.com")


@pytest.fixture(autouse=True)
def git_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No global or system git configuration; a fixed identity; the mirror cache under tmp_path."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Test Dev")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "dev@example.com")
    monkeypatch.setenv("CDMETRICS_CACHE_DIR", str(tmp_path / "cache"))


def git(repo: Path, *args: str, date: str | None = None, stdin: str | None = None) -> str:
    """stdout of a git command in `repo` (dates as `2024-01-01T10:00:00+02:00`)."""
    env = dict(os.environ, GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date) if date else None
    result = subprocess.run(
        ["git", "-C", str(repo), *IDENTITY, *args],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        input=stdin,
    )
    return result.stdout.strip()


def commit(repo: Path, path: str, lines: int, message: str, date: str) -> str:
    """Write `lines` lines to `path`, commit; returns the sha."""
    title = message.splitlines()[0]
    (repo / path).write_text("".join(f"{path} line {i} {title}\n" for i in range(lines)))
    git(repo, "add", path)
    git(repo, "commit", "-q", "-m", message, date=date)
    return git(repo, "rev-parse", "HEAD")


def build_repo(repo: Path) -> dict[str, str]:
    """A working copy: main with a direct push, a merged feature branch (merge commit), a
    squash-merged one, tags (annotated and lightweight), a stale branch, several UTC offsets."""
    git(repo.parent, "init", "-q", "-b", "main", str(repo))
    shas = {
        "c1": commit(repo, "a.txt", 3, "First commit\n\nwith a body", "2024-01-01T10:00:00+02:00")
    }
    shas["c2"] = commit(repo, "a.txt", 4, "Second", "2024-01-02T10:00:00-05:00")
    git(repo, "branch", "stale", shas["c1"])
    git(repo, "checkout", "-q", "-b", "feature/x")
    shas["fx1"] = commit(repo, "x.txt", 2, "Feature x one", "2024-01-03T09:00:00+00:00")
    shas["fx2"] = commit(repo, "x.txt", 5, "Feature x two", "2024-01-03T10:00:00+00:00")
    git(repo, "checkout", "-q", "main")
    wrapped = "Direct push\nwrapped onto a second line\n\n3\t4\tlooks like numstat"
    shas["c3"] = commit(repo, "b.txt", 1, wrapped, "2024-01-03T11:00:00+05:30")
    git(
        repo,
        "merge",
        "-q",
        "--no-ff",
        "-m",
        "Merge feature/x",
        "feature/x",
        date="2024-01-04T10:00:00+01:00",
    )
    shas["merge"] = git(repo, "rev-parse", "HEAD")
    git(repo, "tag", "-a", "v1.0", "-m", "Release 1.0", date="2024-01-04T12:00:00+00:00")
    git(repo, "checkout", "-q", "-b", "feature/y")
    commit(repo, "y.txt", 2, "Feature y one", "2024-01-05T09:00:00+00:00")
    commit(repo, "y.txt", 3, "Feature y two", "2024-01-05T10:00:00+00:00")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--squash", "feature/y")
    git(repo, "commit", "-q", "-m", "Feature y (#2)", date="2024-01-06T10:00:00+00:00")
    shas["squash"] = git(repo, "rev-parse", "HEAD")
    git(repo, "tag", "v1.1")
    return shas


def source(path: Path | str, name: str = "legacy", **extra: Any) -> GitSource:
    return GitSource(name=name, path=str(path), **extra)


def sync(engine: Engine, src: GitSource, numstat: bool = True, **options: Any) -> SourceSummary:
    return GitCollector(src, SyncOptions(Settings(), engine, **options), numstat=numstat).sync()


def sqlite(tmp_path: Path, name: str) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / name}")
    upgrade(engine)
    return engine


def expected_graph(repo: Path) -> set[tuple[str, str, int]]:
    """(sha, parent, position) for every commit git reaches from the refs the collector reads."""
    listing = git(
        repo, "rev-list", "--exclude=refs/notes/*", "--exclude=refs/stash", "--all", "--parents"
    )
    return {
        (sha, parent, i)
        for line in listing.splitlines()
        for sha, *parents in [line.split()]
        for i, parent in enumerate(parents)
    }


def stored_graph(engine: Engine) -> set[tuple[str, str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(CommitParent.sha, CommitParent.parent_sha, CommitParent.position)
        )
        return {(r.sha, r.parent_sha, r.position) for r in rows}


def commits(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {r.sha: r for r in conn.execute(select(Commit))}


def snapshot(engine: Engine) -> dict[str, Any]:
    """Everything the collector writes, without surrogate ids and fetch times."""
    with engine.connect() as conn:
        return {
            "commits": {
                tuple(v for k, v in r._mapping.items() if k not in ("id", "repo_id", "changed_at"))
                for r in conn.execute(select(Commit))
            },
            "parents": stored_graph(engine),
            "branches": {
                (r.name, r.head_sha, r.is_default, r.last_commit_at)
                for r in conn.execute(select(Branch))
            },
            "raw": {
                (r.stream, r.external_id, r.hash, r.rejected)
                for r in conn.execute(select(RawPayload))
            },
        }


def raw(engine: Engine, stream: str) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(select(RawPayload).where(RawPayload.stream == stream))
        return {r.external_id: r for r in rows}


# --- a repository built here --------------------------------------------------------------


def test_full_sync_of_a_built_repository(engine: Engine, tmp_path: Path) -> None:
    repo = tmp_path / "legacy"
    shas = build_repo(repo)
    summary = sync(engine, source(repo, service="legacy-app"))
    assert summary.ok, summary.errors
    assert summary.rejected == 0
    assert stored_graph(engine) == expected_graph(repo)
    found = commits(engine)
    assert len(found) == int(git(repo, "rev-list", "--all", "--count")) == 9
    first = found[shas["c1"]]
    assert first.authored_at == datetime(2024, 1, 1, 8, 0, tzinfo=UTC)  # +02:00 read as UTC
    assert first.committed_at.tzinfo is not None
    assert (first.title, first.additions, first.deletions) == ("First commit", 3, 0)
    assert (found[shas["c2"]].additions, found[shas["c2"]].deletions) == (4, 3)
    assert found[shas["c3"]].authored_at == datetime(2024, 1, 3, 5, 30, tzinfo=UTC)
    assert (found[shas["c3"]].title, found[shas["c3"]].additions) == ("Direct push", 1)
    assert [sha for sha, row in found.items() if row.is_merge] == [shas["merge"]]
    assert found[shas["merge"]].additions == 5  # against the first parent, as GitLab counts
    assert found[shas["squash"]].title == "Feature y (#2)"
    assert (found[shas["squash"]].additions, found[shas["squash"]].author_email) == (
        3,
        "dev@example.com",
    )


def test_repo_branches_tags_first_parent_and_service(engine: Engine, tmp_path: Path) -> None:
    repo = tmp_path / "legacy"
    shas = build_repo(repo)
    summary = sync(engine, source(repo, service="legacy-app"))
    assert summary.ok, summary.errors
    with engine.connect() as conn:
        (stored,) = conn.execute(select(Repo)).all()
        branches = {b.name: b for b in conn.execute(select(Branch))}
        service = conn.execute(select(Service)).one()
    assert (stored.external_id, stored.path, stored.default_branch) == (str(repo), "legacy", "main")
    assert (service.name, service.repo_id, service.origin) == ("legacy-app", stored.id, "config")
    assert set(branches) == {"main", "stale", "feature/x", "feature/y"}
    assert [n for n, b in branches.items() if b.is_default] == ["main"]
    assert branches["main"].head_sha == shas["squash"]
    assert branches["stale"].last_commit_at == datetime(2024, 1, 1, 8, 0, tzinfo=UTC)
    assert not any(b.protected for b in branches.values())
    tags = raw(engine, "tags")
    assert tags["v1.0"].payload["target"] == shas["merge"]
    assert tags["v1.0"].payload["tag_object"] == git(repo, "rev-parse", "v1.0")
    assert tags["v1.0"].payload["tagger_date"] == "2024-01-04T12:00:00+00:00"
    assert tags["v1.1"].payload == {
        "name": "v1.1",
        "target": shas["squash"],
        "target_type": "commit",
        "tag_object": None,
        "tagger_date": None,
    }
    line = raw(engine, "first_parent")["main"].payload
    assert line["shas"] == git(repo, "rev-list", "--first-parent", "main").split()
    assert shas["fx1"] not in line["shas"] and shas["merge"] in line["shas"]


def test_a_message_in_another_encoding_is_read_as_utf8(tmp_path: Path) -> None:
    repo = tmp_path / "legacy"
    build_repo(repo)
    (tmp_path / "message").write_bytes("Café crème\n".encode("latin-1"))
    git(repo, "-c", "i18n.commitEncoding=ISO-8859-1", "commit", "-q", "--allow-empty", "-F",
        str(tmp_path / "message"))  # fmt: skip
    engine = sqlite(tmp_path, "w.db")
    assert sync(engine, source(repo)).ok
    assert commits(engine)[git(repo, "rev-parse", "HEAD")].title == "Café crème"


def test_numstat_off_leaves_line_counts_out(tmp_path: Path) -> None:
    repo = tmp_path / "legacy"
    build_repo(repo)
    engine = sqlite(tmp_path, "w.db")
    with Progress(disable=True) as progress:
        assert sync(engine, source(repo), numstat=False, progress=progress).ok
        assert progress.tasks[0].completed == 9
    assert {(c.additions, c.deletions) for c in commits(engine).values()} == {(None, None)}


def test_this_projects_own_history(tmp_path: Path) -> None:
    own = tmp_path / "cdmetrics.git"  # a mirror: commits made meanwhile cannot race the comparison
    git(tmp_path, "clone", "-q", "--mirror", str(ROOT), str(own))
    engine = sqlite(tmp_path, "w.db")
    summary = sync_git(Settings(), engine, source(own, name="cdmetrics"))
    assert summary.ok, summary.errors
    count = git(
        own, "rev-list", "--exclude=refs/notes/*", "--exclude=refs/stash", "--all", "--count"
    )
    assert len(commits(engine)) == int(
        count
    )  # `--all` but notes and stashes, which are not history
    assert stored_graph(engine) == expected_graph(own)


# --- incremental ------------------------------------------------------------------------------


def test_second_sync_reads_only_new_commits_and_equals_a_full_sync(
    engine: Engine, tmp_path: Path
) -> None:
    repo = tmp_path / "legacy"
    build_repo(repo)
    first = sync(engine, source(repo))
    assert first.ok, first.errors
    unchanged = sync(engine, source(repo))
    assert (unchanged.rows, unchanged.requests) == (0, 2)  # symbolic-ref, for-each-ref
    commit(repo, "c.txt", 2, "After one", "2024-02-01T10:00:00+00:00")
    commit(repo, "c.txt", 3, "After two", "2024-02-02T10:00:00+00:00")
    git(repo, "checkout", "-q", "-b", "feature/z")
    commit(repo, "z.txt", 1, "Feature z", "2024-02-03T10:00:00+00:00")
    git(repo, "checkout", "-q", "main")
    second = sync(engine, source(repo))
    assert second.ok, second.errors
    assert second.streams["commits"].rows == 3 + 3  # three commits, one parent each
    assert second.streams["refs"].rows == 2  # branches: main moved, feature/z is new
    fresh = sqlite(tmp_path, "fresh.db")
    assert sync(fresh, source(repo)).ok
    assert snapshot(engine) == snapshot(fresh)
    again = sync(engine, source(repo))
    assert (again.rows, again.requests) == (0, 2)


def test_force_push_and_deleted_branch(engine: Engine, tmp_path: Path) -> None:
    repo = tmp_path / "legacy"
    shas = build_repo(repo)
    assert sync(engine, source(repo)).ok
    git(repo, "branch", "-D", "feature/y")
    git(repo, "reset", "-q", "--hard", shas["merge"])  # main rewritten: the squash commit is gone
    rewritten = commit(repo, "r.txt", 2, "Rewritten", "2024-03-01T10:00:00+00:00")
    git(repo, "tag", "-d", "v1.1")
    git(repo, "reflog", "expire", "--expire=now", "--all")
    git(repo, "gc", "-q", "--prune=now")
    assert git(repo, "cat-file", "-t", rewritten) == "commit"
    summary = sync(engine, source(repo))
    assert summary.ok, summary.errors
    assert summary.streams["commits"].rows == 2  # only the new commit and its parent link
    with engine.connect() as conn:
        branches = {b.name: b.head_sha for b in conn.execute(select(Branch))}
    assert "feature/y" not in branches and branches["main"] == rewritten
    line = raw(engine, "first_parent")["main"].payload["shas"]
    assert line[:2] == [rewritten, shas["merge"]]
    assert stored_graph(engine) >= expected_graph(repo)  # history that vanished is kept
    assert sync(engine, source(repo), full=True).rows == 0


# --- bad input ----------------------------------------------------------------------------


def test_a_commit_with_a_malformed_date_is_rejected_and_kept(tmp_path: Path) -> None:
    repo = tmp_path / "legacy"
    shas = build_repo(repo)
    tree = git(repo, "rev-parse", "HEAD^{tree}")
    body = (
        f"tree {tree}\nparent {shas['squash']}\nauthor Bad <bad@example.com> notadate +0000\n"
        "committer Bad <bad@example.com> 1700000000 +0100\n\nBad date\n"
    )
    bad = git(repo, "hash-object", "-t", "commit", "-w", "--literally", "--stdin", stdin=body)
    git(repo, "update-ref", "refs/heads/broken", bad)
    engine = sqlite(tmp_path, "w.db")
    summary = sync(engine, source(repo))
    assert summary.ok, summary.errors
    assert summary.rejected == 1
    assert bad not in commits(engine) and shas["squash"] in commits(engine)
    rejected = raw(engine, "commits")[bad]
    assert rejected.rejected and "authored_at" in rejected.error
    assert rejected.payload["title"] == "Bad date"


def test_a_path_that_is_not_a_repository_is_a_clear_error(tmp_path: Path) -> None:
    engine = sqlite(tmp_path, "w.db")
    plain = tmp_path / "plain"
    plain.mkdir()
    for path in (plain, tmp_path / "missing"):
        summary = sync(engine, source(path))
        assert not summary.ok
        (error,) = summary.errors
        assert error.startswith("git source legacy: cannot read") and str(path) in error
        assert "set `path` to a git repository" in error
    with engine.connect() as conn:
        assert conn.execute(select(SyncState.status)).scalar() == "failed"


# --- URL sources ------------------------------------------------------------------------------


def test_url_source_is_mirrored_then_fetched(tmp_path: Path) -> None:
    work = tmp_path / "work"
    build_repo(work)
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(origin))
    engine = sqlite(tmp_path, "w.db")
    src = GitSource(name="legacy", url=origin.as_uri())
    first = sync(engine, src)
    assert first.ok, first.errors
    mirror = tmp_path / "cache" / "git" / "legacy"
    assert git(mirror, "rev-parse", "--is-bare-repository") == "true"
    git(work, "push", "-q", str(origin), "main:refs/heads/hotfix/1")
    git(work, "checkout", "-q", "-b", "more")
    new = commit(work, "n.txt", 1, "New on origin", "2024-04-01T10:00:00+00:00")
    git(work, "push", "-q", str(origin), "more")
    second = sync(engine, src)
    assert second.ok, second.errors
    assert second.requests == 4  # fetch, symbolic-ref, for-each-ref, log
    assert new in commits(engine)
    with engine.connect() as conn:
        assert conn.execute(select(Repo.external_id)).scalar() == origin.as_uri()
        assert {"hotfix/1", "more"} <= set(conn.execute(select(Branch.name)).scalars())


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A static HTTP server (git's "dumb" protocol) on (directory, port); it ignores credentials."""
    root = tmp_path / "srv"
    root.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


def test_credentials_in_a_url_stay_off_disk_and_out_of_the_warehouse(
    tmp_path: Path, http_root: tuple[Path, int]
) -> None:
    root, port = http_root
    work = tmp_path / "work"
    build_repo(work)
    origin = root / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(origin))
    git(origin, "update-server-info")
    engine = sqlite(tmp_path, "w.db")
    src = GitSource(name="legacy", url=f"http://deploy:s3cret@127.0.0.1:{port}/origin.git")
    assert sync(engine, src).ok
    second = sync(engine, src)  # a fetch, with the URL as configured
    assert second.ok, second.errors
    mirror = tmp_path / "cache" / "git" / "legacy"
    assert git(mirror, "config", "remote.origin.url") == f"http://127.0.0.1:{port}/origin.git"
    assert "s3cret" not in (mirror / "config").read_text()
    with engine.connect() as conn:
        stored = [conn.execute(select(t)).all() for t in (Source, Repo, SyncState, RawPayload)]
    assert "s3cret" not in repr(stored) and "***@127.0.0.1" in repr(stored)


def test_a_failing_clone_names_the_source_and_hides_credentials(tmp_path: Path) -> None:
    engine = sqlite(tmp_path, "w.db")
    src = GitSource(name="legacy", url="http://deploy:s3cret@127.0.0.1:9/legacy.git")
    summary = sync(engine, src)
    assert not summary.ok
    (error,) = summary.errors
    assert error.startswith("git source legacy: cannot clone or fetch http://***@127.0.0.1:9/")
    assert "s3cret" not in json.dumps(summary.as_json())
    with engine.connect() as conn:
        stored = conn.execute(select(SyncState.error)).scalar() or ""
    assert "s3cret" not in stored
    assert not any((tmp_path / "cache" / "git").iterdir())  # no half-made mirror left


# --- pure functions -------------------------------------------------------------------------


def ref(name: str, symref: str = "") -> Ref:
    return Ref(name, "a" * 40, "commit", "", "", "", "", symref)


@pytest.mark.parametrize(
    ("refs", "head", "expected"),
    [
        ([ref("refs/heads/main"), ref("refs/heads/trunk")], "refs/heads/trunk", "trunk"),
        (
            [ref("refs/heads/dev"), ref("refs/remotes/origin/HEAD", "refs/remotes/origin/dev")],
            "refs/heads/feature",
            "dev",
        ),
        ([ref("refs/heads/master")], "refs/heads/gone", "master"),
        ([ref("refs/heads/main"), ref("refs/heads/master")], None, "main"),
        ([], "refs/heads/main", "main"),  # an empty repository
    ],
    ids=["symbolic HEAD", "remote HEAD first", "fallback master", "fallback main", "empty"],
)
def test_default_branch(refs: list[Ref], head: str | None, expected: str) -> None:
    assert default_branch(refs, head) == expected


def test_parse_log_reads_the_first_line_and_counts_binary_and_renamed_files() -> None:
    date = b"2024-01-01T00:00:00+00:00"
    header = b"\0".join([b"", b"a" * 40, b"b" * 40, b"N", b"n@x", date, date, b"Wrapped title"])
    message = [b"continued", b"", b"9\t9\tnot a numstat line", b"\0", b""]
    numstat = [b"3\t1\tsrc/a.py", b"-\t-\tlogo.png", b"2\t2\told.py => new.py"]
    empty = b"\0".join([b"", b"c" * 40, b"", b"N", b"n@x", date, date, b"\0"])
    first, second = parse_log(iter([header, *message, *numstat, empty]))
    assert (first["title"], first["parents"]) == ("Wrapped title", ["b" * 40])
    assert (first["additions"], first["deletions"]) == (5, 3)
    assert (second["title"], second["parents"], second["additions"]) == ("", [], None)


@pytest.mark.parametrize(
    ("location", "name"),
    [
        ("/srv/git/legacy.git", "legacy"),
        ("/home/dev/legacy/.git", "legacy"),
        ("/home/dev/legacy/", "legacy"),
        ("ssh://git@gitolite.example/group/legacy.git", "legacy"),
        ("git@host:legacy.git", "legacy"),
    ],
)
def test_repository_name(location: str, name: str) -> None:
    assert repository_name(location) == name


def test_a_reader_that_stops_early_ends_git(tmp_path: Path) -> None:
    repo = tmp_path / "legacy"
    build_repo(repo)
    reader = Git(repo / ".git").lines("log", "--stdin", "--format=%H", stdin="HEAD\n")
    assert len(next(reader).strip()) == 40
    reader.close()  # kills and reaps git: no ResourceWarning (warnings are errors here)
