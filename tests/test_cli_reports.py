"""`--report out.html` on every job verb, run on the demo as a user runs them: each report is
opened (HTML parsed, JSON read) and must show the figures the same run printed as --json."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from compressor_gui.cli import main
from compressor_gui.formatting import human_bytes
from tests.report_pages import opened

REPO = Path(__file__).resolve().parents[1]
DEMO = str(REPO / "resources" / "demo.onnx")


def _run(capsys, *argv: str) -> dict:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    return json.loads(captured.out)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reports")


@pytest.fixture(scope="module")
def compressed(work) -> tuple[Path, dict]:
    """The demo compressed to INT8, with its report (stdout JSON kept to compare)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # module scope has no capsys
        code = main(
            [
                "compress",
                DEMO,
                "--int8",
                "--no-latency",
                "-o",
                str(work / "demo_int8.onnx"),
                "--json",
                "--report",
                str(work / "compress.html"),
            ]
        )
    assert code == 0
    return work / "demo_int8.onnx", json.loads(printed.getvalue())


def test_compress_report_shows_the_measured_sizes_and_accuracy(compressed, work) -> None:
    model, printed = compressed
    page, data = opened(work / "compress.html")
    after = printed["after"]
    assert after["size_bytes"] == model.stat().st_size
    assert data["result"]["after"]["size_bytes"] == after["size_bytes"]
    assert human_bytes(after["size_bytes"]) in page.cells
    assert f"{100 * after['eval']['top1']:.2f}%" in page.cells
    assert page.marks == 2  # size bars, original and compressed
    assert data["kind"] == "compress" and data["created"]


def test_evaluate_report_shows_both_models_top1(compressed, work, capsys) -> None:
    model, _ = compressed
    page_path = work / "evaluate.html"
    printed = _run(capsys, "evaluate", DEMO, str(model), "--json", "--report", str(page_path))
    page, data = opened(page_path)
    for result in printed["results"].values():
        assert f"{100 * result['top1']:.2f}%" in page.cells
    assert data["result"]["results"] == printed["results"]
    assert printed["machine_summary"] in page.cells


def test_bench_report_shows_the_latency_percentiles(compressed, work, capsys) -> None:
    model, _ = compressed
    page_path = work / "bench.html"
    printed = _run(
        capsys, "bench", str(model), "--runs", "20", "--warmup", "2", "--json",
        "--report", str(page_path),
    )  # fmt: skip
    page, data = opened(page_path)
    for name in ("p50_ms", "p90_ms", "p99_ms"):
        assert f"{printed['latency'][name]:.3f}" in page.cells
    assert page.marks == 1
    assert data["result"]["machine"]["isa_class"] == printed["machine"]["isa_class"]


def test_sensitivity_report_shows_every_layers_drop(work, capsys) -> None:
    page_path = work / "sensitivity.html"
    printed = _run(
        capsys, "sensitivity", DEMO, "--options", "int8", "--samples", "64", "--workers", "1",
        "--json", "--report", str(page_path),
    )  # fmt: skip
    page, _ = opened(page_path)
    for point in printed["points"]:
        assert point["layer"] in page.cells
        assert f"{point['drop']:.2f} ({point['weight_sqnr_db']:.0f} dB)" in page.cells


def test_autoplan_report_marks_the_chosen_plan(work, capsys) -> None:
    page_path = work / "autoplan.html"
    printed = _run(
        capsys, "autoplan", DEMO, "--size-ratio", "3", "--verify", "simulated", "--samples",
        "64", "--workers", "1", "-o", str(work / "plan.yaml"), "--json",
        "--report", str(page_path),
    )  # fmt: skip
    page, data = opened(page_path)
    chosen = printed["chosen"]
    assert chosen["label"] in page.cells
    assert f"{chosen['measured_drop']:.2f}" in page.cells
    assert data["result"]["chosen"] == chosen["label"]
    assert page.marks == len(printed["candidates"])


def test_compare_report_lists_layers_worst_first(compressed, work, capsys) -> None:
    model, _ = compressed
    page_path = work / "compare.html"
    printed = _run(
        capsys, "compare", DEMO, str(model), "--samples", "64", "--json",
        "--report", str(page_path),
    )  # fmt: skip
    page, _ = opened(page_path)
    names = [cell for cell in page.cells if cell in {e["name"] for e in printed["layers"]}]
    assert names == [e["name"] for e in printed["layers"]]
    assert f"output SQNR {printed['output_sqnr_db']:.1f} dB" in "".join(page.text)


def test_distill_report_has_the_training_curve(work, capsys) -> None:
    page_path = work / "distill.html"
    printed = _run(
        capsys, "distill", DEMO, DEMO, "--epochs", "2", "--threads", "1", "--no-latency", "-o",
        str(work / "distilled.onnx"), "--json", "--report", str(page_path),
    )  # fmt: skip
    page, data = opened(page_path)
    history = printed["distill"]["history"]
    assert [c for c in page.cells if c in ("1", "2")][:2] == ["1", "2"]
    assert f"{history[-1]['val_loss']:.4f}" in page.cells
    assert data["kind"] == "distill"


def test_a_report_name_that_is_not_html_is_refused_before_any_work(work, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench", DEMO, "--report", str(work / "out.txt")])
    assert exited.value.code == 2
    assert "wants a .html file name" in capsys.readouterr().err
