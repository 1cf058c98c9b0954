"""The one report writer: both files renamed into place and nothing else left behind, names
that are not .html refused, plots without ticks drawn, and which job results have a report."""

from __future__ import annotations

from pathlib import Path

import pytest

from compressor_gui.core.errors import CompressorError
from compressor_gui.core.hardware import local_machine
from compressor_gui.core.latency import LatencyStats
from compressor_gui.core.report import Bars, Report, Table, write_report
from compressor_gui.targets.base import BenchResult
from compressor_gui.targets.job_reports import report_for
from tests.report_pages import opened


def _bench(p50: float) -> BenchResult:
    latency = LatencyStats(p50, p50 * 1.2, p50 * 1.5, p50, p50 * 0.9, p50 * 2, runs=10, threads=2)
    return BenchResult("local", "ort", "CPU", "fp32", "m.onnx", 1, latency, 1000 / p50)


def test_the_page_and_its_json_are_written_complete_and_nothing_else(tmp_path: Path) -> None:
    report = Report(
        "bench",
        "t",
        "headline",
        tables=(Table("x", ("a", "b"), (("1", "2"),)),),
        plots=(Bars("bars without ticks", ("one", "two"), (1.0, 3.0)),),
        data={"path": tmp_path},
    )
    page, data = write_report(report, tmp_path / "sub" / "out.html")
    assert sorted(p.name for p in page.parent.iterdir()) == ["out.html", "out.json"]
    parsed, written = opened(page)
    assert parsed.marks == 2 and {"1", "2"} <= set(parsed.cells)
    assert written["result"] == {"path": str(tmp_path)} and written["headline"] == "headline"
    with pytest.raises(CompressorError, match=r"\.html"):
        write_report(report, tmp_path / "out.txt")


def test_the_gui_jobs_results_that_measure_something_have_a_report() -> None:
    machine = local_machine()
    bench = report_for(({"original": _bench(2.0), "compressed": _bench(1.0)}, machine))
    assert bench.kind == "bench" and len(bench.tables[0].rows) == 2
    assert "compressed: p50 1.000 ms" in bench.headline
    assert report_for({"/fc/Gemm": 0.5}) is None  # a global prune's ratios
    assert report_for(({}, machine)) is None  # a benchmark that timed nothing
