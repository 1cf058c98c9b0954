"""One report writer for every job: a `Report` (facts, tables, plots, notes, and the job's
result as data) becomes a self-contained HTML page, with the same content as JSON beside it.

The page has no script and loads nothing: plots are inline SVG, so it opens offline in any
browser and can be mailed as one file. Both files are written to temp names beside their
destination and renamed when complete.
"""

from __future__ import annotations

import datetime
import html
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compressor_gui.core.errors import CompressorError
from compressor_gui.core.model import atomic_write_text


@dataclass(frozen=True)
class Table:
    """Rows of text under column names; `highlight` rows are drawn in bold."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    highlight: frozenset[int] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "columns": list(self.columns),
            "rows": [list(row) for row in self.rows],
            "highlight": sorted(self.highlight),
        }


@dataclass(frozen=True)
class Bars:
    """Horizontal bars, one per label (e.g. p50 latency per form), an optional tick each."""

    caption: str
    labels: tuple[str, ...]
    values: tuple[float, ...]
    ticks: tuple[float | None, ...] = ()  # e.g. p90 beside a p50 bar
    highlight: int | None = None


@dataclass(frozen=True)
class Scatter:
    """Labelled points (e.g. quality against latency); `y_percent` shows fractions as %."""

    caption: str
    points: tuple[tuple[str, float, float], ...]  # label, x, y
    y_percent: bool = False
    highlight: int | None = None


Plot = Bars | Scatter


@dataclass(frozen=True)
class Report:
    """What a job measured, ready to be shown: `data` is its result as JSON-able data."""

    kind: str  # the job: compress, evaluate, bench, deploy, ...
    title: str
    headline: str  # the outcome in one line
    facts: tuple[tuple[str, str], ...] = ()
    tables: tuple[Table, ...] = ()
    plots: tuple[Plot, ...] = ()
    notes: tuple[str, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "title": self.title,
            "headline": self.headline,
            "facts": dict(self.facts),
            "tables": [table.to_dict() for table in self.tables],
            "notes": list(self.notes),
            "result": self.data,
        }


def report_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The HTML page and the JSON beside it (same name, .json)."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise CompressorError(f"--report wants a .html file name, not {path.name}")
    return path, path.with_suffix(".json")


def write_report(report: Report, path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write `report` as `path` (HTML) and its .json twin, each renamed into place."""
    page, data = report_paths(path)
    created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    payload = {**report.to_dict(), "created": created}
    try:
        atomic_write_text(data, json.dumps(payload, indent=2, default=_json_default))
        atomic_write_text(page, report_html(report, created))
    except OSError as exc:
        raise CompressorError(f"could not write the report {page}: {exc.strerror}") from exc
    return page, data


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


# --- HTML ----------------------------------------------------------------------------------


def report_html(report: Report, created: str = "") -> str:
    """One self-contained page: headline, facts, tables, plots (inline SVG), notes."""
    facts = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in report.facts)
    tables = "".join(table_html(table) for table in report.tables)
    plots = "".join(f"<div>{plot_svg(plot)}</div>" for plot in report.plots)
    notes = "".join(f"<li>{_e(note)}</li>" for note in report.notes)
    return _PAGE.format(
        title=_e(report.title),
        kind=_e(report.kind),
        headline=_e(report.headline),
        facts=f"<table class='facts'>{facts}</table>" if facts else "",
        tables=tables,
        plots=f"<h2>Plots</h2>{plots}" if plots else "",
        notes=f"<h2>Notes</h2><ul>{notes}</ul>" if notes else "",
        created=_e(created),
    )


def table_html(table: Table) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in table.columns)
    body = []
    for index, row in enumerate(table.rows):
        style = ' class="chosen"' if index in table.highlight else ""
        body.append(f"<tr{style}>" + "".join(_cell(c) for c in row) + "</tr>")
    title = f"<h2>{_e(table.title)}</h2>" if table.title else ""
    return f"{title}<table class='data'><tr>{head}</tr>{''.join(body)}</table>"


def _cell(text: str) -> str:
    """A cell; one holding a long unbroken word (a hash, a path) may break inside it, the
    others only between words, so numbers stay whole."""
    long = any(len(word) > 24 for word in str(text).split())
    return f"<td class='long'>{_e(text)}</td>" if long else f"<td>{_e(text)}</td>"


def _e(text: object) -> str:
    return html.escape(str(text))


# --- plots (inline SVG: no script, no network) ----------------------------------------------

_W, _BAR_H, _LEFT, _RIGHT = 640, 22, 190, 60
_CHOSEN, _OTHER = "#d9822b", "#4a7fb5"


def plot_svg(plot: Plot) -> str:
    return bars_svg(plot) if isinstance(plot, Bars) else scatter_svg(plot)


def bars_svg(plot: Bars) -> str:
    """Horizontal bars with their value written beside them and an optional tick each."""
    if not plot.values:
        return f"<p>{_e(plot.caption)}: nothing measured.</p>"
    ticks = plot.ticks or (None,) * len(plot.values)
    top = max([*plot.values, *(t for t in ticks if t is not None)]) or 1.0
    scale = (_W - _LEFT - _RIGHT) / top
    parts = [_svg_open(30 + _BAR_H * len(plot.values), plot.caption)]
    for index, (label, value, tick) in enumerate(zip(plot.labels, plot.values, ticks, strict=True)):
        y = 20 + index * _BAR_H
        width = max(value * scale, 1.0)
        fill = _CHOSEN if index == plot.highlight else _OTHER
        parts.append(
            f'<text x="{_LEFT - 6}" y="{y + 14}" text-anchor="end">{_e(label)}</text>'
            f'<rect class="datum" x="{_LEFT}" y="{y + 3}" width="{width:.1f}" '
            f'height="{_BAR_H - 6}" fill="{fill}"><title>{_e(label)}: {value:.4g}</title></rect>'
            f'<text x="{_LEFT + width + 4:.1f}" y="{y + 14}">{value:.3g}</text>'
        )
        if tick is not None:
            x = _LEFT + tick * scale
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y + 2}" y2="{y + _BAR_H - 2}" '
                'stroke="#333" stroke-width="2"/>'
            )
    return "".join(parts) + "</svg>"


def scatter_svg(plot: Scatter) -> str:
    """Points with axes and labels; the highlighted one in orange."""
    if not plot.points:
        return f"<p>{_e(plot.caption)}: nothing measured.</p>"
    height, plot_h, left = 300, 230, 70
    xs = [x for _, x, _ in plot.points]
    ys = [y for _, _, y in plot.points]
    x_max = (max(xs) or 1.0) * 1.1
    pad = max((max(ys) - min(ys)) * 0.15, 0.002)
    y_low, y_high = min(ys) - pad, max(ys) + pad

    def to_x(value: float) -> float:
        return left + value / x_max * (_W - left - 30)

    def to_y(value: float) -> float:
        return 20 + (y_high - value) / (y_high - y_low) * plot_h

    parts = [_svg_open(height, plot.caption)]
    parts.append(
        f'<line x1="{left}" x2="{left}" y1="20" y2="{20 + plot_h}" stroke="#333"/>'
        f'<line x1="{left}" x2="{_W - 30}" y1="{20 + plot_h}" y2="{20 + plot_h}" stroke="#333"/>'
    )
    for tick in np.linspace(y_low, y_high, 5):
        words = f"{100 * tick:.1f}%" if plot.y_percent else f"{tick:.4g}"
        parts.append(
            f'<text x="{left - 4}" y="{to_y(tick) + 4:.1f}" text-anchor="end">{words}</text>'
        )
    for tick in np.linspace(0, x_max, 5):
        parts.append(
            f'<text x="{to_x(tick):.1f}" y="{height - 24}" text-anchor="middle">{tick:.3g}</text>'
        )
    for index, (label, x_value, y_value) in enumerate(plot.points):
        fill = _CHOSEN if index == plot.highlight else _OTHER
        x, y = to_x(x_value), to_y(y_value)
        parts.append(
            f'<circle class="datum" cx="{x:.1f}" cy="{y:.1f}" r="6" fill="{fill}">'
            f"<title>{_e(label)}: {x_value:.4g}, {y_value:.4g}</title></circle>"
            f'<text x="{x + 8:.1f}" y="{y - 6:.1f}">{_e(label)}</text>'
        )
    return "".join(parts) + "</svg>"


def _svg_open(height: int, caption: str) -> str:
    return (
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{height}" '
        f'viewBox="0 0 {_W} {height}" font-family="sans-serif" font-size="11">'
        f'<text x="4" y="12" font-weight="bold">{_e(caption)}</text>'
    )


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.8em 0; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }}
table.data td.long {{ overflow-wrap: anywhere; min-width: 14em; }}
tr.chosen {{ background: #fbe3c8; font-weight: bold; }}
.headline {{ font-size: 16px; padding: 0.6em; background: #eef4fb; }}
.footer {{ color: #777; font-size: 11px; margin-top: 2em; }}
</style></head><body>
<h1>{title}</h1>
<p class="headline">{headline}</p>
{facts}
{tables}
{plots}
{notes}
<p class="footer">compressor-gui {kind} report, {created}; the same figures are in the .json
beside this file.</p>
</body></html>
"""
