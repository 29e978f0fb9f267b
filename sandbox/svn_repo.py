"""A real Subversion repository for the sandbox: built with `svnadmin` and Debian's `svn` client,
served by `svnserve` on loopback with a user and password, with its ground truth.

The history (`HISTORY`) is fixed and small: trunk/branches/tags, a feature branch merged back
with `svn merge` (mergeinfo), a tag per release, a hotfix branch from a release tag, a deleted
branch and an unmerged branch left to go stale. Dates are set with `svnadmin setrevprop` from
`start` (one step a revision), so the truth is exact. The truth is written here by hand from the
history, independently of the collector's rules: `commits` (r<n> -> line, author, date, title),
`parents`, `branches` (name -> head), `tags` (name -> the commit it was copied from), `merges`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

USER, PASSWORD = "sandbox", "svn-sandbox-secret"
STEP = timedelta(hours=5)

# (author, what, title) in revision order; `what` is what the revision does (see `_commit`)
HISTORY: list[tuple[str, str, str]] = [
    ("alice", "layout", "Create standard layout"),  # r1
    ("alice", "trunk:add app.py", "PAY-1 initial import"),  # r2
    ("bob", "trunk:edit app.py", "PAY-2 refund endpoint"),  # r3
    ("carol", "copy:trunk>branches/feature-login", "Branch feature-login"),  # r4
    ("carol", "branches/feature-login:add login.py", "PAY-3 login form"),  # r5
    ("carol", "branches/feature-login:edit login.py", "PAY-3 validate password"),  # r6
    ("bob", "trunk:edit app.py", "PAY-4 fix rounding"),  # r7
    ("carol", "merge:branches/feature-login>trunk", "Merge feature-login (PAY-3)"),  # r8
    ("alice", "copy:trunk>tags/release-1.0", "Release 1.0"),  # r9
    ("bob", "trunk:edit app.py", "PAY-5 audit log"),  # r10
    ("alice", "trunk:propset app.py", "Set eol-style"),  # r11 (a file's property: no merge)
    ("dave", "copy:tags/release-1.0>branches/hotfix-1.0.1", "Branch hotfix-1.0.1"),  # r12
    ("dave", "branches/hotfix-1.0.1:edit app.py", "HOTFIX PAY-6 null amount"),  # r13
    ("dave", "copy:branches/hotfix-1.0.1>tags/release-1.0.1", "Release 1.0.1"),  # r14
    ("carol", "delete:branches/feature-login", "Remove merged feature-login"),  # r15
    ("erin", "copy:trunk>branches/experiment", "Branch experiment"),  # r16
    ("erin", "branches/experiment:add idea.py", "Try an idea"),  # r17
    ("alice", "trunk:edit app.py", "PAY-7 faster refunds"),  # r18
    ("bob", "trunk:add util.py", "PAY-8 helpers"),  # r19
    ("alice", "copy:trunk>tags/release-1.1", "Release 1.1"),  # r20
]
TRUTH_PARENTS: dict[int, list[int]] = {
    2: [1], 3: [2], 4: [3], 5: [4], 6: [5], 7: [3], 8: [7, 6], 9: [8], 10: [8], 11: [10],
    12: [9], 13: [12], 14: [13], 15: [6], 16: [11], 17: [16], 18: [11], 19: [18], 20: [19],
}  # fmt: skip
TRUTH_LINES: dict[int, str] = {
    1: "trunk", 2: "trunk", 3: "trunk", 4: "branches/feature-login",
    5: "branches/feature-login", 6: "branches/feature-login", 7: "trunk", 8: "trunk",
    9: "tags/release-1.0", 10: "trunk", 11: "trunk", 12: "branches/hotfix-1.0.1",
    13: "branches/hotfix-1.0.1", 14: "tags/release-1.0.1", 15: "branches/feature-login",
    16: "branches/experiment", 17: "branches/experiment", 18: "trunk", 19: "trunk",
    20: "tags/release-1.1",
}  # fmt: skip
TRUTH_BRANCHES = {"trunk": 19, "hotfix-1.0.1": 13, "experiment": 17}
TRUTH_TAGS = {"release-1.0": 8, "release-1.0.1": 13, "release-1.1": 19}
TRUTH_MERGES = {8: [6]}


@dataclass
class SvnTruth:
    """What happened, in the collector's vocabulary (commit ids `r<n>`)."""

    commits: dict[str, dict[str, Any]]
    parents: set[tuple[str, str, int]]  # (sha, parent, position)
    branches: dict[str, str]
    tags: dict[str, str]
    merges: dict[str, list[str]]


@dataclass
class SvnRepository:
    """A built repository (`path`) and, once `serve` ran, its svnserve process."""

    path: Path
    start: datetime
    revisions: int = 0
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    _work: Path | None = field(default=None, repr=False)

    @property
    def file_url(self) -> str:
        return self.path.resolve().as_uri()

    @property
    def url(self) -> str:
        """The svnserve URL (after `serve`)."""
        return f"svn://127.0.0.1:{self.port}/{self.path.name}"

    def date(self, revision: int) -> datetime:
        """When revision `revision` was committed."""
        return self.start + STEP * (revision - 1)

    def truth(self, upto: int | None = None) -> SvnTruth:
        """The ground truth after revision `upto` (default: all of `HISTORY`)."""
        upto = upto or len(HISTORY)
        commits = {
            f"r{r}": {
                "line": TRUTH_LINES[r],
                "author": HISTORY[r - 1][0],
                "date": self.date(r),
                "title": HISTORY[r - 1][2],
            }
            for r in range(1, upto + 1)
        }
        parents = {
            (f"r{r}", f"r{p}", i)
            for r, ps in TRUTH_PARENTS.items()
            if r <= upto
            for i, p in enumerate(ps)
        }
        return SvnTruth(
            commits,
            parents,
            {} if upto < len(HISTORY) else {b: f"r{h}" for b, h in TRUTH_BRANCHES.items()},
            {} if upto < len(HISTORY) else {t: f"r{h}" for t, h in TRUTH_TAGS.items()},
            {f"r{m}": [f"r{p}" for p in ps] for m, ps in TRUTH_MERGES.items() if m <= upto},
        )

    # -- building ------------------------------------------------------------------------------

    def build(self, upto: int | None = None) -> SvnRepository:
        """Create the repository (when new) and commit `HISTORY` up to revision `upto`."""
        if not self.path.exists():
            _run("svnadmin", "create", str(self.path))
            self._work = Path(tempfile.mkdtemp(prefix="svn-wc-"))
            _run("svn", "checkout", "-q", self.file_url, str(self._work / "wc"))
        for revision in range(self.revisions + 1, (upto or len(HISTORY)) + 1):
            author, what, title = HISTORY[revision - 1]
            self._commit(what, title)
            props = (("svn:author", author), ("svn:date", _svn_date(self.date(revision))))
            for name, value in props:
                _run("svnadmin", "setrevprop", str(self.path), "-r", str(revision), name,
                     "/dev/stdin", stdin=value)  # fmt: skip
            self.revisions = revision
        return self

    def _commit(self, what: str, title: str) -> None:
        assert self._work is not None
        wc, url = self._work / "wc", self.file_url
        kind, _, arg = what.partition(":")
        if kind == "layout":
            _run(
                "svn", "mkdir", "-q", "-m", title, f"{url}/trunk", f"{url}/branches", f"{url}/tags"
            )
        elif kind == "copy":
            source, target = arg.split(">")
            _run("svn", "copy", "-q", "-m", title, f"{url}/{source}", f"{url}/{target}")
        elif kind == "delete":
            _run("svn", "delete", "-q", "-m", title, f"{url}/{arg}")
        elif kind == "merge":
            source, target = arg.split(">")
            _run("svn", "update", "-q", str(wc))
            _run("svn", "merge", "-q", f"{url}/{source}", str(wc / target))
            _run("svn", "commit", "-q", "-m", title, str(wc))
        else:  # <line>:add|edit|propset <file>
            line, (action, *name) = kind, arg.split(" ")
            _run("svn", "update", "-q", str(wc))
            folder = wc / line
            if action == "propset":
                _run("svn", "propset", "-q", "svn:eol-style", "native", str(folder / name[0]))
            else:
                path = folder / name[0]
                with path.open("a", encoding="utf-8") as f:
                    f.write(f"# {title}\n")
                if action == "add":
                    _run("svn", "add", "-q", str(path))
            _run("svn", "commit", "-q", "-m", title, str(wc))
        _run("svn", "update", "-q", str(wc))

    # -- serving -------------------------------------------------------------------------------

    def serve(self) -> SvnRepository:
        """Serve the repository's parent folder with svnserve on a free loopback port; reading
        needs USER and PASSWORD (anonymous access is refused)."""
        conf = self.path / "conf"
        (conf / "passwd").write_text(f"[users]\n{USER} = {PASSWORD}\n", encoding="utf-8")
        (conf / "svnserve.conf").write_text(
            "[general]\nanon-access = none\nauth-access = read\npassword-db = passwd\n",
            encoding="utf-8",
        )
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            ["svnserve", "-d", "--foreground", "--listen-host", "127.0.0.1",
             "--listen-port", str(self.port), "-r", str(self.path.parent)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("svnserve did not start")

    def stop(self) -> None:
        """Stop svnserve and remove the working copy."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None


def start_repository(
    folder: Path, start: datetime | None = None, serve: bool = True
) -> SvnRepository:
    """A repository `folder/payments` built with the whole `HISTORY` (and served)."""
    start = start or datetime(2026, 11, 2, 8, tzinfo=UTC)
    repo = SvnRepository(folder / "payments", start).build()
    return repo.serve() if serve else repo


def _svn_date(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")


def _run(*argv: str, stdin: str = "") -> str:
    env = dict(os.environ, LC_ALL="C.UTF-8")
    done = subprocess.run(argv, input=stdin.encode(), capture_output=True, env=env)
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv[:2])} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode()


__all__ = ["HISTORY", "PASSWORD", "USER", "SvnRepository", "SvnTruth", "start_repository"]
