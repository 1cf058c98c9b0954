"""Human-readable numbers for tables, totals and charts (one place, one style)."""

from __future__ import annotations


def human_bytes(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} GB"


def human_count(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f}"


def human_seconds(s: float | None) -> str:
    if s is None:
        return "--"
    if s < 60:
        return f"{s:.0f} s"
    return f"{int(s // 60)} min {int(s % 60):02d} s"


MEASURED_COLUMNS = ("p50 ms", "p90 ms", "p99 ms", "per s", "power W", "top-1", "cosine")


def measured_cells(
    p50_ms: float | None,
    p90_ms: float | None,
    p99_ms: float | None,
    per_s: float | None,
    power_mw: float | None,
    top1: float | None,
    cosine: float | None,
) -> tuple[str, ...]:
    """A measured form's figures under MEASURED_COLUMNS, as every comparison table shows them
    (Deploy's candidates and the benchmark fan-out, in the CLI, the window and the reports);
    "" where not measured."""
    return (
        _text(p50_ms, ".3f"),
        _text(p90_ms, ".3f"),
        _text(p99_ms, ".3f"),
        _text(per_s, ".1f"),
        _text(None if power_mw is None else power_mw / 1000, ".2f"),
        "" if top1 is None else f"{100 * top1:.2f}%",
        _text(cosine, ".4f"),
    )


def aligned(table: list[tuple[str, ...]], rule: bool = False, indent: str = "") -> list[str]:
    """Rows of cells as left-aligned columns of text (the CLI's tables); `rule` puts a line
    of dashes under the first row."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [
        indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table
    ]
    if rule:
        lines.insert(1, indent + "  ".join("-" * w for w in widths))
    return [line.rstrip() for line in lines]


def _text(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)
