"""The deployment folder and its report: the chosen form in its runtime's format, the recipe,
a run script that works with the folder's files, and a self-contained report (HTML with the
plots as inline SVG, and JSON) of every candidate the target measured.

The folder is built in a temp folder beside its destination and renamed into place, so a
folder that exists is always complete.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from compressor_gui.core.data import Dataset, save_npz
from compressor_gui.core.deploy import CandidateRow, DeployResult, copy_form
from compressor_gui.core.errors import CompressorError
from compressor_gui.core.plan import save_recipe
from compressor_gui.core.run_snippets import snippet

REPORT_HTML, REPORT_JSON, RECIPE, SAMPLE = (
    "report.html",
    "report.json",
    "recipe.json",
    "sample_input.npz",
)


def write_deployment(
    result: DeployResult, folder: str | os.PathLike[str], sample: Dataset, key: str | None = None
) -> Path:
    """Write the form `key` (default: the recommended one) with everything needed to run it
    into `folder`, replacing a previous deployment there as one rename."""
    key = key or result.recommendation.key
    form = result.form(key)
    if form.path is None or not form.path.exists():
        raise CompressorError(f"{form.spec.label} has no files to export: {form.error or 'gone'}")
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    staging.chmod(0o755)  # mkdtemp's 0700 is for scratch, not for a folder to ship
    try:
        copy_form(form.path, staging)
        save_recipe(result.plan, staging / RECIPE)
        save_npz(staging / SAMPLE, next(sample.batches(1)))
        name, text = snippet(form.spec.runtime, form.spec.precision, form.spec.device)
        (staging / name).write_text(text, encoding="utf-8")
        data = {**result.to_dict(), "exported": key, "run_script": name}
        (staging / REPORT_JSON).write_text(json.dumps(data, indent=2), encoding="utf-8")
        (staging / REPORT_HTML).write_text(report_html(result, key), encoding="utf-8")
        _replace_folder(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _replace_folder(new: Path, folder: Path) -> None:
    """Move `new` onto `folder`; an old folder is moved aside first and removed after."""
    old = None
    if folder.exists():
        if not folder.is_dir():
            raise CompressorError(f"{folder} exists and is not a folder: choose another -o")
        old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.old."))
        os.replace(folder, old / folder.name)
    os.replace(new, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- the HTML report -----------------------------------------------------------------------


def report_html(result: DeployResult, exported: str | None = None) -> str:
    """One self-contained page: target, runtimes, recommendation, the table and two plots."""
    exported = exported or result.recommendation.key
    machine = result.machine
    runtimes = ", ".join(f"{k} {v}" for k, v in sorted(machine.runtimes.items())) or "none read"
    facts = [
        ("model", result.model_path.name),
        ("target", result.target),
        ("machine", machine.summary),
        ("INT8 family", f"{machine.isa_class} ({', '.join(machine.isa) or 'no flags read'})"),
        ("runtime versions", runtimes),
        ("data", result.data_source),
        ("latency", result.measurement),
        ("budget", _budget_words(result)),
        ("exported form", result.row(exported).label),
    ]
    facts_html = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    notes = "".join(f"<li>{_e(note)}</li>" for note in result.notes)
    return _PAGE.format(
        title=_e(f"Deploy {result.model_path.name} on {result.target}"),
        recommendation=_e(result.recommendation.reason),
        facts=facts_html,
        table=_table(result.rows, result.recommendation.key),
        latency_plot=latency_svg(result.rows, result.recommendation.key),
        quality_plot=quality_svg(result.rows, result.recommendation.key),
        notes=f"<ul>{notes}</ul>" if notes else "",
    )


def _budget_words(result: DeployResult) -> str:
    budget = result.budget
    return (
        f"at most {budget.max_drop_pt:g} pt top-1 lost (labelled data), else output cosine "
        f">= {budget.min_cosine}; never slower than the original"
    )


_COLUMNS = (
    "form",
    "plan",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "per s",
    "power mW",
    "top-1",
    "cosine",
    "size",
    "SHA-256",
    "how / error",
)


def _table(rows: Sequence[CandidateRow], chosen: str) -> str:
    head = "".join(f"<th>{c}</th>" for c in _COLUMNS)
    body = []
    for row in rows:
        digest = "; ".join(f"{name} {sha}" for name, sha in row.sha256.items())
        cells = (
            row.label,
            row.plan,
            *row.measured_cells[:4],
            _num(row.power_mw, ".0f"),
            *row.measured_cells[4:],
            f"{row.size_bytes / 2**20:.2f} MiB",
            digest,
            row.error or row.note,
        )
        style = ' class="chosen"' if row.key == chosen else ""
        body.append(f"<tr{style}>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    return f"<table class='candidates'><tr>{head}</tr>{''.join(body)}</table>"


def _num(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _e(text: object) -> str:
    return html.escape(str(text))


# --- plots (inline SVG: no script, no network, drawn by any browser) ------------------------

_W, _BAR_H, _LEFT, _RIGHT = 640, 22, 190, 60


def latency_svg(rows: Sequence[CandidateRow], chosen: str) -> str:
    """Horizontal bars of p50 latency per form, with a tick at p90."""
    timed = [row for row in rows if row.p50_ms is not None]
    if not timed:
        return "<p>No form could be timed.</p>"
    top = max(row.p90_ms or row.p50_ms for row in timed)
    scale = (_W - _LEFT - _RIGHT) / top
    height = 30 + _BAR_H * len(timed)
    parts = [_svg_open(height, "latency p50 (bar) and p90 (tick) in ms")]
    for index, row in enumerate(timed):
        y = 20 + index * _BAR_H
        width = max(row.p50_ms * scale, 1.0)
        fill = "#d9822b" if row.key == chosen else "#4a7fb5"
        parts.append(
            f'<text x="{_LEFT - 6}" y="{y + 14}" text-anchor="end">{_e(row.label)}</text>'
            f'<rect class="datum" x="{_LEFT}" y="{y + 3}" width="{width:.1f}" '
            f'height="{_BAR_H - 6}" fill="{fill}"><title>{_e(row.label)}: p50 '
            f"{row.p50_ms:.3f} ms</title></rect>"
            f'<text x="{_LEFT + width + 4:.1f}" y="{y + 14}">{row.p50_ms:.3g}</text>'
        )
        if row.p90_ms is not None:
            x = _LEFT + row.p90_ms * scale
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y + 2}" y2="{y + _BAR_H - 2}" '
                'stroke="#333" stroke-width="2"/>'
            )
    return "".join(parts) + "</svg>"


def quality_svg(rows: Sequence[CandidateRow], chosen: str) -> str:
    """Quality (top-1, else cosine) against p50 latency: the Pareto view of the forms."""
    labelled = any(row.top1 is not None for row in rows)
    points = [
        (row, row.top1 if labelled else row.cosine)
        for row in rows
        if row.p50_ms is not None and (row.top1 if labelled else row.cosine) is not None
    ]
    if not points:
        return "<p>No form has both a latency and a measured quality.</p>"
    metric = "top-1" if labelled else "output cosine"
    height, plot_h, left = 300, 230, 70
    xs = [row.p50_ms for row, _ in points]
    ys = [value for _, value in points]
    x_max = max(xs) * 1.1
    y_low, y_high = min(ys), max(ys)
    pad = max((y_high - y_low) * 0.15, 0.002)
    y_low, y_high = y_low - pad, y_high + pad

    def to_x(value: float) -> float:
        return left + value / x_max * (_W - left - 30)

    def to_y(value: float) -> float:
        return 20 + (y_high - value) / (y_high - y_low) * plot_h

    parts = [_svg_open(height, f"{metric} against p50 latency (ms); orange: recommended")]
    parts.append(
        f'<line x1="{left}" x2="{left}" y1="20" y2="{20 + plot_h}" stroke="#333"/>'
        f'<line x1="{left}" x2="{_W - 30}" y1="{20 + plot_h}" y2="{20 + plot_h}" stroke="#333"/>'
    )
    for tick in np.linspace(y_low, y_high, 5):
        words = f"{100 * tick:.1f}%" if labelled else f"{tick:.4f}"
        parts.append(
            f'<text x="{left - 4}" y="{to_y(tick) + 4:.1f}" text-anchor="end">{words}</text>'
        )
    for tick in np.linspace(0, x_max, 5):
        parts.append(
            f'<text x="{to_x(tick):.1f}" y="{height - 24}" text-anchor="middle">{tick:.3g}</text>'
        )
    for row, value in points:
        fill = "#d9822b" if row.key == chosen else "#4a7fb5"
        x, y = to_x(row.p50_ms), to_y(value)
        parts.append(
            f'<circle class="datum" cx="{x:.1f}" cy="{y:.1f}" r="6" fill="{fill}">'
            f"<title>{_e(row.label)}: {row.p50_ms:.3f} ms, {metric} {value:.4f}</title></circle>"
            f'<text x="{x + 8:.1f}" y="{y - 6:.1f}">{_e(row.label)}</text>'
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
table.candidates td {{ max-width: 28em; word-break: break-all; }}
tr.chosen {{ background: #fbe3c8; font-weight: bold; }}
.recommendation {{ font-size: 16px; padding: 0.6em; background: #eef4fb; }}
</style></head><body>
<h1>{title}</h1>
<p class="recommendation">Recommended: {recommendation}</p>
<table>{facts}</table>
<h2>Candidates, as the target measured them</h2>
{table}
<h2>Plots</h2>
<div>{latency_plot}</div>
<div>{quality_plot}</div>
{notes}
</body></html>
"""
