"""Pure normalising of Subversion revisions (`collectors.svn_log` payloads) into commits, parents,
lines (branches), tags and mergeinfo merges.

Every revision is a commit `r<n>` (DESIGN.md section 9) of each project it touches. `History`
holds what a sync knows of the lines between revisions (it is the collector's cursor, as JSON);
`History.apply` turns one revision into rows, `merges` turns newly added `svn:mergeinfo` into
second parents.

Decisions where DESIGN.md is silent:
- A *line* is `trunk`, `branches/<name>` or `tags/<name>` (one level) under the layout's root, or
  under `/<project>/` in the multi-project layout, where each project is its own repository.
  Paths outside any line (`/branches` itself, a `README` at the root) belong to no line; a
  revision touching no line of a project is no commit of it (its XML is kept all the same).
- A revision's line is the line most of its changed paths are on; a tie goes to trunk, then
  branches, then tags, then by name. Only that line moves: a revision also touching another line
  (a commit from a working copy of the whole repository) is a commit of the first line only.
- Parent: the previous revision on the same line. A line created by a copy (`A`/`R` of the line's
  folder with `copyfrom-path`) starts from the copy source: the newest revision on the source
  line at or before `copyfrom-rev` (the source line's own creation copy when it has none). A
  line created without a copy (`svn mkdir trunk`) starts a new root.
- A line's folder deleted (`D`, or a deleted parent such as `/branches`) ends the line: its
  branch row goes. The deleting revision is still a commit on it.
- Tags: a `tags/<name>` line names the commit it was copied from (not the copy revision, which is
  a commit on the tag line whose parent is that commit). Commits to a tag's folder (nothing in
  Subversion forbids them) are commits on the tag line and do not move the tag. Branch rows are
  kept for trunk and `branches/*` only; trunk is the default branch.
- Merges: a revision changing properties of its line's folder may be a merge. Its line's
  `svn:mergeinfo` at that revision is compared with the line's previous mergeinfo (a line created
  by a copy inherits its source's); every merge source with newly merged revisions adds a parent:
  the newest revision of that source line within the new ranges. Mergeinfo recorded below a line's
  folder (subtree merges) and sources in another project are not read; a reverse merge adds none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from collectors.payload import RejectedPayload, parse_time, rejects
from collectors.svn_log import Payload, Ranges, new_ranges, parse_mergeinfo

Row = dict[str, Any]
# (project, line, revision) -> the newest revision of `line` at or before `revision` read by an
# earlier sync (the warehouse), or None
Lookup = Callable[[str, str, int], int | None]
KIND_ORDER = {"trunk": 0, "branches": 1, "tags": 2}


def sha(revision: int) -> str:
    """The commit id of a revision: `r<n>`."""
    return f"r{revision}"


@dataclass(frozen=True)
class Place:
    """Where a repository path is: its project ("" in the standard layout), line and whether it
    is the line's folder itself."""

    project: str
    line: str
    root: bool


def locate(path: str, prefix: str, layout: str) -> Place | None:
    """The place of an absolute repository path under `prefix` (the configured URL's path below
    the repository root), or None outside every line."""
    prefix = prefix.rstrip("/")
    if prefix and not (path == prefix or path.startswith(prefix + "/")):
        return None
    parts = [p for p in path[len(prefix) :].split("/") if p]
    project = ""
    if layout == "projects":
        if not parts:
            return None
        project, parts = parts[0], parts[1:]
    if parts[:1] == ["trunk"]:
        return Place(project, "trunk", len(parts) == 1)
    if len(parts) >= 2 and parts[0] in ("branches", "tags"):
        return Place(project, f"{parts[0]}/{parts[1]}", len(parts) == 2)
    return None


def branch_name(line: str) -> str:
    """The branch (or tag) name of a line: `trunk`, `x` for `branches/x` and `tags/x`."""
    return line.split("/", 1)[-1]


@dataclass
class Revision:
    """What one revision is in one project: its commit row (without `repo_id`), parent revisions
    (first parent first), and the tags it created."""

    project: str
    commit: Row
    parents: list[int]
    tags: list[Row] = field(default_factory=list)


@dataclass
class History:
    """The lines of every project as of the last revision applied (`revision`), and the events the
    merge step still has to read. Serialises to the collector's cursor (`as_json`)."""

    prefix: str = ""  # the configured URL's path below the repository root
    layout: str = "standard"
    revision: int = 0
    projects: dict[str, Any] = field(default_factory=dict)
    # [revision, "copy", project, line, source line] and [revision, "merge?", project, line]
    events: list[list[Any]] = field(default_factory=list)
    # project -> line -> revisions applied in this sync (for copies and merges between them)
    seen: dict[str, dict[str, list[int]]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any], prefix: str, layout: str) -> History:
        """The history a cursor saved (`as_json`)."""
        return cls(
            prefix,
            layout,
            int(data.get("revision", 0)),
            data.get("projects", {}),
            data.get("events", []),
        )

    def as_json(self) -> dict[str, Any]:
        return {"revision": self.revision, "projects": self.projects, "events": self.events}

    def project(self, name: str) -> dict[str, Any]:
        return self.projects.setdefault(name, {"lines": {}, "tags": {}, "mergeinfo": {}})

    def newest(self, project: str, line: str, revision: int, lookup: Lookup) -> int | None:
        """The newest commit on `line` at or before `revision`: its own revision, else the copy
        it was created from."""
        own = [r for r in self.seen.get(project, {}).get(line, []) if r <= revision]
        found = own[-1] if own else lookup(project, line, revision)
        state = self.project(project)["lines"].get(line) or {}
        created = state.get("created")
        if found is not None and (created is None or found >= created):
            return found
        if created is not None and created <= revision:
            return state.get("origin")
        return found

    @rejects("revision")
    def apply(self, payload: Payload, lookup: Lookup) -> list[Revision]:
        """The commits revision `payload` makes (one per project it touches), updating the lines;
        RejectedPayload when the payload cannot be read (the lines stay as they were)."""
        revision = _revision(payload)
        date = parse_time(payload.get("date"), "date")
        places = [(p, self.locate(p["path"])) for p in payload.get("paths") or []]
        revisions = []
        for project in sorted({pl.project for _, pl in places if pl}):
            mine = [(p, pl) for p, pl in places if pl and pl.project == project]
            revisions.append(self._apply_project(project, revision, date, payload, mine, lookup))
        self._deletions(places)
        self.revision = max(self.revision, revision)
        return revisions

    def _apply_project(
        self,
        project: str,
        revision: int,
        date: datetime | None,
        payload: Payload,
        paths: list[tuple[Payload, Place]],
        lookup: Lookup,
    ) -> Revision:
        state = self.project(project)
        counts: dict[str, int] = {}
        for _, place in paths:
            counts[place.line] = counts.get(place.line, 0) + 1
        line = min(counts, key=lambda ln: (-counts[ln], KIND_ORDER[ln.split("/")[0]], ln))
        created: dict[str, int | None] = {}
        for path, place in paths:
            if place.root and path.get("action") in ("A", "R"):
                created[place.line] = self._copy_source(project, path, revision, lookup)
        parent = created[line] if line in created else (state["lines"].get(line) or {}).get("head")
        tags = []
        for made, origin in created.items():
            state["lines"][made] = {
                "head": origin,
                "at": None,
                "created": revision,
                "origin": origin,
            }
            if made.startswith("tags/") and origin is not None:
                tag = {"name": branch_name(made), "target": sha(origin), "target_type": "commit",
                       "revision": revision, "tagger_date": date.isoformat() if date else None}  # fmt: skip
                state["tags"][branch_name(made)] = tag
                tags.append(tag)
        for path, place in paths:
            if (
                place.line == line
                and place.root
                and path.get("action") == "M"
                and path.get("prop_mods")
            ):
                self.events.append([revision, "merge?", project, line])  # fmt: skip
        state["lines"][line] = {
            **state["lines"].get(line, {}),
            "head": revision,
            "at": date.isoformat() if date else None,
        }
        self.seen.setdefault(project, {}).setdefault(line, []).append(revision)
        msg = str(payload.get("msg") or "")
        commit = {
            "sha": sha(revision),
            "author_name": payload.get("author") or None,
            "author_email": None,
            "authored_at": date,
            "committed_at": date,
            "title": msg.split("\n", 1)[0].strip(),
            "is_merge": False,
            "svn_revision": revision,
            "svn_line": line,
        }
        return Revision(project, commit, [parent] if parent is not None else [], tags)

    def _copy_source(
        self, project: str, path: Payload, revision: int, lookup: Lookup
    ) -> int | None:
        """The commit a line created by `path` starts from (None: a new root), recording the copy
        for the merge step."""
        source, rev = path.get("copyfrom_path"), path.get("copyfrom_rev")
        place = self.locate(source) if source else None
        if place is None or place.project != project or not str(rev or "").isdigit():
            return None
        made = self.locate(path["path"])
        if made is not None:
            self.events.append([revision, "copy", project, made.line, place.line])
        return self.newest(project, place.line, int(str(rev)), lookup)

    def _deletions(self, places: list[tuple[Payload, Place | None]]) -> None:
        """End the lines whose folder (or a folder above it) this revision deleted."""
        for path, place in places:
            if path.get("action") != "D" or (place is not None and not place.root):
                continue
            gone = path["path"].rstrip("/")
            for project, state in self.projects.items():
                for line in list(state["lines"]):
                    folder = self.folder(project, line)
                    if (folder + "/").startswith(gone + "/"):
                        del state["lines"][line]

    def locate(self, path: str) -> Place | None:
        """The place of a repository path in this history's layout."""
        return locate(path, self.prefix, self.layout)

    def folder(self, project: str, line: str) -> str:
        """A line's folder below the repository root (`/trunk`, `/app/branches/x`)."""
        return "/" + "/".join(p for p in (self.prefix.strip("/"), project, line) if p)

    def merges(
        self, mergeinfo: dict[tuple[str, str, int], str], lookup: Lookup
    ) -> list[tuple[str, int, list[int]]]:
        """(project, merge revision, merged revisions) for every pending merge candidate, given
        each candidate's `svn:mergeinfo` value (absent: none); replays the copies and candidates
        in revision order, updating each line's mergeinfo, and clears the pending events."""
        found = []
        for event in sorted(self.events, key=lambda e: (e[0], e[1] != "copy")):
            revision, kind, project, line = event[:4]
            known = self.project(project)["mergeinfo"]
            if kind == "copy":
                known[line] = dict(known.get(event[4], {}))
                continue
            now = parse_mergeinfo(mergeinfo.get((project, line, revision), ""))
            before: dict[str, Ranges] = {s: [tuple(r) for r in rs] for s, rs in known.get(line, {}).items()}  # type: ignore[misc]  # fmt: skip
            known[line] = {s: [list(r) for r in rs] for s, rs in now.items()}
            parents = []
            for source, ranges in sorted(now.items()):
                place = self.locate(source)
                if place is None or place.project != project or place.line == line:
                    continue
                for lo, hi in sorted(new_ranges(ranges, before.get(source, [])), reverse=True):
                    merged = self.newest(project, place.line, hi, lookup)
                    if merged is not None and merged >= lo:
                        parents.append(merged)
                        break
            if parents:
                found.append((project, revision, parents))
        self.events = []
        return found


def _revision(payload: Payload) -> int:
    value = payload.get("revision")
    if not str(value or "").isdigit() or int(str(value)) < 1:
        raise RejectedPayload(f"revision is not a positive number: {value!r}")
    return int(str(value))


def branch_rows(history: History, project: str, repo_id: int, now: datetime) -> list[Row]:
    """A branch row per live trunk or `branches/*` line of `project` that has a commit."""
    rows = []
    for line, state in sorted(history.project(project)["lines"].items()):
        if line.startswith("tags/") or state.get("head") is None:
            continue
        rows.append(
            {
                "repo_id": repo_id,
                "name": branch_name(line),
                "protected": False,
                "is_default": line == "trunk",
                "head_sha": sha(state["head"]),
                "first_seen_at": now,
                "last_commit_at": parse_time(state.get("at"), "at") if state.get("at") else None,
            }
        )
    return rows


__all__ = ["History", "Place", "Revision", "branch_name", "branch_rows", "locate", "sha"]
