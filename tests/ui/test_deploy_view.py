"""The Deploy tab as a user drives it: Deploy on the demo, the measured table with the
recommended form marked, and a click on a row exporting that form."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from compressor_gui.targets.deploy import Timing


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
