"""Auto plan from the toolbar: a budget dialog, a worker, a Pareto chart whose points load plans."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QDialogButtonBox

from compressor_gui.core.plan import CompressionPlan
from compressor_gui.core.search import AutoPlanResult, Candidate
from compressor_gui.ui.autoplan_dialog import AutoPlanDialog
from compressor_gui.ui.charts import ParetoPlot
from compressor_gui.ui.theme import DARK


def _click_point(plot, qtbot, x: float, y: float) -> None:
    """A left click where the point is drawn, through pyqtgraph's own mouse handling."""
    scene_pos = plot.plotItem.vb.mapViewToScene(QPointF(x, y))
    where = plot.mapFromScene(scene_pos)
    qtbot.mouseClick(plot.viewport(), Qt.MouseButton.LeftButton, pos=where)


def test_auto_plan_fills_the_pareto_tab_and_a_click_loads_a_plan(loaded, qtbot) -> None:
    loaded.autoplan_action.trigger()
    dialog = loaded.findChild(AutoPlanDialog)
    qtbot.waitUntil(dialog.isVisible)
    dialog.size_times.setValue(4.0)
    dialog.samples.setValue(64)  # enough to rank 23 layers, quick on two cores
    dialog.verification.setCurrentIndex(dialog.verification.findData("simulated"))
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: loaded.session.autoplan is not None, timeout=240_000)
    qtbot.waitUntil(lambda: not loaded.jobs.running, timeout=5_000)

    result = loaded.session.autoplan
    chosen = result.chosen
    assert chosen.predicted_size_bytes <= result.original_size_bytes / 4 * 1.01
    assert loaded.session.plan == chosen.plan
    assert loaded.charts.currentWidget() is loaded.charts.pareto
    pareto = loaded.charts.pareto
    assert len(pareto.scatter.points()) == len(result.candidates)
    labels = [i.toPlainText() for i in pareto.plotItem.items if isinstance(i, pg.TextItem)]
    lines = {line for label in labels for line in label.splitlines()}  # close points share one
    assert {"uniform INT8", "uniform INT4"} <= lines

    int4 = next(c for c in result.candidates if c.label == "uniform INT4")
    steps = loaded.session.history.count()
    _click_point(
        pareto,
        qtbot,
        result.original_size_bytes / int4.predicted_size_bytes,
        int4.measured_value * 100,
    )
    assert loaded.session.plan == int4.plan
    assert loaded.session.history.count() == steps + 1
    loaded.select_layers(["/block2/conv1/Conv"])
    assert loaded.controls.bits.bits() == 4
    loaded.undo_action.trigger()
    assert loaded.session.plan == chosen.plan


def test_recovery_in_the_dialog_checks_plans_for_real_and_the_chart_draws_before_and_after(
    qtbot,
) -> None:
    dialog = AutoPlanDialog()
    qtbot.addWidget(dialog)
    dialog.verification.setCurrentIndex(dialog.verification.findData("simulated"))
    dialog.recover_check.setChecked(True)
    dialog.recover_epochs.setValue(7)
    request = dialog.request()
    assert request.verification == "real" and not dialog.verification.isEnabled()
    assert request.recovery.epochs == 7 and request.recovery.qat

    def made(label, size, value, recovered_from=None):
        plan = CompressionPlan(distill_epochs=7 if recovered_from else 0)
        drop = 100 * (1 - value)
        return Candidate(label, plan, size, 0.0, value, drop, size, "real", recovered_from)

    before = made("auto", 200, 0.60)
    after = made("auto + distill 7 epochs", 200, 0.99, "auto")
    result = AutoPlanResult(
        after, (made("uniform INT8", 400, 1.0), before, after), 1600, 1.0, "top1"
    )
    plot = ParetoPlot()
    qtbot.addWidget(plot)
    plot.show_result(result, DARK)
    symbols = {p.data().label: p.symbol() for p in plot.scatter.points()}
    assert symbols == {"uniform INT8": "o", "auto": "o", "auto + distill 7 epochs": "star"}
    dotted = [
        item
        for item in plot.plotItem.items
        if isinstance(item, pg.PlotDataItem) and item.opts["pen"].style() == Qt.PenStyle.DotLine
    ]
    assert len(dotted) == 1
    assert list(dotted[0].getData()[1]) == [60.0, 99.0]
    assert "after recovery by distillation" in plot.plotItem.titleLabel.text
