"""Benchmark on several checked targets: the table fills with one row per target, and a target
that cannot be reached is a red row with its reason while the others still run."""

from __future__ import annotations

from PySide6.QtCore import Qt

from compressor_gui.targets.fanout import COLUMNS
from tests.targets.conftest import _free_port
from tests.ui.test_targets import _fill_form


def _check(view, label: str) -> None:
    items = [view.targets.item(i) for i in range(view.targets.count())]
    item = next(item for item in items if item.text() == label)
    item.setCheckState(Qt.CheckState.Checked)


def test_benchmark_on_two_checked_targets_fills_the_table_with_a_red_row(
    loaded, qtbot, sshd
) -> None:
    panel = loaded.targets
    qtbot.waitUntil(lambda: panel.current() is not None, timeout=30_000)
    _fill_form(panel, qtbot, sshd, name="gone", port=_free_port())
    qtbot.mouseClick(panel.save_button, Qt.MouseButton.LeftButton)
    view = panel.fanout
    _check(view, "local CPU · ORT CPU fp32")
    _check(view, "gone (SSH) CPU · ORT CPU fp32")
    view.score.setChecked(True)  # and score there, on the demo's held-out images
    records = len(loaded.results.records)

    loaded.bench_action.trigger()
    qtbot.waitUntil(lambda: not loaded.jobs.running, timeout=120_000)

    assert panel.tabs.currentWidget() is view  # the table is shown, not the machines
    table = view.table
    assert table.rowCount() == 2, loaded.jobs.log.toPlainText()
    cells = [
        {name: table.item(r, c).text() for c, name in enumerate(COLUMNS)}
        for r in range(table.rowCount())
    ]
    assert [(row["target"], row["model"]) for row in cells] == [
        ("local", "original"),
        ("gone", "original"),
    ]
    assert cells[0]["status"] == "ok" and cells[0]["p50 ms"]
    assert cells[0]["top-1"].endswith("%") and float(cells[0]["top-1"][:-1]) > 90
    assert cells[1]["status"].startswith("failed: cannot reach") and cells[1]["p50 ms"] == ""
    red = table.item(1, 0).background().color()
    assert red.red() > red.green() and table.item(0, 0).background().color() != red
    assert len(loaded.results.records) == records  # the single-target history is untouched
