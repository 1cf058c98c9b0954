"""Reports of what ran on a target (benchmarks, sweeps, evaluations), and `report_for`: the
report of any job's result, for the GUI's File > Save report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from compressor_gui.core.compare import CompareResult
from compressor_gui.core.compress import CompressResult
from compressor_gui.core.deploy import DeployResult
from compressor_gui.core.hardware import MachineInfo
from compressor_gui.core.job_reports import (
    autoplan_report,
    compare_report,
    compress_report,
    deploy_report,
    machine_facts,
    sensitivity_report,
)
from compressor_gui.core.report import Bars, Report, Scatter, Table
from compressor_gui.core.search import AutoPlanResult
from compressor_gui.core.sensitivity import SensitivityTable
from compressor_gui.core.summaries import evaluation_summary
from compressor_gui.targets.base import BenchResult
from compressor_gui.targets.evaluate import TargetEvaluation
from compressor_gui.targets.fanout import COLUMNS as FANOUT_COLUMNS
from compressor_gui.targets.fanout import FanoutRow

BENCH_COLUMNS = (
    "model",
    "runtime",
    "device",
    "precision",
    "batch",
    "threads",
    "runs",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "mean ms",
    "per s",
)


def _bench_cells(result: BenchResult) -> tuple[str, ...]:
    lat = result.latency
    return (
        Path(result.model_path).name,
        f"{result.runtime} {result.runtime_version}".strip(),
        result.device,
        result.precision,
        str(result.batch_size),
        str(result.threads or "default"),
        str(result.runs),
        f"{lat.p50_ms:.3f}",
        f"{lat.p90_ms:.3f}",
        f"{lat.p99_ms:.3f}",
        f"{lat.mean_ms:.3f}",
        f"{result.throughput_per_s:.1f}",
    )


def bench_report(results: Mapping[str, BenchResult], machine: MachineInfo) -> Report:
    """Latency of each named run (e.g. original and compressed, or one per batch size)."""
    names = list(results)
    rows = tuple(_bench_cells(results[name]) for name in names)
    first = results[names[0]]
    headline = "; ".join(
        f"{name}: p50 {r.latency.p50_ms:.3f} ms, {r.throughput_per_s:.1f}/s"
        for name, r in results.items()
    )
    notes = tuple(f"{name}: {note}" for name, r in results.items() for note in r.notes)
    return Report(
        kind="bench",
        title=f"Benchmark on {first.target}",
        headline=headline,
        facts=(("target", first.target), *machine_facts(machine)),
        tables=(
            Table(
                "Latency",
                ("run", *BENCH_COLUMNS),
                tuple((n, *r) for n, r in zip(names, rows, strict=True)),
            ),
        ),
        plots=(_latency_bars(names, list(results.values())),),
        notes=notes,
        data={
            "results": {name: r.to_dict() for name, r in results.items()},
            "machine": machine.to_dict(),
        },
    )


def sweep_report(
    rows: Sequence[tuple[BenchResult, Mapping[str, float | None]]], machine: MachineInfo
) -> Report:
    """Every runtime x precision timed, with its fidelity to onnxruntime FP32 (fastest first)."""
    labels = [f"{r.runtime} {r.device} {r.precision}" for r, _ in rows]
    table_rows = []
    for result, fid in rows:
        agree, cosine, accuracy = fid.get("top1_agreement"), fid.get("cosine"), fid.get("accuracy")
        table_rows.append(
            (
                *_bench_cells(result)[1:],
                "" if agree is None else f"{agree:.1%}",
                "" if cosine is None else f"{cosine:.5f}",
                "" if accuracy is None else f"{accuracy:.1%}",
            )
        )
    fastest = rows[0][0]
    with_cosine = [
        (label, r.latency.p50_ms, fid["cosine"])
        for label, (r, fid) in zip(labels, rows, strict=True)
        if fid.get("cosine") is not None
    ]
    return Report(
        kind="bench",
        title=f"Benchmark sweep of {Path(fastest.model_path).name} on {fastest.target}",
        headline=f"fastest: {labels[0]}, p50 {fastest.latency.p50_ms:.3f} ms",
        facts=(("target", fastest.target), *machine_facts(machine)),
        tables=(
            Table(
                "Every runtime x precision, fastest first (fidelity vs onnxruntime CPU FP32)",
                (*BENCH_COLUMNS[1:], "top-1 agree", "cosine", "accuracy"),
                tuple(table_rows),
                frozenset({0}),
            ),
        ),
        plots=(
            _latency_bars(labels, [r for r, _ in rows], highlight=0),
            Scatter("output cosine against p50 latency (ms)", tuple(with_cosine), highlight=0),
        ),
        data={
            "results": [{**r.to_dict(), **fid} for r, fid in rows],
            "machine": machine.to_dict(),
        },
    )


def fanout_report(rows: Sequence[FanoutRow]) -> Report:
    """One benchmark on several targets at once: a row per target and model, failures with
    their reason."""
    timed = [row for row in rows if row.result is not None]
    labels = [f"{row.target}: {row.model}" for row in timed]
    failed = len(rows) - len(timed)
    fastest = min(timed, key=lambda row: row.result.latency.p50_ms, default=None)
    headline = f"{len(timed)} of {len(rows)} runs timed"
    if fastest is not None:
        headline += (
            f"; fastest: {fastest.target} ({fastest.model}), p50 "
            f"{fastest.result.latency.p50_ms:.3f} ms"
        )
    return Report(
        kind="bench",
        title=f"Benchmark on {len({row.target for row in rows})} targets",
        headline=headline + (f"; {failed} failed" if failed else ""),
        tables=(Table("Every target", FANOUT_COLUMNS, tuple(row.cells() for row in rows)),),
        plots=(_latency_bars(labels, [row.result for row in timed]),),
        data={"rows": [row.to_dict() for row in rows]},
    )


def _latency_bars(labels, results: Sequence[BenchResult], highlight: int | None = None) -> Bars:
    return Bars(
        "latency p50 (bar) and p90 (tick), ms",
        tuple(labels),
        tuple(r.latency.p50_ms for r in results),
        tuple(r.latency.p90_ms for r in results),
        highlight,
    )


def evaluation_report(evaluation: TargetEvaluation, names: Sequence[str] = ()) -> Report:
    """Accuracy of each model and fidelity of the second to the first, and where it ran."""
    results = list(evaluation.results.values())
    labels = list(names) or list(evaluation.results)
    compared = results[1] if len(results) > 1 else None
    summary = evaluation_summary(evaluation, labels[0])
    rows = [(r.metric, r.original, r.compressed, r.change) for r in summary.rows]
    columns = ("", *labels[: len(results)], "change") if compared else ("", labels[0])
    rows = [row if compared else row[:2] for row in rows]
    top1 = [r.top1 for r in results]
    plots: tuple[Bars, ...] = ()
    if all(t is not None for t in top1):
        plots = (Bars("top-1 (%)", tuple(labels[: len(results)]), tuple(100 * t for t in top1)),)
        headline = ", ".join(
            f"{label} top-1 {100 * t:.2f}%" for label, t in zip(labels, top1, strict=False)
        )
    elif compared is not None and compared.cosine is not None:
        headline = f"output cosine {compared.cosine:.4f} against the original"
    else:
        headline = f"{results[0].samples} samples run"
    return Report(
        kind="evaluate",
        title=f"Evaluate on {evaluation.target}",
        headline=headline,
        facts=(
            ("target", evaluation.target),
            *machine_facts(evaluation.machine, "ran on"),
            ("runtime", evaluation.runtime),
            ("data", evaluation.data_source),
        ),
        tables=(Table("Accuracy and fidelity", columns, tuple(rows)),),
        plots=plots,
        data=evaluation.to_dict(),
    )


def report_for(result: Any) -> Report | None:
    """The report of a job's result as the GUI's jobs return them; None for results that
    are not a measurement (a global prune's ratios, an opened model)."""
    if isinstance(result, tuple) and result and isinstance(result[0], DeployResult):
        result = result[0]  # the Deploy tab's (result, sample)
    if isinstance(result, list) and result and all(isinstance(r, FanoutRow) for r in result):
        return fanout_report(result)
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], MachineInfo):
        return bench_report(result[0], result[1]) if result[0] else None
    builders = {
        CompressResult: lambda r: compress_report(r, "distill" if r.distill else "compress"),
        TargetEvaluation: evaluation_report,
        SensitivityTable: sensitivity_report,
        AutoPlanResult: autoplan_report,
        CompareResult: compare_report,
        DeployResult: deploy_report,
    }
    for kind, build in builders.items():
        if isinstance(result, kind):
            return build(result)
    return None
