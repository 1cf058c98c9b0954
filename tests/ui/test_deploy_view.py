"""The Deploy tab as a user drives it: Deploy on the demo, the measured table with the
recommended form marked, and a click on a row exporting that form."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QFileDialog

from compressor_gui.targets.deploy import Timing
from tests.report_pages import opened


def test_deploy_shows_the_table_and_a_click_exports_that_form(
    loaded, qtbot, tmp_path, monkeypatch
) -> None:
    loaded.runs.deploy(forms=["ort-int8"], timing=Timing(rounds=1, runs=5, warmup=1))
    view = loaded.deploy_view
    qtbot.waitUntil(lambda: view.result is not None, timeout=120_000)
    assert loaded.views.currentWidget() is view
    keys = [view.table.item(r, 0).data(Qt.ItemDataRole.UserRole) for r in range(2)]
    assert keys == ["ort-fp32", "ort-int8"]
    assert all(view.table.item(r, 4).text() for r in range(2))  # p50 measured
    assert "Recommended:" in view.summary.text()
    chosen = keys.index(view.result.recommendation.key)
    assert view.table.item(chosen, 0).font().bold()

    folder = tmp_path / "int8-deployment"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(folder), ""))
    with qtbot.waitSignal(view.exported, timeout=20_000):
        rect = view.table.visualItemRect(view.table.item(1, 1))
        qtbot.mouseClick(view.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert (folder / "model.onnx").is_file() and (folder / "report.html").is_file()
    done = subprocess.run(
        [sys.executable, "run_onnxruntime.py"], cwd=folder, capture_output=True, text=True
    )
    assert done.returncode == 0 and "output 0: shape [1, 10]" in done.stdout, done.stderr
    assert Path(view.work_dir).is_dir()
    loaded.close()
    assert view.work_dir is None  # the forms' work folder goes with the window


def test_the_sweep_sorts_by_latency_a_point_selects_its_row_and_file_saves_the_report(
    loaded, qtbot, tmp_path, monkeypatch
) -> None:
    loaded.runs.deploy(forms=["ort-int8", "ov-fp32"], timing=Timing(rounds=1, runs=5, warmup=1))
    view = loaded.deploy_view
    qtbot.waitUntil(lambda: view.result is not None, timeout=300_000)
    table, p50_column = view.table, 4
    header = table.horizontalHeader()
    header_rect_x = header.sectionViewportPosition(p50_column) + 5
    qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(header_rect_x, 5))
    shown = [float(table.item(r, p50_column).text()) for r in range(table.rowCount())]
    assert len(shown) == 3 and shown == sorted(shown)  # numbers, not text, decide the order

    spots = view.chart.scatter.points()
    assert len(spots) == 3  # every form measured for both latency and quality
    slowest = max(spots, key=lambda spot: spot.pos().x())
    view.chart.scatter.sigClicked.emit(view.chart.scatter, [slowest], None)
    row = table.selectedItems()[0].row()
    assert table.item(row, 0).data(Qt.ItemDataRole.UserRole) == slowest.data()
    assert float(table.item(row, p50_column).text()) == max(shown)

    page = tmp_path / "deploy-report.html"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(page), ""))
    loaded.save_report_action.trigger()
    parsed, data = opened(page)
    assert data["kind"] == "deploy"
    assert [r["key"] for r in data["result"]["candidates"]] == [r.key for r in view.result.rows]
    for candidate in view.result.rows:
        assert f"{candidate.p50_ms:.3f}" in parsed.cells


def test_the_tab_s_recovery_epochs_train_the_pruned_forms_back(loaded, qtbot) -> None:
    view = loaded.deploy_view
    view.recovery_epochs.setValue(1)
    loaded.runs.deploy(forms=["ort-int8-c50"], timing=Timing(rounds=1, runs=3, warmup=1))
    qtbot.waitUntil(lambda: view.result is not None, timeout=300_000)
    pruned = view.result.row("ort-int8-c50")
    assert pruned.error == "" and "distilled: 1 epoch on" in pruned.note
