"""Two doors, one application layer: the window (driven as a user drives it) and the CLI (run as
a user runs it) give the same figures for the same model, plan and data."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

from compressor_gui.cli import main
from compressor_gui.core.advice import in_window_words

RECIPE = """\
default: 8
layers:
  /stem/conv/Conv: 32
  /fc/Gemm: 16
int8_form: u8s8-rr
"""


def _cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "compressor_gui", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _without_latency(summary):
    """Latency is timed anew in every run: every other row must agree to the last digit
    (the window's table has the CLI's header row too: before/after)."""
    rows = tuple(row for row in summary.rows if not row.metric.startswith("latency"))
    return dataclasses.replace(summary, rows=rows)


def test_window_and_cli_compress_the_same(loaded, qtbot, demo_path, tmp_path):
    recipe = tmp_path / "plan.yaml"
    recipe.write_text(RECIPE)
    loaded.load_recipe(recipe)
    loaded.compress_action.trigger()
    qtbot.waitUntil(lambda: not loaded.jobs.running, timeout=180_000)
    window_result = loaded.session.results[-1]
    assert window_result.title == "Compress", loaded.jobs.log.toPlainText()

    out = tmp_path / "cli.onnx"
    printed = _cli(
        "compress", str(demo_path), "--recipe", str(recipe), "-o", str(out), "--no-latency"
    )
    assert out.stat().st_size == loaded.compressed_path.stat().st_size
    lines = printed.splitlines()
    assert _cells(_without_latency(window_result).table_text()) <= _cells(printed)
    assert [f"  {layer}" for layer in window_result.layers] == [
        line for line in lines if line.startswith("  /")
    ]
    assert "/fc/Gemm: FP16 (IO kept float32)" in window_result.layers  # as the recipe says
    assert sum("INT8" in layer for layer in window_result.layers) >= 10
    for note in window_result.notes:
        if not note.startswith(("written to", "warning: the compressed model is slower")):
            assert note in lines, note

    assert loaded.results.records == loaded.session.results  # Results shows the session's


def _cells(table: str) -> set[tuple[str, ...]]:
    """The non-empty cells of each line of an aligned table (widths aside)."""
    return {tuple(re.split(r"\s{2,}", line.strip())) for line in table.splitlines()}


def test_without_data_both_doors_measure_fidelity_only(window, qtbot, tmp_path):
    """No data anywhere: the window asks, and going on runs what the CLI runs on its own:
    random inputs, cosine and SQNR, no agreement on noise."""
    from PySide6.QtWidgets import QMessageBox

    from tests import modelgen

    original, changed = tmp_path / "stack.onnx", tmp_path / "stack_fp16.onnx"
    original.write_bytes(modelgen.conv_stack().SerializeToString())
    printed = _cli("compress", str(original), "--fp16", "-o", str(changed), "--no-latency")
    assert "data: random inputs: fidelity only" in printed.splitlines()
    window.open_path(original)
    qtbot.waitUntil(lambda: window.session.inventory is not None, timeout=20_000)
    qtbot.waitUntil(lambda: not window.jobs.running, timeout=5_000)
    window.session.compressed_path = changed
    window.evaluate_action.trigger()
    box = window.runs.data_question
    assert box is not None and not window.jobs.running  # asked before running anything
    go_on = next(b for b in box.buttons() if "random inputs" in b.text())
    assert box.buttonRole(go_on) == QMessageBox.ButtonRole.ActionRole
    go_on.click()
    qtbot.waitUntil(lambda: not window.jobs.running, timeout=60_000)
    result = window.session.results[-1]
    metrics = [row.metric for row in result.rows]
    assert "output cosine" in metrics and "agreement with original" not in metrics
    printed = _cli("evaluate", str(original), str(changed))
    assert _cells(result.table_text(("original", "compressed"))) <= _cells(printed)
    assert "data: random inputs: fidelity only" in printed.splitlines()


def test_the_window_words_advice_as_its_menus_where_the_cli_names_flags(
    loaded, demo_path, tmp_path, capsys
):
    """A plan that loses accuracy on any CPU (ternary weights everywhere): both doors warn
    and say what to do, the CLI with its verbs and flags, the window (its Results, as after
    a Compress) with its menu paths."""
    from compressor_gui.core.compress import compress_job
    from compressor_gui.core.jobs import run_job
    from compressor_gui.core.model import load_model
    from compressor_gui.core.plan import load_recipe

    recipe = tmp_path / "ternary.yaml"
    recipe.write_text("default: 2\n")
    job = compress_job(
        load_model(demo_path), load_recipe(recipe), tmp_path / "window.onnx", latency=False
    )
    loaded.runs.compressed(run_job(job))
    shown = loaded.results.notes.toPlainText()
    assert "Where did accuracy go?" in shown and "top-1 fell" in shown
    assert "compressor-gui " not in shown and " --" not in shown

    out = tmp_path / "cli.onnx"
    argv = ["compress", str(demo_path), "--recipe", str(recipe), "-o", str(out), "--no-latency"]
    assert main(argv) == 0
    warning = next(line for line in capsys.readouterr().out.splitlines() if "top-1 fell" in line)
    assert "`compressor-gui compare ORIGINAL COMPRESSED --data D`" in warning
    assert in_window_words(warning) in shown.splitlines()
