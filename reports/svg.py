"""Charts as inline SVG, written directly: no browser, no network, no fonts to embed, the same bytes
on every machine, and drawn by browsers and by WeasyPrint (the PDF) alike. A missing value
(no data that week) is a gap labelled with a dash, never a zero bar; a partial week (cut by the
period or the clock) is an outlined column labelled "partial", so it never reads as a drop.
Columns start at zero and never go below it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

COLOUR = "#3b6fb6"
MUTED = "#9aa5b1"
FONT = "font-family:DejaVu Sans,Helvetica,Arial,sans-serif"


def _text(
    x: float, y: float, text: str, size: int = 10, anchor: str = "middle", fill: str = "#333"
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
        f'fill="{fill}" style="{FONT}">{escape(text)}</text>'
    )  # fmt: skip


def columns(
    title: str,
    labels: Sequence[str],
    values: Sequence[float | None],
    label_of: Callable[[float | None], str],
    width: int = 330,
    height: int = 150,
    highlight_last: bool = True,
    partial: Sequence[bool] = (),
) -> str:
    """A column chart from zero (one column per label, e.g. per week), the last one highlighted,
    the columns `partial` marks outlined and labelled."""
    top, bottom, left = 22, 26, 6
    plot_h = height - top - bottom
    present = [v for v in values if v is not None]
    peak = max(present, default=0) or 1
    step = (width - 2 * left) / max(len(values), 1)
    parts = [_text(left, 13, title, 11, "start", "#111")]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x = left + i * step
        centre = x + step / 2
        fill = COLOUR if highlight_last and i == len(values) - 1 else MUTED
        cut = i < len(partial) and partial[i]
        if value is not None:
            h = max(plot_h * max(value, 0) / peak, 1.0 if value else 0.0)
            y = top + plot_h - h
            paint = (
                f'fill="none" stroke="{fill}" stroke-dasharray="2,2"' if cut else f'fill="{fill}"'
            )
            parts.append(
                f'<rect x="{x + step * 0.15:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" '
                f'height="{h:.1f}" {paint}/>'
            )
            parts.append(_text(centre, y - 2, label_of(value), 7))
        if cut:
            parts.append(_text(centre, height - bottom + 19, "partial", 6, fill=MUTED))
        else:
            parts.append(_text(centre, top + plot_h - 2, "\u2013", 8, fill=MUTED))
        parts.append(_text(centre, height - bottom + 11, label, 7))
    parts.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - left}" y2="{top + plot_h}" '
        f'stroke="#bbb" stroke-width="0.5"/>'
    )
    return _svg(title, width, height, parts)


def bars(
    title: str,
    labels: Sequence[str],
    values: Sequence[float | None],
    label_of: Callable[[float | None], str],
    width: int = 520,
) -> str:
    """A horizontal bar chart (one bar per label, e.g. per service or lead-time stage)."""
    row, top, label_w = 16, 22, 170
    height = top + row * max(len(labels), 1) + 6
    plot_w = width - label_w - 70
    peak = max((v for v in values if v is not None), default=0) or 1
    parts = [_text(2, 13, title, 11, "start", "#111")]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = top + i * row
        shown = label if len(label) <= 28 else label[:27] + "…"
        parts.append(_text(label_w - 6, y + 11, shown, 9, "end"))
        w = plot_w * (value or 0) / peak
        if value:
            parts.append(
                f'<rect x="{label_w}" y="{y + 2}" width="{max(w, 1.0):.1f}" height="{row - 5}" '
                f'fill="{COLOUR}"/>'
            )
        parts.append(_text(label_w + w + 4, y + 11, label_of(value), 9, "start"))
    return _svg(title, width, height, parts)


def _svg(title: str, width: int, height: int, parts: list[str]) -> str:
    body = "".join(parts)
    return (
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>{body}</svg>'
    )
