"""Git collector benchmarks on a generated 100,000-commit repository: the CLI reader against
GitPython and pydriller (the same fields, no warehouse writes; those two run only where installed,
`pip install gitpython pydriller`), then a full sync into SQLite, an incremental sync after about
100 more commits, and a sync without changes. Prints figures; asserts only correctness.

The repository is written by `git fast-import` from a stream generated here (trunk-based history:
feature branches merged with merge commits, squash-like single commits, direct pushes, a few
long-lived branches, annotated and lightweight tags, several time-zone offsets).
Peak memory: each run is a fresh Python subprocess reporting its own peak RSS (`VmHWM` of
/proc/self/status; ru_maxrss would count the pytest process it was forked from); a sync also reports
its git processes' `getrusage(RUSAGE_CHILDREN).ru_maxrss` (the largest one's; an upper bound, since
Linux counts a child from the size of the process that spawned it), and CPU time likewise.

Measured on 2 shared cores (best of 3; GitPython and pydriller line counts on a 5,000-commit sample,
as they run one `git diff` per commit), commits/s without / with line counts, and the peak RSS of
the whole process tree (sampled) with line counts:
  CLI        171,000 / 23,000    258 MiB (git 192, Python 66 of which imports are nearly all)
  GitPython   28,000 /    480     87 MiB (182 MiB without line counts: `git cat-file --batch`)
  pydriller   15,000 /    410    573 MiB (it holds the whole commit list)
Full sync into SQLite: 22,000 commits/s with line counts, 26,000 without (the upserts dominate).
"""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

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
    """Writes a fast-import stream of a trunk-based history to `out` (git fast-import's stdin)."""

    def __init__(self, out: IO[bytes], seed: int = 1, start: int = EPOCH) -> None:
        self.rng = random.Random(seed)
        self.out = out
        self.mark = 0
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
            self.out.write(b"blob\nmark :%d\ndata %d\n%b\n" % (blob, len(data), data))
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
        self.out.write(head)
        for i, parent in enumerate(parents):
            self.out.write(b"%b %b\n" % (b"from" if i == 0 else b"merge", parent.encode()))
        for path, blob in blobs:
            self.out.write(b"M 100644 :%d %b\n" % (blob, path.encode()))
        self.out.write(b"\n")
        self.count += 1
        return f":{mark}"

    def tag(self, name: str, target: str, annotated: bool) -> None:
        if not annotated:
            self.out.write(b"reset refs/tags/%b\nfrom %b\n\n" % (name.encode(), target.encode()))
            return
        body = f"release {name}".encode()
        ident = f"Release Bot <release@example.com> {self.time} +0000".encode()
        self.out.write(
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


def git(repo: Path, *args: str, stdin: bytes | None = None) -> str:
    result = subprocess.run(
        ["git", "--git-dir", str(repo), *args], input=stdin, capture_output=True, check=True
    )
    return result.stdout.decode()


def fast_import(path: Path, commits: int, seed: int, main: str | None = None) -> None:
    """Stream a generated history of about `commits` commits into `git fast-import`."""
    command = ["git", "--git-dir", str(path), "fast-import", "--quiet", "--force"]
    with subprocess.Popen(command, stdin=subprocess.PIPE) as proc:
        assert proc.stdin is not None
        start = int(git(path, "log", "-1", "--format=%ct", main)) + 60 if main else EPOCH
        HistoryWriter(proc.stdin, seed, start).history(commits, main)
        proc.stdin.close()
    assert proc.returncode == 0


def build_repository(path: Path, commits: int = COMMITS, seed: int = 1) -> Path:
    """A bare repository at `path` with about `commits` commits (fast-import); returns its path."""
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(path)], check=True)
    fast_import(path, commits, seed)
    return path


def add_commits(path: Path, commits: int, seed: int = 2) -> None:
    """About `commits` more commits on top of main; feature branches are force-moved."""
    fast_import(path, commits, seed, main=git(path, "rev-parse", "refs/heads/main").strip())


SYNC_SCRIPT = """
import json, resource, sys
from config.settings import GitSource, Settings
from collectors.frame import SyncOptions
from collectors.git import GitCollector
from warehouse.engine import make_engine
from warehouse.migrate import upgrade

engine = make_engine(sys.argv[1])
upgrade(engine)
source = GitSource(name="bench", path=sys.argv[2])
summary = GitCollector(source, SyncOptions(Settings(), engine), numstat=sys.argv[3] == "1").sync()
self, git = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
with open("/proc/self/status") as status:  # VmHWM: this process image's own peak
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({
    "summary": summary.as_json(),
    "python_mib": hwm / 1024,
    "git_mib": git.ru_maxrss / 1024,
    "cpu_python_s": self.ru_utime + self.ru_stime,
    "cpu_git_s": git.ru_utime + git.ru_stime,
}))
"""


def run_sync(database: Path, repo: Path, numstat: bool = True) -> dict[str, Any]:
    """One sync in a fresh Python process: its summary, peak RSS and CPU time (its own and git's)."""
    args = [
        sys.executable,
        "-c",
        SYNC_SCRIPT,
        f"sqlite:///{database}",
        str(repo),
        str(int(numstat)),
    ]
    out = subprocess.run(args, capture_output=True, check=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    assert result["summary"]["ok"], result["summary"]["errors"]
    return result


def report(label: str, commits: int, result: dict[str, Any]) -> None:
    summary = result["summary"]
    seconds = summary["seconds"]
    rate = f" = {commits / seconds:,.0f} commits/s" if commits else ""
    print(
        f"git {label}: {commits:,} commits in {seconds:.2f} s{rate}; {summary['rows']:,} rows, "
        f"{summary['requests']} git commands; peak RSS python {result['python_mib']:.0f} MiB, "
        f"git {result['git_mib']:.0f} MiB; CPU python {result['cpu_python_s']:.1f} s, "
        f"git {result['cpu_git_s']:.1f} s"
    )


READER_SCRIPT = """
import sys, time
reader, path, stats, limit = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
start, n = time.perf_counter(), 0
if reader == "cli":
    from collectors.git import COMMIT_FORMAT, Git, REF_FORMAT, history_heads, parse_log, parse_refs
    from collectors.git import normalize_commit
    git = Git(__import__("pathlib").Path(path))
    heads = history_heads(parse_refs(git.run("for-each-ref", REF_FORMAT)))
    args = ["log", "--stdin", COMMIT_FORMAT] + (["--numstat", "--diff-merges=first-parent"] * stats)
    for payload in parse_log(git.lines(*args, stdin="".join(h + "\\n" for h in heads.values()))):
        normalize_commit(payload, 1, stats)
        n += 1
elif reader == "gitpython":
    import git
    for c in git.Repo(path).iter_commits("--all"):
        row = (c.hexsha, [p.hexsha for p in c.parents], c.author.name, c.author.email,
               c.authored_datetime, c.committed_datetime, c.summary, len(c.parents) > 1)
        if stats:
            row += (c.stats.total["insertions"], c.stats.total["deletions"])
        n += 1
        if n == limit:
            break
else:
    from pydriller import Repository
    for c in Repository(path, include_refs=True, include_remotes=True).traverse_commits():
        row = (c.hash, c.parents, c.author.name, c.author.email, c.author_date, c.committer_date,
               c.msg.split("\\n", 1)[0], c.merge)
        if stats:
            row += (c.insertions, c.deletions)
        n += 1
        if n == limit:
            break
seconds = time.perf_counter() - start
with open("/proc/self/status") as status:
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(n, seconds, hwm / 1024)
"""
MODULES = {"cli": "collectors", "gitpython": "git", "pydriller": "pydriller"}
STATS_SAMPLE = 5_000  # GitPython and pydriller run one `git diff` per commit for line counts


@pytest.fixture(scope="module")
def big_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    started = time.perf_counter()
    repo = build_repository(tmp_path_factory.mktemp("git") / "big.git")
    count = git(repo, "rev-list", "--all", "--count").strip()
    print(
        f"\ngenerated {int(count):,} commits with fast-import in {time.perf_counter() - started:.1f} s"
    )
    return repo


@pytest.mark.parametrize("reader", list(MODULES))
def test_readers_compared(reader: str, big_repo: Path) -> None:
    """The same fields read by the CLI parser (no warehouse writes), GitPython and pydriller. The
    last two are not dependencies: `pip install gitpython pydriller` to run them."""
    if importlib.util.find_spec(MODULES[reader]) is None:
        pytest.skip(f"{reader} is not installed (pip install {reader})")
    for stats in (False, True):
        limit = STATS_SAMPLE if stats and reader != "cli" else 0
        args = [
            sys.executable,
            "-c",
            READER_SCRIPT,
            reader,
            str(big_repo),
            str(int(stats)),
            str(limit),
        ]
        out = subprocess.run(args, capture_output=True, check=True, text=True).stdout.split()
        commits, seconds, peak = int(out[-3]), float(out[-2]), float(out[-1])
        assert commits == (limit or int(git(big_repo, "rev-list", "--all", "--count")))
        print(
            f"\n{reader:<9} {'with' if stats else 'without'} line counts: {commits:,} commits in "
            f"{seconds:.2f} s = {commits / seconds:,.0f} commits/s; peak RSS of the Python process "
            f"{peak:.0f} MiB (git processes not included)"
        )


def test_git_sync_throughput(big_repo: Path, tmp_path: Path) -> None:
    repo = Path(shutil.copytree(big_repo, tmp_path / "big.git"))
    total = int(git(repo, "rev-list", "--all", "--count"))
    full = run_sync(tmp_path / "warehouse.db", repo)
    report("full sync", total, full)
    assert full["summary"]["streams"]["commits"]["rows"] >= 2 * total - 1  # commits + parents
    report("full sync, numstat=False", total, run_sync(tmp_path / "nostat.db", repo, False))
    add_commits(repo, MORE)
    added = int(git(repo, "rev-list", "--all", "--count")) - total
    incremental = run_sync(tmp_path / "warehouse.db", repo)
    report("incremental sync", added, incremental)
    assert incremental["summary"]["streams"]["commits"]["rows"] >= 2 * added - 1
    unchanged = run_sync(tmp_path / "warehouse.db", repo)
    report("sync without changes", 0, unchanged)
    assert unchanged["summary"]["rows"] == 0
    assert unchanged["summary"]["requests"] == 2
