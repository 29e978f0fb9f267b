"""The git-svn route: a repository made by `git svn clone` (and kept fresh by `git svn fetch`),
read by the git collector (`collectors.git`). Pure helpers: the Subversion revision and line of
a commit from its `git-svn-id:` trailer, and the mirror's refs seen as branches and tags.

Decisions where DESIGN.md is silent:
- A repository is a git-svn mirror when its config has an `[svn-remote ...]` section. Its
  Subversion branches are `refs/remotes/<prefix><name>` and its tags
  `refs/remotes/<prefix>tags/<name>` (branches to git, which `git svn` fetches into; the prefix
  is read from the config's `fetch` line: `origin/` by default since git 2.0, "" before). They
  are read as the branches `<name>` (trunk the default branch) and the tags `<name>`; the
  mirror's own `refs/heads/*` (a local `master` following trunk) are left out, since they repeat
  trunk or hold work not in Subversion.
- A tag names the commit its ref points to: git-svn makes a commit of the tag's copy, whose
  parent is the copied commit (the svn collector names the copied commit itself).
- A branch deleted in Subversion keeps its ref in the mirror (git-svn never deletes one), so it
  stays a branch here; use the svn collector when deleted branches matter.
- `commit.svn_revision` and `commit.svn_line` come from the `git-svn-id: <url>@<rev> <uuid>`
  line of the message; commits without one (made in git) have neither.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collectors.git import Ref

GIT_SVN_ID = re.compile(rb"^git-svn-id: (\S+)@(\d+)(?: |$)")
_FETCH_PREFIX = re.compile(r"^\s*fetch\s*=\s*\S*:refs/remotes/(\S*?)trunk\s*$", re.MULTILINE)


def svn_id(line: bytes) -> dict[str, Any] | None:
    """`svn_revision` and `svn_line` of a `git-svn-id:` message line; None for another line."""
    found = GIT_SVN_ID.match(line.strip())
    if not found:
        return None
    url = found.group(1).decode("utf-8", "replace")
    return {"svn_revision": int(found.group(2)), "svn_line": svn_line(url)}


def svn_line(url: str) -> str | None:
    """The line of a Subversion URL: `trunk`, `branches/<name>` or `tags/<name>`; None if none."""
    parts = [p for p in urlsplit(url).path.split("/") if p]
    for i, part in enumerate(parts):
        if part == "trunk":
            return "trunk"
        if part in ("branches", "tags") and i + 1 < len(parts):
            return f"{part}/{parts[i + 1]}"
    return None


def mirror_prefix(git_dir: Path) -> str | None:
    """The remote-ref prefix of a git-svn mirror (`origin/`, or ""), None for another repository."""
    try:
        config = (git_dir / "config").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if "[svn-remote " not in config:
        return None
    found = _FETCH_PREFIX.search(config)
    return found.group(1) if found else "origin/"


def mirror_view(refs: list[Ref], prefix: str) -> list[Ref]:
    """The mirror's refs as branches (`refs/heads/<name>`) and tags (`refs/tags/<name>`)."""
    remote = f"refs/remotes/{prefix}"
    view = []
    for ref in refs:
        if ref.name.startswith(remote + "tags/"):
            view.append(dataclasses.replace(ref, name="refs/tags/" + ref.name[len(remote) + 5 :]))
        elif ref.name.startswith(remote) and "/" not in ref.name[len(remote) :]:
            view.append(dataclasses.replace(ref, name="refs/heads/" + ref.name[len(remote) :]))
        elif not ref.name.startswith(("refs/heads/", "refs/remotes/")):
            view.append(ref)
    return view


__all__ = ["mirror_prefix", "mirror_view", "svn_id", "svn_line"]
