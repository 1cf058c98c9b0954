"""Results as the user reads them: rows of (metric, original, compressed, change) and notes.

The window's Results table and the command line's tables are two renderings of the same
`Summary`, so both doors show the same figures with the same rounding. Nothing here measures:
it only words results the jobs computed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from compressor_gui.core.data import RANDOM_SOURCE
from compressor_gui.core.evaluate import EvalResult
from compressor_gui.core.hardware import MachineInfo
from compressor_gui.core.model import file_size_bytes
from compressor_gui.core.quant_passes import SIMULATED
from compressor_gui.formatting import aligned, human_bytes

if TYPE_CHECKING:
    from compressor_gui.core.compare import LayerError
    from compressor_gui.core.compress import CompressResult


@dataclass(frozen=True)
class Row:
    """One metric on both models, already worded; empty where a side was not measured."""

    metric: str
    original: str
    compressed: str
    change: str = ""


@dataclass(frozen=True)
class Summary:
    """One run as the user reads it: the table, per-layer lines, and notes (where it ran,
    on which data, what each step did, warnings)."""

    title: str
    model: str
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()  # "name: what was done to it", one per changed layer
    when: str = field(default_factory=lambda: time.strftime("%H:%M:%S"))

    def table_text(self, headers: tuple[str, ...] = ("before", "after")) -> str:
        """The rows as an aligned text table (the CLI's rendering); one header: one model,
        so only its column."""
        width = 1 + len(headers) + (len(headers) > 1)
        table = [("", *headers, "change")[:width]]
        table += [(r.metric, r.original, r.compressed, r.change)[:width] for r in self.rows]
        return "\n".join(aligned(table))


def change_text(kind: str, before: float | None, after: float | None) -> str:
    """Say which way a change went: "1.45x slower", "2.10x faster", "0.22x size", empty when
    either side is unknown or zero. `kind`: "time" (lower is better), "rate" (higher is
    better) or "size"."""
    if not before or not after:
        return ""
    ratio = after / before
    if kind == "size":
        return f"{ratio:.2f}x size"
    if round(ratio, 2) == 1:
        return "same"
    better = ratio < 1 if kind == "time" else ratio > 1
    factor = max(ratio, 1 / ratio)
    if kind == "time":
        return f"{factor:.2f}x {'faster' if better else 'slower'}"
    return f"{factor:.2f}x {'higher' if better else 'lower'}"


def percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}%"


def quality_rows(
    original: EvalResult | None, compressed: EvalResult | None, data_source: str
) -> list[Row]:
    """Accuracy where there are labels, fidelity of the compressed outputs against the
    original's. On random inputs only cosine and SQNR: agreement on noise means nothing."""
    rows = []
    for metric, name in (("top-1", "top1"), ("top-5", "top5")):
        before = getattr(original, name) if original else None
        if before is None:
            continue
        after = getattr(compressed, name) if compressed else None
        change = "" if after is None else f"{100 * (after - before):+.2f} pt"
        rows.append(Row(metric, percent(before), percent(after), change))
    if compressed is not None and compressed.cosine is not None:
        if compressed.agreement_top1 is not None and data_source != RANDOM_SOURCE:
            rows.append(
                Row("agreement with original", "100.00%", percent(compressed.agreement_top1))
            )
        rows.append(Row("output cosine", "1.0000", f"{compressed.cosine:.4f}"))
        rows.append(Row("output SQNR", "", f"{compressed.sqnr_db:.1f} dB"))
    return rows


def machine_note(prefix: str, machine: MachineInfo) -> str:
    return f"{prefix}: {machine.summary} · INT8 family {machine.isa_class}"


def compress_summary(result: CompressResult, title: str = "Compress") -> Summary:
    """Before/after size, quality and latency of a compress (or distill) run, what each step
    did, per-layer methods and the warnings."""
    before, after = result.before, result.after
    rows = [_size_row("size", before.size_bytes, after.size_bytes)]
    if before.deflated_size_bytes and after.deflated_size_bytes:
        rows.append(
            Row(
                "size deflated (zip)",
                human_bytes(before.deflated_size_bytes),
                human_bytes(after.deflated_size_bytes),
                f"{after.deflated_size_bytes / before.size_bytes:.2f}x",
            )
        )
    if result.sparse_format_size_bytes is not None:
        sparse = result.sparse_format_size_bytes
        rows.append(
            Row(
                "size in 2:4 sparse format",
                "",
                human_bytes(sparse),
                f"{sparse / before.size_bytes:.2f}x",
            )
        )
    if result.simulated:
        rows.append(Row("size if packed (predicted)", "", human_bytes(result.predicted_size_bytes)))
    if result.predicted_sparse_size_bytes < result.predicted_size_bytes:
        sparse = human_bytes(result.predicted_sparse_size_bytes)
        rows.append(Row("size if sparse-stored (predicted)", "", sparse))
    rows += quality_rows(before.eval, after.eval, result.data_source)
    if before.latency and after.latency:
        b, a = before.latency, after.latency
        rows.append(
            Row(
                f"latency p50 ({a.threads} threads)",
                _ms(b.p50_ms),
                _ms(a.p50_ms),
                change_text("time", b.p50_ms, a.p50_ms),
            )
        )
        rows.append(Row("latency p90", _ms(b.p90_ms), _ms(a.p90_ms)))
    notes = [f"written to {result.output_path}", f"data: {result.data_source}"]
    if result.measured_on:
        notes.append(f"measured on: {result.measured_on.summary}")
    if result.target and result.target != result.measured_on:
        notes.append(f"made for: {result.target.summary}")
    notes += result.steps
    if result.distill is not None:
        notes += distill_lines(result.distill)
    notes += [f"warning: {w}" for w in result.warnings]
    layers = tuple(
        f"{a.name}: {a.method}" + (f"  [{SIMULATED}]" if a.simulated else "")
        for a in result.actions
    )
    return Summary(title, result.input_path.name, tuple(rows), tuple(notes), layers)


def distill_lines(report: Any) -> list[str]:
    """The training curve as an aligned table (validation = a part of the training data)."""
    measures = ("val top-1", "agreement") if report.classifier else ("cosine",)
    table = [("epoch", "train loss", "val loss", *measures, "")]
    for stats in report.history:
        cells = (
            (percent(stats.val_top1) or "n/a", percent(stats.val_agreement) or "n/a")
            if report.classifier
            else (f"{stats.val_cosine:.4f}",)
        )
        table.append(
            (
                str(stats.epoch),
                "-" if stats.train_loss is None else f"{stats.train_loss:.4f}",
                f"{stats.val_loss:.4f}",
                *cells,
                "best" if stats.epoch == report.best_epoch else "",
            )
        )
    teacher = (
        f"; the teacher scores {percent(report.teacher_val_top1)} there"
        if report.teacher_val_top1 is not None
        else ""
    )
    lines = [
        f"distillation ({report.validation_samples} training samples held out for "
        f"validation{teacher}):"
    ]
    if not report.classifier:
        lines.append(
            f"  not a classifier: every output ({', '.join(report.dense_outputs)}) trained "
            "towards the teacher's, scored by the output cosine to the original"
        )
    lines += aligned(table, indent="  ")
    lines += [f"  QAT: {q.name}: {q.simulated}" for q in report.qat_layers]
    return lines


def evaluation_summary(evaluation: Any, model: str) -> Summary:
    """Accuracy of the original (and fidelity of the compressed model) as a target computed
    them (`evaluation`: a targets.evaluate.TargetEvaluation)."""
    results = list(evaluation.results.values())
    original = results[0]
    compressed = results[1] if len(results) > 1 else None
    rows = [
        Row("samples", str(original.samples), ""),
        *quality_rows(original, compressed, evaluation.data_source),
    ]
    notes = [
        machine_note(f"ran on {evaluation.target}", evaluation.machine),
        f"runtime: {evaluation.runtime}",
        f"data: {evaluation.data_source}",
    ]
    if compressed is None:
        notes.append("no compressed model yet: Compress first to compare")
    return Summary(f"Evaluate on {evaluation.target}", model, tuple(rows), tuple(notes))


_BENCH_METRICS: tuple[tuple[str, str, Callable[[Any], float], Callable[[float], str]], ...] = (
    ("latency p50", "time", lambda r: r.latency.p50_ms, lambda v: _ms(v)),
    ("latency p99", "time", lambda r: r.latency.p99_ms, lambda v: _ms(v)),
    ("throughput", "rate", lambda r: r.throughput_per_s, lambda v: f"{v:.0f} /s"),
    ("file size", "size", lambda r: file_size_bytes(r.model_path), human_bytes),
)


def bench_summary(
    label: str, model: str, results: Mapping[str, Any], machine: MachineInfo
) -> Summary:
    """Latency, throughput and file size of the original and compressed model on one target
    (`results`: label -> targets.base.BenchResult)."""
    original, compressed = results.get("original"), results.get("compressed")
    rows = []
    for metric, kind, value, text in _BENCH_METRICS:
        before = value(original) if original else None
        after = value(compressed) if compressed else None
        rows.append(
            Row(
                metric,
                "" if before is None else text(before),
                "" if after is None else text(after),
                change_text(kind, before, after),
            )
        )
    notes = [machine_note("ran on", machine)]
    notes += [f"{name}: {note}" for name, r in results.items() for note in r.notes]
    return Summary(f"Benchmark ({label})", model, tuple(rows), tuple(notes))


def _size_row(metric: str, before: int, after: int) -> Row:
    return Row(metric, human_bytes(before), human_bytes(after), change_text("size", before, after))


def _ms(value: float) -> str:
    return f"{value:.3f} ms"


def layer_error_cells(error: LayerError, missing: str = "") -> tuple[str, ...]:
    """One layer's output error as the CLI table and the report show it: name, op, SQNR dB,
    relative error, its input's, the error it adds; `missing` where nothing was measured."""

    def number(value: float | None, spec: str) -> str:
        return missing if value is None else format(value, spec)

    return (
        error.name,
        error.op_type,
        number(error.sqnr_db, ".1f"),
        number(error.relative_error, ".4f"),
        number(error.input_relative_error, ".4f"),
        number(error.added_error, "+.4f"),
    )
