"""The report of each core job's result (compress, distill, sensitivity, auto plan, compare,
deploy) as a `Report`: the figures the job measured, in tables and plots, with the machine
that measured them. Benchmarks and evaluations on a target are in targets/job_reports.py."""

from __future__ import annotations

from compressor_gui.core.compare import CompareResult
from compressor_gui.core.compress import CompressResult
from compressor_gui.core.deploy import CandidateRow, DeployResult
from compressor_gui.core.hardware import MachineInfo
from compressor_gui.core.report import Bars, Report, Scatter, Table
from compressor_gui.core.search import AutoPlanResult
from compressor_gui.core.sensitivity import SensitivityTable
from compressor_gui.core.summaries import Summary, compress_summary, layer_error_cells
from compressor_gui.formatting import MEASURED_COLUMNS

MAX_BARS = 20  # per-layer plots show the worst this many


def machine_facts(machine: MachineInfo | None, what: str = "machine") -> list[tuple[str, str]]:
    """The CPU, INT8 family and runtime versions a figure was measured with."""
    if machine is None:
        return []
    runtimes = ", ".join(f"{k} {v}" for k, v in sorted(machine.runtimes.items())) or "none read"
    return [
        (what, machine.summary),
        ("INT8 family", f"{machine.isa_class} ({', '.join(machine.isa) or 'no flags read'})"),
        ("runtime versions", runtimes),
    ]


def compress_report(result: CompressResult, kind: str = "compress") -> Report:
    """Before/after size, accuracy and latency, what was done per layer, the training curve."""
    before, after = result.before, result.after
    ratio = after.size_bytes / before.size_bytes
    summary = compress_summary(result, kind.capitalize())
    tables = [Table("Before and after", ("", "original", "compressed", "change"), _rows(summary))]
    if result.actions:
        tables.append(
            Table(
                "What was done per layer",
                ("layer", "op", "bits", "how", "simulated"),
                tuple(
                    (a.name, a.op_type, str(a.bits), a.method, "yes" if a.simulated else "")
                    for a in result.actions
                ),
            )
        )
    plots: list = [
        Bars("file size (MB)", ("original", "compressed"), _mb(before.size_bytes, after.size_bytes))
    ]
    if before.latency and after.latency:
        plots.append(
            Bars(
                "latency p50 (bar) and p90 (tick), ms",
                ("original", "compressed"),
                (before.latency.p50_ms, after.latency.p50_ms),
                (before.latency.p90_ms, after.latency.p90_ms),
            )
        )
    if result.distill is not None:
        tables.append(_distill_table(result.distill))
        plots.append(_distill_plot(result.distill))
    facts = [
        ("model", result.input_path.name),
        ("written to", str(result.output_path)),
        ("data", result.data_source),
        *machine_facts(result.measured_on, "measured on"),
    ]
    if result.target and result.target != result.measured_on:
        facts.append(("made for", result.target.summary))
    if result.int8_form:
        facts.append(("INT8 form", result.int8_form))
    headline = f"{result.input_path.name} -> {result.output_path.name}: {ratio:.3f}x the size"
    if before.eval and after.eval and before.eval.top1 is not None:
        headline += f", top-1 {_pct(before.eval.top1)} -> {_pct(after.eval.top1)}"
    elif after.eval and after.eval.cosine is not None:
        headline += f", output cosine {after.eval.cosine:.4f}"
    if before.latency and after.latency:
        headline += f", p50 {before.latency.p50_ms:.2f} -> {after.latency.p50_ms:.2f} ms"
    return Report(
        kind=kind,
        title=f"{kind.capitalize()} {result.input_path.name}",
        headline=headline,
        facts=tuple(facts),
        tables=tuple(tables),
        plots=tuple(plots),
        notes=(*result.steps, *(f"warning: {w}" for w in result.warnings)),
        data=result.to_dict(),
    )


def _rows(summary: Summary) -> tuple[tuple[str, str, str, str], ...]:
    """A summary's rows (the window's and the CLI's wording) as table rows."""
    return tuple((r.metric, r.original, r.compressed, r.change) for r in summary.rows)


def _distill_table(report) -> Table:
    classifier = report.classifier
    rows = tuple(
        (
            str(s.epoch),
            "" if s.train_loss is None else f"{s.train_loss:.4f}",
            f"{s.val_loss:.4f}",
            *(
                (_pct(s.val_top1), _pct(s.val_agreement))
                if classifier
                else (f"{s.val_cosine:.4f}",)
            ),
            "best" if s.epoch == report.best_epoch else "",
        )
        for s in report.history
    )
    best = {i for i, s in enumerate(report.history) if s.epoch == report.best_epoch}
    measures = ("val top-1", "agreement") if classifier else ("cosine to the original",)
    columns = ("epoch", "train loss", "val loss", *measures, "")
    return Table("Recovery training (validation: held-out training samples)", columns, rows, best)


def _distill_plot(report) -> Scatter:
    """Closeness to the original per epoch: agreement for a classifier, else output cosine."""
    points = tuple(
        (f"epoch {s.epoch}", float(s.epoch), s.val_agreement if report.classifier else s.val_cosine)
        for s in report.history
    )
    best = next((i for i, p in enumerate(points) if p[1] == report.best_epoch), None)
    if not report.classifier:
        return Scatter("output cosine to the original per epoch", points, highlight=best)
    return Scatter("agreement with the original per epoch", points, y_percent=True, highlight=best)


def sensitivity_report(table: SensitivityTable) -> Report:
    """Every layer x option: the metric's drop in points and the weights' SQNR."""
    metric = "top-1" if table.metric == "top1" else "top-1 agreement"
    rows = []
    worst: list[tuple[str, float]] = []
    for layer in table.layers:
        cells, drops = [layer], []
        for point in table.curve(layer):
            if point.drop is None:
                cells.append(f"({point.weight_sqnr_db:.0f} dB)")
            else:
                cells.append(f"{point.drop:.2f} ({point.weight_sqnr_db:.0f} dB)")
                drops.append(point.drop)
        rows.append(tuple(cells))
        if drops:
            worst.append((layer, max(drops)))
    worst.sort(key=lambda item: -item[1])
    shown = worst[:MAX_BARS]
    return Report(
        kind="sensitivity",
        title="Sensitivity per layer",
        headline=f"{len(table.layers)} layers x {len(table.options)} options; baseline "
        f"{metric} {_pct(table.baseline)}"
        + (f"; most sensitive: {worst[0][0]} ({worst[0][1]:.2f} pt)" if worst else ""),
        facts=(
            ("metric", metric),
            ("baseline", _pct(table.baseline)),
            ("INT8 form", table.int8_form or "simulated"),
        ),
        tables=(
            Table(
                f"{metric} drop in points (weight SQNR) per layer and option",
                ("layer", *table.options),
                tuple(rows),
            ),
        ),
        plots=(
            Bars(
                f"largest {metric} drop of any option, points (worst {len(shown)} layers)",
                tuple(name for name, _ in shown),
                tuple(drop for _, drop in shown),
            ),
        ),
        notes=(*table.notes, *((table.skipped,) if table.skipped else ())),
        data=table.to_dict(),
    )


def autoplan_report(result: AutoPlanResult, recipe: str = "") -> Report:
    """Every candidate plan: predicted and measured size and drop; the chosen one marked."""
    original = result.original_size_bytes
    metric = "top-1" if result.metric == "top1" else "top-1 agreement"
    chosen = result.candidates.index(result.chosen) if result.chosen in result.candidates else None
    rows = tuple(
        (
            c.label,
            str(c.predicted_size_bytes),
            f"{original / c.predicted_size_bytes:.2f}x",
            "" if c.measured_size_bytes is None else str(c.measured_size_bytes),
            f"{c.predicted_drop:.2f}",
            f"{c.measured_drop:.2f}",
            _pct(c.measured_value),
            c.verification,
        )
        for c in result.candidates
    )
    columns = ("plan", "pred. bytes", "ratio", "file bytes", "pred. drop", "meas. drop", metric)
    points = tuple(
        (c.label, original / c.predicted_size_bytes, c.measured_value) for c in result.candidates
    )
    best = result.chosen
    return Report(
        kind="autoplan",
        title="Auto plan",
        headline=f"chosen: {best.label}, {original / best.predicted_size_bytes:.2f}x smaller "
        f"(predicted), {metric} {_pct(best.measured_value)} ({-best.measured_drop:+.2f} pt "
        "measured)",
        facts=(
            ("original weights", f"{original} bytes"),
            ("baseline", f"{metric} {_pct(result.baseline)}"),
            *((("recipe", recipe),) if recipe else ()),
        ),
        tables=(Table("Candidates", (*columns, "check"), rows, frozenset({chosen} - {None})),),
        plots=(
            Scatter(
                f"measured {metric} against how many times smaller (predicted)",
                points,
                y_percent=True,
                highlight=chosen,
            ),
        ),
        notes=result.notes,
        data={
            "recipe": recipe,
            "chosen": best.label,
            "chosen_plan": best.plan.to_dict(),
            "baseline": result.baseline,
            "metric": result.metric,
            "original_size_bytes": original,
            "candidates": [dict(zip((*columns, "check"), row, strict=True)) for row in rows],
        },
    )


def compare_report(result: CompareResult) -> Report:
    """Each layer's output error against the original, worst first."""
    rows = tuple((*layer_error_cells(e), e.note) for e in result.layers)
    ranked = [e for e in result.layers if e.added_error is not None][:MAX_BARS]
    totals = [f"output SQNR {result.output_sqnr_db:.1f} dB"]
    if result.agreement_top1 is not None:
        totals.append(f"top-1 agreement {_pct(result.agreement_top1)}")
    if result.top1_original is not None and result.top1_compressed is not None:
        totals.insert(0, f"top-1 {_pct(result.top1_original)} -> {_pct(result.top1_compressed)}")
    data = "random inputs: fidelity only" if result.fidelity_only else result.data_source
    return Report(
        kind="compare",
        title=f"Where the accuracy went: {result.compressed_path}",
        headline="; ".join(totals),
        facts=(
            ("original", result.original_path),
            ("compressed", result.compressed_path),
            ("data", f"{result.samples} samples of {data}"),
            *machine_facts(result.measured_on, "measured on"),
        ),
        tables=(
            Table(
                "Per layer, worst first",
                ("layer", "op", "SQNR dB", "rel. error", "input", "added", "note"),
                rows,
            ),
        ),
        plots=(
            Bars(
                f"relative error each layer adds (worst {len(ranked)})",
                tuple(e.name for e in ranked),
                tuple(max(e.added_error, 0.0) for e in ranked),
            ),
        ),
        notes=result.notes,
        data=result.to_dict(),
    )


# --- deploy --------------------------------------------------------------------------------

DEPLOY_COLUMNS = (
    "form",
    "plan",
    *MEASURED_COLUMNS,
    "size",
    "SHA-256",
    "how / error",
)


def deploy_report(result: DeployResult, exported: str | None = None) -> Report:
    """The candidate table, latency bars and the quality-vs-latency plot of a deploy."""
    exported = exported or result.recommendation.key
    chosen = next(i for i, row in enumerate(result.rows) if row.key == result.recommendation.key)
    facts = [
        ("model", result.model_path.name),
        ("target", result.target),
        *machine_facts(result.machine),
        ("data", result.data_source),
        ("latency", result.measurement),
        ("budget", _budget_words(result)),
        ("exported form", result.row(exported).label),
    ]
    timed = [row for row in result.rows if row.p50_ms is not None]
    return Report(
        kind="deploy",
        title=f"Deploy {result.model_path.name} on {result.target}",
        headline=f"Recommended: {result.recommendation.reason}",
        facts=tuple(facts),
        tables=(
            Table(
                "Candidates, as the target measured them",
                DEPLOY_COLUMNS,
                tuple(_deploy_cells(row) for row in result.rows),
                frozenset({chosen}),
            ),
        ),
        plots=(
            Bars(
                "latency p50 (bar) and p90 (tick) in ms; orange: recommended",
                tuple(row.label for row in timed),
                tuple(row.p50_ms for row in timed),
                tuple(row.p90_ms for row in timed),
                _index(timed, result.recommendation.key),
            ),
            quality_plot(result.rows, result.recommendation.key),
        ),
        notes=result.notes,
        data={**result.to_dict(), "exported": exported},
    )


def quality_plot(rows: tuple[CandidateRow, ...], chosen: str) -> Scatter:
    """Quality (top-1, else output cosine) against p50 latency: the forms' Pareto view."""
    labelled = any(row.top1 is not None for row in rows)
    measured = [
        row
        for row in rows
        if row.p50_ms is not None and (row.top1 if labelled else row.cosine) is not None
    ]
    metric = "top-1" if labelled else "output cosine"
    return Scatter(
        f"{metric} against p50 latency (ms); orange: recommended",
        tuple((r.label, r.p50_ms, r.top1 if labelled else r.cosine) for r in measured),
        y_percent=labelled,
        highlight=_index(measured, chosen),
    )


def _deploy_cells(row: CandidateRow) -> tuple[str, ...]:
    digest = "; ".join(f"{name} {sha}" for name, sha in row.sha256.items())
    size = f"{row.size_bytes / 2**20:.2f} MiB"
    return (row.label, row.plan, *row.measured_cells, size, digest, row.error or row.note)


def _budget_words(result: DeployResult) -> str:
    budget = result.budget
    return (
        f"at most {budget.max_drop_pt:g} pt top-1 lost (labelled data), else output cosine "
        f">= {budget.min_cosine}; never slower than the original"
    )


def _index(rows, key: str) -> int | None:
    return next((i for i, row in enumerate(rows) if row.key == key), None)


def _mb(*sizes: int) -> tuple[float, ...]:
    return tuple(size / 1e6 for size in sizes)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"
