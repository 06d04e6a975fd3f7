"""Plain-text tables and the short forms of times and durations the command line prints."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime


def table(header: Sequence[str], rows: Sequence[Sequence[object]], *, right: Sequence[str] = ()) -> str:
    """Columns as wide as their widest cell, two spaces apart; the ``right`` ones right-aligned.

    ``None`` prints as ``-``; trailing spaces are trimmed, so the last column may run long.
    """
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(header)]
    aligned = {i for i, name in enumerate(header) if name in right}
    lines = []
    for row in [list(header), *cells]:
        parts = [
            value.rjust(width) if i in aligned else value.ljust(width)
            for i, (value, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def pairs(rows: Sequence[tuple[str, object]]) -> str:
    """``name: value`` lines with the values lined up."""
    width = max((len(name) for name, _ in rows), default=0)
    return "\n".join(f"{name + ':':<{width + 1}}  {_cell(value)}" for name, value in rows)


def age(then: str | None, now: datetime) -> str | None:
    """How long before ``now`` an ISO 8601 time was, in its largest unit: ``42s``, ``7m``, ``3h``, ``2d``."""
    if not then:
        return None
    seconds = max(0.0, (now - datetime.fromisoformat(then)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def span(start: str | None, end: str | None) -> str | None:
    """The time from one ISO 8601 time to another, as :func:`duration` prints it."""
    if not start or not end:
        return None
    return duration((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())


def duration(seconds: float | None) -> str | None:
    """``850µs``, ``1.2ms``, ``37ms``, ``4.20s`` or ``3m05s``: two or three figures, whatever the size."""
    if seconds is None:
        return None
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f}µs"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def clip(text: str | None, width: int) -> str | None:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    if text is None:
        return None
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
