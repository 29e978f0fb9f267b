"""Git collector: a generated 100,000-commit repository synced in full into SQLite, then again after
100 more commits (incremental). Prints commits/s and peak memory; asserts only correctness.

The repository is written by `git fast-import` from a stream generated here (trunk-based history:
feature branches merged with merge commits, squash-like single commits, direct pushes, a few
long-lived branches and annotated and lightweight tags, several time-zone offsets).
Peak memory is `resource.getrusage(RUSAGE_SELF).ru_maxrss` of a fresh Python subprocess running the
sync (the git processes it starts are reported separately, as the largest child's maxrss).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench
COMMITS = 100_000
MORE = 100
FILES = 400
EPOCH = 1_600_000_000
ZONES = ("+0000", "+0100", "-0500", "+0530", "+0800", "-0700")
PEOPLE = [(f"Dev {i}", f"dev{i}@example.com") for i in range(40)]


def _content(path: str, version: int) -> bytes:
    lines = [f"{path} line {i}" for i in range(30)]
    for j in range(3):  # each version rewrites three lines: small, realistic diffs
        lines[(version * 7 + j) % 30] = f"{path} line {(version * 7 + j) % 30} v{version}"
    return ("\n".join(lines) + "\n").encode()


class HistoryWriter:
    """A fast-import stream of a trunk-based history: `commits` commits in total."""

    def __init__(self, seed: int = 1, start: int = EPOCH, first_mark: int = 1) -> None:
        self.rng = random.Random(seed)
        self.out: list[bytes] = []
        self.mark = first_mark
        self.time = start
        self.versions: dict[str, int] = {}
        self.count = 0

    def _next_mark(self) -> int:
        self.mark += 1
        return self.mark

    def commit(self, ref: str, parents: list[str], message: str, changes: int = 1) -> str:
        """Write one commit on `ref` (parents are marks or shas); returns its mark."""
        blobs = []
        for _ in range(changes):
            path = f"src/module{self.rng.randrange(FILES)}.py"
            version = self.versions[path] = self.versions.get(path, 0) + 1
            data = _content(path, version)
            blob = self._next_mark()
            self.out.append(b"blob\nmark :%d\ndata %d\n%b\n" % (blob, len(data), data))
            blobs.append((path, blob))
        mark = self._next_mark()
        self.time += self.rng.randrange(60, 900)
        name, email = self.rng.choice(PEOPLE)
        ident = f"{name} <{email}> {self.time} {self.rng.choice(ZONES)}".encode()
        body = message.encode()
        head = b"commit %b\nmark :%d\nauthor %b\ncommitter %b\ndata %d\n%b\n" % (
            ref.encode(),
            mark,
            ident,
            ident,
            len(body),
            body,
        )
        self.out.append(head)
        for i, parent in enumerate(parents):
            self.out.append(b"%b %b\n" % (b"from" if i == 0 else b"merge", parent.encode()))
        for path, blob in blobs:
            self.out.append(b"M 100644 :%d %b\n" % (blob, path.encode()))
        self.out.append(b"\n")
        self.count += 1
        return f":{mark}"

    def tag(self, name: str, target: str, annotated: bool) -> None:
        if not annotated:
            self.out.append(b"reset refs/tags/%b\nfrom %b\n\n" % (name.encode(), target.encode()))
            return
        body = f"release {name}".encode()
        ident = f"Release Bot <release@example.com> {self.time} +0000".encode()
        self.out.append(
            b"tag %b\nfrom %b\ntagger %b\ndata %d\n%b\n"
            % (name.encode(), target.encode(), ident, len(body), body)
        )

    def history(self, commits: int, main: str | None = None) -> str:
        """Trunk-based history on main until `commits` commits are written; returns main's tip."""
        rng = self.rng
        if main is None:
            main = self.commit("refs/heads/main", [], "Initial commit")
            self.commit("refs/heads/develop", [main], "Start develop")
        release = 0
        while self.count < commits:
            kind = rng.random()
            if kind < 0.15:  # direct push
                main = self.commit("refs/heads/main", [main], f"Direct fix {self.count}")
            elif kind < 0.3:  # squash-like: one commit carrying a whole change
                main = self.commit("refs/heads/main", [main], f"Feature {self.count} (#1)", 3)
            else:  # a feature branch, merged with a merge commit while main moved on
                slot = f"refs/heads/feature/f{rng.randrange(12)}"
                tip = main
                for i in range(rng.randint(1, 4)):
                    tip = self.commit(slot, [tip], f"Work {self.count} step {i}")
                if rng.random() < 0.3:
                    main = self.commit("refs/heads/main", [main], f"Other change {self.count}")
                main = self.commit("refs/heads/main", [main, tip], f"Merge branch {slot[11:]}")
            if self.count // 1000 > release:
                release = self.count // 1000
                self.tag(f"v1.{release}", main, annotated=release % 3 != 0)
        return main

    def stream(self) -> bytes:
        return b"".join(self.out)


def git(repo: Path, *args: str, stdin: bytes | None = None) -> str:
    result = subprocess.run(
        ["git", "--git-dir", str(repo), *args], input=stdin, capture_output=True, check=True
    )
    return result.stdout.decode()


def build_repository(path: Path, commits: int = COMMITS, seed: int = 1) -> Path:
    """A bare repository at `path` with about `commits` commits (fast-import); returns its path."""
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(path)], check=True)
    writer = HistoryWriter(seed)
    writer.history(commits)
    git(path, "fast-import", "--quiet", stdin=writer.stream())
    return path


def add_commits(path: Path, commits: int, seed: int = 2) -> None:
    """`commits` more commits on top of main (and its feature branches)."""
    tip = git(path, "rev-parse", "refs/heads/main").strip()
    start = int(git(path, "log", "-1", "--format=%ct", tip)) + 60
    writer = HistoryWriter(seed, start=start)
    writer.history(commits, main=tip)
    git(path, "fast-import", "--quiet", "--force", stdin=writer.stream())


SYNC_SCRIPT = """
import json, resource, sys, time
from cdmetrics.settings import GitSource, Settings
from collectors.git import GitCollector
from warehouse.engine import make_engine
from warehouse.migrate import upgrade

engine = make_engine(sys.argv[1])
upgrade(engine)
summary = GitCollector(GitSource(name="bench", path=sys.argv[2]), Settings(), engine).sync()
print(json.dumps({
    "summary": summary.as_json(),
    "self_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "git_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
}))
"""


def run_sync(database: Path, repo: Path) -> dict[str, object]:
    """One sync in a fresh Python process; its summary and peak memory."""
    out = subprocess.run(
        [sys.executable, "-c", SYNC_SCRIPT, f"sqlite:///{database}", str(repo)],
        capture_output=True,
        check=True,
        text=True,
    )
    return dict(json.loads(out.stdout.splitlines()[-1]))


def report(label: str, commits: int, result: dict[str, object]) -> None:
    summary = result["summary"]
    assert isinstance(summary, dict)
    seconds = summary["seconds"]
    print(
        f"\ngit {label}: {commits:,} commits in {seconds:.2f} s = {commits / seconds:,.0f} commits/s; "
        f"{summary['rows']:,} rows, {summary['requests']} git commands; "
        f"peak RSS python {int(str(result['self_kb'])) / 1024:.0f} MiB, "
        f"git {int(str(result['git_kb'])) / 1024:.0f} MiB"
    )


def test_git_sync_throughput(tmp_path: Path) -> None:
    repo = build_repository(tmp_path / "big.git")
    total = int(git(repo, "rev-list", "--all", "--count"))
    database = tmp_path / "warehouse.db"
    full = run_sync(database, repo)
    report("full sync", total, full)
    summary = full["summary"]
    assert isinstance(summary, dict)
    assert summary["ok"], summary["errors"]
    assert summary["streams"]["commits"]["rows"] >= total
    add_commits(repo, MORE)
    added = int(git(repo, "rev-list", "--all", "--count")) - total
    incremental = run_sync(database, repo)
    report("incremental sync", added, incremental)
    again = run_sync(database, repo)
    report("unchanged sync", 0 or 1, again)
    summary = again["summary"]
    assert isinstance(summary, dict)
    assert summary["rows"] == 0
