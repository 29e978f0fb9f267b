"""References in free text: work item keys (Jira `PAY-12`, Zentao `story #12` / `bug #45` /
`task #7`) and changes (commits, merge requests, pipelines, deployments, release tags).

One parser for every layer that reads text: the tracker collectors read an incident's explicit
links from its fields, derive links work items to commits and merge requests from MR titles,
source branches and commit messages.

Decisions where DESIGN.md is silent:
- A Jira key is `[A-Z][A-Z0-9_]+-<n>` between word boundaries, upper case only (`pay-12` in a
  branch name is `PAY-12` only when the branch's words are lower case: `feature/pay-12-login`,
  so branch names are upper-cased before matching, titles and messages are not).
- Zentao references are `story #12`, `bug #45`, `task #7` (also `story#12`, `需求 #12`, `Bug 45`
  is not one: the `#` is required), giving the work item keys `story-12`, `bug-45`, `task-7`,
  which is how the Zentao collector keys its work items.
- Changes are read from GitLab URLs (`/-/merge_requests/12`, `/-/pipelines/34`,
  `/api/v4/projects/<id>/deployments/56`, `/-/commit/<sha>`, `/-/tags/v1.2`; not the web UI's
  `/-/environments/<n>/deployments/<iid>`, which counts per environment, while a deployment is
  known by its id),
  an MR or commit URL names its project (the path before `/-/`),
  GitLab short forms (`!12`, `group/project!12`) and words (`deployment 56`, `pipeline #34`,
  `commit abc1234`, `release v1.2.3`); a bare hex word is a commit only with 7 to 40 characters
  and at least one letter and one digit (so `deadbeef` words and numbers are not shas).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

JIRA_KEY = re.compile(r"(?<![A-Za-z0-9_-])([A-Z][A-Z0-9_]+-[1-9][0-9]*)(?![A-Za-z0-9_])")
ZENTAO_REF = re.compile(r"(?i)\b(story|bug|task|需求|缺陷|任务)\s*#\s*([1-9][0-9]*)")
ZENTAO_WORDS = {"需求": "story", "缺陷": "bug", "任务": "task"}

_MR_URL = re.compile(r"(?:https?://\S+?/)?([\w.\-]+(?:/[\w.\-]+)+)/-/merge_requests/(\d+)")
_MR_SHORT = re.compile(r"(?<![\w/])((?:[\w.\-]+/)+[\w.\-]+)?!(\d+)\b")
_PIPELINE = re.compile(r"(?i)(?:/-/pipelines/|\bpipeline\s*#?\s*)(\d+)\b")
_DEPLOYMENT = re.compile(
    # an id of word characters, `:` and `-`, with dots inside it only (not a sentence's full stop)
    r"(?i)(?:/api/v4/projects/[^/\s]+/deployments/|\bdeployment\s*#?\s*)"
    r"((?:[\w:\-]|\.(?=\w))*\d(?:[\w:\-]|\.(?=\w))*)"
)
_COMMIT_URL = re.compile(
    r"(?:https?://[^/\s]+/)?((?:[\w.\-]+/)*[\w.\-]+)?/-/commits?/([0-9a-f]{7,40})\b"
)
_COMMIT_WORD = re.compile(r"(?i)\bcommit\s+([0-9a-f]{7,40})\b")
_TAG = re.compile(r"(?i)(?:/-/tags/|\b(?:release|tag)\s+)(v?\d+(?:\.\d+)+[\w.\-]*)")


_INCIDENT_URL = re.compile(
    r"https?://[^/\s]+(/(?:[\w.\-]+/)*(?:-/issues/\d+|incidents/[\w\-]+|browse/[A-Z][A-Z0-9_]+-\d+))"
)


def incident_mentions(*texts: str | None) -> list[str]:
    """What an incident's own text names of other records of an incident, in order, without
    repeats: work item keys (`PAY-12`, `bug-45`: `work_item_keys`) and the paths of incident URLs
    (a GitLab issue `/group/app/-/issues/12`, a PagerDuty incident `/incidents/Q1W2E3`, a Jira
    issue `/browse/PAY-12`; the host is left out: teams paste URLs by names the API may not use)."""
    found: list[str] = []
    for text in texts:
        if text:
            found.extend(work_item_keys(text))
            found.extend(m.group(1) for m in _INCIDENT_URL.finditer(text))
    return list(dict.fromkeys(found))


def incident_names(key: str | None, url: str | None) -> list[str]:
    """The names another incident's text may use for this one: its key and its URL's path."""
    names = [key] if key else []
    if url:
        path = re.sub(r"^https?://[^/\s]+", "", url).split("?")[0].rstrip("/")
        if path:
            names.append(path)
    return names


@dataclass(frozen=True)
class ChangeRef:
    """A change named in text: `kind` commit | merge_request | pipeline | deployment | tag;
    `value` the sha, iid, id or tag name; `repo` the project path when the text names one."""

    kind: str
    value: str
    repo: str = ""


def work_item_keys(text: str | None, *, branch: bool = False) -> list[str]:
    """The work item keys `text` names, in order of first mention, without repeats: Jira keys and
    Zentao `story-12` / `bug-45` / `task-7`. `branch`: `text` is a branch name (matched upper-cased
    for Jira keys, since branches are usually lower case)."""
    if not text:
        return []
    keys = [m.group(1) for m in JIRA_KEY.finditer(text.upper() if branch else text)]
    for m in ZENTAO_REF.finditer(text):
        word = m.group(1).lower()
        keys.append(f"{ZENTAO_WORDS.get(word, word)}-{m.group(2)}")
    return list(dict.fromkeys(keys))


def change_refs(text: str | None) -> list[ChangeRef]:
    """The changes `text` names (see the module docstring for the forms read), in order, without
    repeats."""
    if not text:
        return []
    found: list[tuple[int, ChangeRef]] = []
    for m in _MR_URL.finditer(text):
        found.append((m.start(), ChangeRef("merge_request", m.group(2), m.group(1))))
    for m in _MR_SHORT.finditer(text):
        found.append((m.start(), ChangeRef("merge_request", m.group(2), m.group(1) or "")))
    for pattern, kind in (
        (_PIPELINE, "pipeline"),
        (_DEPLOYMENT, "deployment"),
        (_COMMIT_URL, "commit"),
        (_COMMIT_WORD, "commit"),
        (_TAG, "tag"),
    ):
        for m in pattern.finditer(text):
            value = m.group(1)
            if kind == "deployment":  # "deployment 656." ends a sentence: not part of the id
                value = value.rstrip(".:-")
            repo = ""
            if pattern is _COMMIT_URL:  # names its project: the path before `/-/`
                repo, value = m.group(1) or "", m.group(2)
            if kind == "commit" and not is_sha(value):
                continue
            found.append((m.start(), ChangeRef(kind, value, repo)))
    found.sort(key=lambda item: item[0])
    return list(dict.fromkeys(ref for _, ref in found))


def is_sha(word: str) -> bool:
    """Whether `word` reads as an abbreviated or full commit sha: 7-40 lower-case hex characters
    with at least one letter and one digit."""
    return bool(
        re.fullmatch(r"[0-9a-f]{7,40}", word)
        and re.search(r"[a-f]", word)
        and re.search(r"[0-9]", word)
    )


def first_of(refs: list[ChangeRef], kind: str) -> ChangeRef | None:
    """The first reference of `kind` in `refs`, or None."""
    return next((r for r in refs if r.kind == kind), None)
