"""Run > Distill… as a user does it: the dialog, live training curves, "Stop, keep best",
and the recovered model in Results."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox

from compressor_gui.core.plan import CompressionPlan, LayerSetting
from compressor_gui.ui.training import DistillDialog


def test_distill_draws_live_curves_and_stop_keeps_the_best(loaded, qtbot) -> None:
    half = LayerSetting(prune_ratio=0.5, prune_pattern="channel")
    loaded.session.set_plan(CompressionPlan(default=half), "half of the channels")
    loaded.distill_action.trigger()
    dialog = loaded.findChild(DistillDialog)
    qtbot.waitUntil(dialog.isVisible)
    dialog.epochs.setValue(20)
    dialog.qat.setChecked(False)
    dialog.threads.setValue(1)
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)

    training = loaded.training
    assert loaded.views.currentWidget() is training
    qtbot.waitUntil(lambda: len(training.history) >= 2, timeout=180_000)  # epoch 0, epoch 1
    validation = next(c for c in training.loss_plot.listDataItems() if c.name() == "validation")
    assert len(validation.xData) == len(training.history)
    qtbot.mouseClick(training.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not loaded.jobs.running, timeout=120_000)

    assert len(training.history) < 21  # stopped long before 20 epochs
    assert "stopped early" in training.status.text()
    record = loaded.results.records[-1]
    assert record.title == "Distill"
    assert any("distilled:" in note for note in record.notes)
    assert loaded.compressed_path is not None and loaded.compressed_path.is_file()
