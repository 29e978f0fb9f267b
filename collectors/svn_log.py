"""Pure parsers of Subversion's XML output (`svn log --xml -v`, `svn info --xml`,
`svn propget --xml`) and of `svn:mergeinfo` values.

Elements and attributes are read by name, never by position: their order changes between runs of
the same command (APR hash order; ../shared/fixtures/svn/generated/GENERATED.md). Text is stripped
of surrounding whitespace (changelogs written by tools such as Jenkins' plugin indent it). A
`<logentry>` becomes a plain dict, the *revision payload*; nested `<logentry>` elements (what
`svn log -g` adds) are not read as revisions. Each revision's own XML is kept verbatim beside it,
so re-deriving reads what `svn` said.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from typing import IO, Any

Payload = dict[str, Any]
# (lo, hi) inclusive revision ranges of one merge source
Ranges = list[tuple[int, int]]
_RANGE = re.compile(r"^(-?)(\d+)(?:-(\d+))?(\*?)$")


def _text(element: ET.Element | None) -> str | None:
    if element is None:
        return None
    return (element.text or "").strip()


def _flag(value: str | None) -> bool | None:
    return None if value is None else value == "true"


def logentry_payload(entry: ET.Element) -> Payload:
    """The revision payload of one `<logentry>`: revision (as svn wrote it: a string), author,
    date, msg, paths (each: path, action, kind, copyfrom_path, copyfrom_rev, text_mods,
    prop_mods; absent attributes are None) and `xml`, the entry verbatim (nested entries
    included)."""
    paths = entry.find("paths")
    return {
        "revision": entry.get("revision"),
        "author": _text(entry.find("author")),
        "date": _text(entry.find("date")),
        "msg": (entry.findtext("msg") or "").strip("\n"),
        "paths": [
            {
                "path": _text(path) or "",
                "action": path.get("action"),
                "kind": path.get("kind"),
                "copyfrom_path": path.get("copyfrom-path"),
                "copyfrom_rev": path.get("copyfrom-rev"),
                "text_mods": _flag(path.get("text-mods")),
                "prop_mods": _flag(path.get("prop-mods")),
            }
            for path in (paths.findall("path") if paths is not None else [])
        ],
        "xml": ET.tostring(entry, encoding="unicode"),
    }


def parse_log(source: IO[bytes] | Iterable[bytes]) -> Iterator[Payload]:
    """Revision payloads of `svn log --xml -v` output, in the order svn wrote them, while it
    streams (a file object, or an iterable of byte chunks); ET.ParseError on XML that is not
    well formed. Only top-level `<logentry>` elements are revisions."""
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("start", "end"))
    depth = 0
    reader = getattr(source, "read", None)
    chunks: Iterable[bytes] = iter(lambda: reader(1 << 16), b"") if reader else source  # type: ignore[arg-type]
    for chunk in chunks:
        parser.feed(chunk)
        for event, element in parser.read_events():  # type: ignore[misc]
            if not isinstance(element, ET.Element) or element.tag != "logentry":
                continue
            if event == "start":
                depth += 1
                continue
            depth -= 1
            if depth == 0:
                yield logentry_payload(element)
                element.clear()
    parser.close()


def parse_info(text: str) -> Payload:
    """`svn info --xml` of one target: url, root, uuid, relative_url (`^/...`), revision (the
    target's revision: HEAD for a URL) as int; ValueError when a field is missing."""
    entry = ET.fromstring(text).find("entry")
    if entry is None:
        raise ValueError("svn info printed no <entry>")
    fields = {
        "url": _text(entry.find("url")),
        "relative_url": _text(entry.find("relative-url")),
        "root": _text(entry.find("repository/root")),
        "uuid": _text(entry.find("repository/uuid")),
        "revision": entry.get("revision"),
    }
    missing = [k for k, v in fields.items() if not v]
    if missing:
        raise ValueError(f"svn info printed no {', '.join(missing)}")
    return {**fields, "revision": int(fields["revision"] or 0)}


def parse_propget(text: str) -> dict[str, str]:
    """target path -> property value of `svn propget --xml` output (one property asked)."""
    root = ET.fromstring(text)
    return {
        target.get("path") or "": (target.findtext("property") or "").strip()
        for target in root.findall("target")
    }


def parse_mergeinfo(value: str) -> dict[str, Ranges]:
    """source path -> merged revision ranges of an `svn:mergeinfo` value, one source a line:
    `/branches/x:4-5,7,9-12*` (`*`: non-inheritable, merged all the same). Reverse ranges
    (`-5`, what a reverse merge leaves in old repositories) and unreadable parts are left out."""
    merged: dict[str, Ranges] = {}
    for line in value.splitlines():
        path, sep, spec = line.strip().rpartition(":")
        if not sep or not path:
            continue
        for part in spec.split(","):
            m = _RANGE.match(part.strip())
            if not m or m.group(1):
                continue
            lo = int(m.group(2))
            merged.setdefault(path, []).append((lo, int(m.group(3) or lo)))
    return merged


def new_ranges(now: Ranges, before: Ranges) -> Ranges:
    """The parts of `now`'s ranges that `before`'s do not cover."""
    result: Ranges = []
    for lo, hi in sorted(now):
        pieces = [(lo, hi)]
        for b_lo, b_hi in before:
            pieces = [
                part
                for p_lo, p_hi in pieces
                for part in ((p_lo, min(p_hi, b_lo - 1)), (max(p_lo, b_hi + 1), p_hi))
                if part[0] <= part[1]
            ]
        result.extend(pieces)
    return result


__all__ = [
    "Payload",
    "Ranges",
    "logentry_payload",
    "new_ranges",
    "parse_info",
    "parse_log",
    "parse_mergeinfo",
    "parse_propget",
]
