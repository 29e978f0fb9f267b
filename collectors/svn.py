"""The Subversion collector: one `[[sources.svn]]` repository read with Debian's `svn` client into
commits `r<n>`, parents, branches, tags and mergeinfo merges (`collectors.svn_normalize`).

Every command runs `svn <command> --xml --non-interactive --no-auth-cache` (never a prompt, no
credentials written to `~/.subversion`); a password is given on stdin (`--password-from-stdin`),
never on the command line, in the environment of `svn` or in a log, and `svn`'s messages are
logged with user info removed from URLs. Every `svn` command counts as a request.

A sync: `svn info` (the first sync only: the repository root and where the URL sits below it),
`svn log --xml -v -r <last>:HEAD` (the first sync `-r 1:HEAD`), streamed and parsed as it arrives,
then, when revisions changed a line folder's properties, `svn propget svn:mergeinfo` of those
lines at those revisions (one command per round, each line at most once a round: `svn` names a
target without its revision). A sync with nothing new is one `svn log` (it re-reads the last
revision, `<last>:HEAD`, since `<last+1>:HEAD` fails when there is none) and writes no row.

Decisions where DESIGN.md is silent:
- Branches and tags come from the log (the copies and deletions of their folders), not from
  `svn list`: one command fewer per sync, and the log says when each was created and from what.
- The cursor (`sync_state` stream `revisions`, partition the URL) is the lines' state after the
  last revision written (`History.as_json`), saved every 500 revisions in the transaction of
  their rows, so an interrupted sync resumes after the last saved revision, without gaps or
  duplicates. Merges found after the log are written in the last transaction; the candidates
  not yet read are in the cursor, so a sync interrupted before them reads them next time.
- Each revision's `<logentry>` XML is kept verbatim (raw_payload stream `revisions`, keyed by
  the revision); tags are raw payloads (stream `tags`), as the git collector keeps them.
- Line counts are not read (`svn log` has none; a diff per revision would cost a command each).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, unquote

from sqlalchemy import Connection, delete, func, select

from collectors.frame import Collector, SyncOptions
from collectors.git import public_url, repository_name
from collectors.payload import RejectedPayload
from collectors.refs import Refs, ServiceRef
from collectors.svn_log import parse_info, parse_log, parse_propget
from collectors.svn_normalize import History, Revision, branch_rows, sha
from collectors.sync import Batch, SyncRun
from config.settings import SvnSource
from warehouse.dimensions import ensure_id
from warehouse.raw import Raw
from warehouse.schema import Branch, Commit, CommitParent, Repo
from warehouse.sync_state import get_state

log = logging.getLogger(__name__)
CHECKPOINT = 500  # revisions per transaction (and cursor save)
STREAM = "revisions"
CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")
NO_PROPERTY = "W200017"  # propget of a target without the property (svn then exits 1)


class SvnError(Exception):
    """An `svn` command failed; the message names the command and what svn said."""


class Svn:
    """`svn` commands with the source's credentials, counted (the summary's `requests`)."""

    def __init__(self, username: str, password: str, timeout_s: float) -> None:
        self.username, self._password, self.timeout_s = username, password, timeout_s
        self.calls = 0
        self.commands: list[list[str]] = []  # what ran (tests check no secret is in it)

    def command(self, name: str, *args: str) -> tuple[list[str], bytes]:
        """The argument list of a command and its stdin (the password, when there is one)."""
        argv = ["svn", name, "--xml", "--non-interactive", "--no-auth-cache"]
        if self.username:
            argv += ["--username", self.username]
        stdin = b""
        if self._password:
            argv.append("--password-from-stdin")
            stdin = self._password.encode() + b"\n"
        self.calls += 1
        self.commands.append([*argv, *args])
        return [*argv, *args], stdin

    def run(self, name: str, *args: str, warnings: tuple[str, ...] = ()) -> str:
        """stdout of a command; SvnError when it fails (an exit code of 1 whose only complaints
        are the `warnings` codes is not a failure)."""
        argv, stdin = self.command(name, *args)
        try:
            done = subprocess.run(
                argv, input=stdin, capture_output=True, env=_env(), timeout=self.timeout_s
            )
        except subprocess.TimeoutExpired:
            raise SvnError(f"svn {name} ran longer than {self.timeout_s:.0f}s") from None
        except OSError as exc:
            raise SvnError(
                f"cannot run svn ({exc.strerror}); install Debian's subversion"
            ) from None
        if done.returncode and not _only(done.stderr, warnings):
            raise SvnError(f"svn {name} failed: {_said(done.stderr)}")
        return done.stdout.decode("utf-8", "replace")

    def stream(self, name: str, *args: str) -> Iterator[bytes]:
        """stdout of a command in chunks while it runs; SvnError when it fails."""
        argv, stdin = self.command(name, *args)
        with tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=_env()
                )
            except OSError as exc:
                raise SvnError(
                    f"cannot run svn ({exc.strerror}); install Debian's subversion"
                ) from None
            assert proc.stdin is not None and proc.stdout is not None
            expired = threading.Event()

            def expire() -> None:
                expired.set()
                proc.kill()

            timer = threading.Timer(self.timeout_s, expire)
            timer.start()
            finished = False
            try:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.write(stdin)
                    proc.stdin.close()
                yield from iter(lambda: proc.stdout.read(1 << 16), b"")  # type: ignore[union-attr]
                finished = True
            finally:
                timer.cancel()
                if not finished:
                    proc.kill()
                proc.stdout.close()
                proc.wait()
            if expired.is_set():
                raise SvnError(f"svn {name} ran longer than {self.timeout_s:.0f}s")
            if proc.returncode:
                err.seek(0)
                raise SvnError(f"svn {name} failed: {_said(err.read())}")


def _text(cursor: dict[str, Any], history: History) -> str:
    """The cursor as saved: where the repository is, and the lines after the last revision."""
    return json.dumps({**cursor, "history": history.as_json()}, sort_keys=True, ensure_ascii=False)


def _env() -> dict[str, str]:
    return dict(os.environ, LC_ALL="C.UTF-8")


def _said(stderr: bytes) -> str:
    text = CREDENTIALS.sub("***@", stderr.decode("utf-8", "replace").strip())
    errors = [line for line in text.splitlines() if line.startswith("svn: E")]
    return (errors or text.splitlines() or ["no message"])[-1]


def _only(stderr: bytes, warnings: tuple[str, ...]) -> bool:
    lines = [ln for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    complaints = [ln for ln in lines if "E200000" not in ln]  # "a problem occurred; see above"
    return bool(warnings) and all(any(w in ln for w in warnings) for ln in complaints)


class SvnCollector(Collector[str]):
    """Syncs one `[[sources.svn]]`: one partition, the repository URL, leased on its cursor's row."""

    kind = "svn"

    def __init__(self, source: SvnSource, options: SyncOptions) -> None:
        super().__init__(source, options)
        self.location = public_url(source.url)
        user = os.environ.get(source.username_env, "") if source.username_env else ""
        password = os.environ.get(source.password_env, "") if source.password_env else ""
        self.svn = Svn(user, password, source.timeout_s)
        self.refs = Refs.from_settings(self.settings)
        self._repos: dict[str, int] = {}
        self._source_id = 0
        self._saved = False  # a checkpoint recorded this sync's finish

    def base_url(self) -> str | None:
        return self.location

    def requests_made(self) -> int:
        return self.svn.calls

    def partitions(self, run: SyncRun) -> list[str]:
        return [self.location]

    def lease_of(self, location: str) -> tuple[str, str]:
        return STREAM, location

    def sync_partition(self, run: SyncRun, location: str) -> None:
        run.attempt(
            STREAM,
            location,
            f"repository {location}",
            lambda: self._sync_repository(run),
            known=(SvnError, ET.ParseError, ValueError),
            describe=self._describe,
        )

    def _describe(self, exc: Exception) -> str:
        hint = "check the URL, the credentials' variables and that this host reaches the server"
        if isinstance(exc, ET.ParseError | ValueError):
            hint = "svn printed XML that cannot be read; run the command by hand to see it"
        return f"svn source {self.source.name}: {self.location}: {exc}; {hint}"

    # -- the sync ----------------------------------------------------------------------------

    def _sync_repository(self, run: SyncRun) -> None:
        self._source_id, self._saved = run.source_id, False
        cursor = self._cursor(run)
        if not cursor.get("history", {}).get("revision"):  # first sync (or an empty repository)
            info = parse_info(self.svn.run("info", self.source.url))
            prefix = unquote((info["relative_url"] or "^/")[1:]).rstrip("/")
            cursor = {**cursor, "root": info["root"], "uuid": info["uuid"], "prefix": prefix}
            head = int(info["revision"])
        else:
            head = -1  # unknown: the log says
        history = History.from_json(cursor.get("history", {}), cursor["prefix"], self.source.layout)
        if head != 0:
            first = history.revision or 1
            chunks = self.svn.stream("log", "-v", "-r", f"{first}:HEAD", self.source.url)
            self._read_log(run, history, cursor, parse_log(chunks))
        self._merges(run, history, cursor)
        if not self._saved:  # nothing new: no row, only the partition's finish (its lease row)
            save = run.save_cursor(STREAM, self.location, _text(cursor, history), self.svn.calls)
            run.write(STREAM, Batch(), after=save)
        run.count(STREAM, partitions=1, requests=self.svn.calls)

    def _read_log(
        self, run: SyncRun, history: History, cursor: dict[str, Any], payloads: Iterator[Any]
    ) -> None:
        batch, pending = Batch(), 0
        for payload in payloads:
            rev = str(payload.get("revision"))
            if rev.isdigit() and int(rev) <= history.revision:
                continue  # the overlap: the last revision of the previous sync
            raw = {"revision": payload.get("revision"), "xml": payload["xml"]}
            try:
                revisions = history.apply(payload, self._lookup)
            except RejectedPayload as exc:
                log.warning("%s: rejected revision %s: %s", self.source.name, rev, exc)
                batch.raws.append(Raw(STREAM, rev or "?", raw, error=str(exc)))
                batch.rejected += 1
                if rev.isdigit():
                    history.revision = max(history.revision, int(rev))
                continue
            batch.raws.append(Raw(STREAM, rev, raw))
            for revision in revisions:
                self._add(batch, revision)
            pending += 1
            if pending >= CHECKPOINT:
                self._checkpoint(run, history, cursor, batch)
                batch, pending = Batch(), 0
        if len(batch):
            self._checkpoint(run, history, cursor, batch)

    def _add(self, batch: Batch, revision: Revision) -> None:
        repo_id = self._repo(revision.project)
        batch.add(Commit, [{**revision.commit, "repo_id": repo_id}])
        commit = revision.commit["sha"]
        batch.add(
            CommitParent,
            [
                {"repo_id": repo_id, "sha": commit, "parent_sha": sha(p), "position": 0}
                for p in revision.parents
            ],
        )
        for tag in revision.tags:
            key = f"{revision.project}/{tag['name']}" if revision.project else tag["name"]
            batch.raws.append(Raw("tags", key, tag))

    def _checkpoint(
        self, run: SyncRun, history: History, cursor: dict[str, Any], batch: Batch
    ) -> None:
        """Write a batch with every project's branches (deleted lines' rows removed) and the
        cursor, in one transaction."""
        for project in history.projects:
            batch.add(Branch, branch_rows(history, project, self._repo(project), run.started_at))
        self._saved = True
        save = run.save_cursor(STREAM, self.location, _text(cursor, history), self.svn.calls)
        names = {(row["repo_id"], row["name"]) for row in batch.rows.get(Branch, [])}
        repos = [self._repo(p) for p in history.projects]

        def prune_and_save(conn: Connection) -> None:
            stored = conn.execute(
                select(Branch.repo_id, Branch.name).where(Branch.repo_id.in_(repos))
            ).all()
            for repo_id, name in stored:
                if (repo_id, name) not in names:  # the line's folder was deleted
                    conn.execute(
                        delete(Branch).where(Branch.repo_id == repo_id, Branch.name == name)
                    )
                    run.stats(STREAM).rows += 1
            save(conn)

        run.write(STREAM, batch, after=prune_and_save)

    def _merges(self, run: SyncRun, history: History, cursor: dict[str, Any]) -> None:
        """Second parents from the `svn:mergeinfo` of the pending merge candidates; the pending
        copies (a copied line inherits its source's mergeinfo) are replayed with them, and the
        cursor saved without them (no events pending: nothing to do, nothing written)."""
        if not history.events:
            return
        candidates = [e for e in history.events if e[1] == "merge?"]
        rounds: list[dict[tuple[str, str], int]] = []
        for revision, _, project, line in candidates:
            free = next((r for r in rounds if (project, line) not in r), None)
            if free is None:
                rounds.append(free := {})
            free[(project, line)] = revision
        values: dict[tuple[str, str, int], str] = {}
        root = cursor["root"].rstrip("/")
        for round_ in rounds:
            targets = {
                f"{root}{quote(history.folder(p, ln))}": (p, ln, rev)
                for (p, ln), rev in round_.items()
            }
            text = self.svn.run(
                "propget",
                "svn:mergeinfo",
                *(f"{url}@{key[2]}" for url, key in targets.items()),
                warnings=(NO_PROPERTY,),
            )
            for path, value in parse_propget(text).items():
                key = targets.get(path) or targets.get(quote(unquote(path), safe=":/"))
                if key:
                    values[key] = value
        batch = Batch()
        for project, revision, parents in history.merges(values, self._lookup):
            repo_id = self._repo(project)
            batch.add(Commit, [{"repo_id": repo_id, "sha": sha(revision), "is_merge": True}])
            batch.add(
                CommitParent,
                [
                    {"repo_id": repo_id, "sha": sha(revision), "parent_sha": sha(p), "position": i}
                    for i, p in enumerate(parents, start=1)
                ],
            )
        self._checkpoint(run, history, cursor, batch)

    # -- the warehouse -----------------------------------------------------------------------

    def _repo(self, project: str | None) -> int:
        """The repo row of a project ("" in the standard layout), registered (with its service)
        on first use."""
        project = project or ""
        if project in self._repos:
            return self._repos[project]
        external = f"{self.location}/{project}" if project else self.location
        name = project or repository_name(self.location)
        service = self.source.projects.get(project) if project else self.source.service
        with self.engine.begin() as conn:
            row = {"source_id": self._source_id, "external_id": external, "path": name}
            repo_id = ensure_id(conn, Repo, {**row, "default_branch": "trunk"})
            if service:
                self.refs.id(conn, ServiceRef(service, repo=repo_id, origin="config"))
        self._repos[project] = repo_id
        return repo_id

    def _lookup(self, project: str, line: str, revision: int) -> int | None:
        """The newest revision on `line` at or before `revision` that the warehouse holds."""
        repo_id = self._repo(project)
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.max(Commit.svn_revision)).where(
                    Commit.repo_id == repo_id,
                    Commit.svn_line == line,
                    Commit.svn_revision <= revision,
                )
            ).scalar()

    def _cursor(self, run: SyncRun) -> dict[str, Any]:
        if self.full:
            return {}
        with self.engine.connect() as conn:
            state = get_state(conn, run.source_id, STREAM, self.location)
        with contextlib.suppress(ValueError):
            cursor = json.loads(state.cursor) if state and state.cursor else {}
            if isinstance(cursor, dict) and "prefix" in cursor and "root" in cursor:
                return cursor
        if state and state.cursor:
            log.warning("%s: unreadable cursor, reading every revision", self.source.name)
        return {}


__all__ = ["Svn", "SvnCollector", "SvnError"]
