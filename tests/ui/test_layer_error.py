"""Layer error tab: filled after Compress, linked to the table, worst layers kept float."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from compressor_gui.core.data import RESOURCES

HARD_LAYER = "/block2/conv1/Conv"


def test_compress_fills_the_layer_error_tab_and_keeps_the_worst_float(
    loaded, qtbot, tmp_path
) -> None:
    demo = np.load(RESOURCES / "demo_eval.npz")
    small = tmp_path / "small_eval.npz"
    np.savez(small, x=demo["x"][:64], y=demo["y"][:64])
    loaded.data_path = small
    loaded.select_layers([HARD_LAYER])
    loaded.controls.bits.set_bits(2)
    assert loaded.session.plan.setting(HARD_LAYER).bits == 2

    loaded.compress_action.trigger()  # Compress, then the comparison, each in a worker
    view = loaded.layer_error.view
    qtbot.waitUntil(lambda: view.result is not None, timeout=180_000)
    qtbot.waitUntil(lambda: not loaded.jobs.running, timeout=10_000)
    assert loaded.charts.currentWidget() is view
    assert view.result.samples == 64 and "top-1 100.00% →" in view.summary.text()
    legend, plot_area = view.chart.legend, view.chart.plotItem.vb
    qtbot.waitUntil(lambda: legend.sceneBoundingRect().height() > 0)
    assert len(legend.items) == 2  # output error, added by the layer
    assert legend.sceneBoundingRect().bottom() <= plot_area.sceneBoundingRect().top()  # no bar
    worst = view.result.layers[0].name
    assert worst in (HARD_LAYER, "/block2/conv2/Conv")

    view.count.setValue(1)
    qtbot.mouseClick(view.keep_worst, Qt.MouseButton.LeftButton)
    kept = loaded.session.plan.setting(worst)
    assert kept.bits == 32 and kept.prune_ratio == 0.0
    loaded.session.history.undo()  # one click, one undo step
    assert loaded.session.plan.setting(worst).bits == (2 if worst == HARD_LAYER else 32)

    loaded.select_layers([])
    view.chart.layer_clicked.emit(worst)  # a click on its bar selects the table row
    assert loaded.selected_layers() == [worst]
    qtbot.mouseClick(view.keep_selected, Qt.MouseButton.LeftButton)
    assert loaded.session.plan.setting(worst).bits == 32
