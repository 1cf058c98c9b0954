"""The window driven as a user would: open, filter, select, slide, undo, bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QPalette
from PySide6.QtWidgets import QApplication, QInputDialog, QMessageBox

from compressor_gui.ui.layer_table import COLUMN_NAMES
from compressor_gui.ui.settings import Settings


def _dialog(window) -> QMessageBox | None:
    boxes = [b for b in window.findChildren(QMessageBox) if b.isVisible()]
    return boxes[-1] if boxes else None


def _column(window, name: str) -> list[str]:
    col = COLUMN_NAMES.index(name)
    return [window.proxy.index(r, col).data() for r in range(window.proxy.rowCount())]


def test_dropping_a_model_file_fills_the_layer_table(window, qtbot, demo_path: Path) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(demo_path))])
    # Qt delivers a drop only after the widget accepted the drag entering it
    enter = QDragEnterEvent(
        QPoint(200, 200),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    drop = QDropEvent(
        QPointF(200, 200),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(window, drop)
    qtbot.waitUntil(lambda: window.proxy.rowCount() == 23, timeout=20_000)
    assert window.table.isVisible()
    assert "/fc/Gemm" in _column(window, "Layer")
    assert "demo.onnx" in window.windowTitle()


def test_a_bad_file_shows_a_dialog_and_the_app_stays_usable(
    window, qtbot, tmp_path: Path, demo_path: Path
) -> None:
    bad = tmp_path / "notes.onnx"
    bad.write_text("hello, I am not a model\n")
    window.open_path(bad)
    qtbot.waitUntil(lambda: _dialog(window) is not None, timeout=10_000)
    box = _dialog(window)
    assert "notes.onnx" in box.text() and "text file" in box.text()
    box.accept()
    window.open_path(demo_path)
    qtbot.waitUntil(lambda: window.proxy.rowCount() == 23, timeout=20_000)


def test_filter_by_op_and_sort_by_bytes(loaded, qtbot) -> None:
    qtbot.keyClicks(loaded.filter, "gemm")
    assert _column(loaded, "Layer") == ["/fc/Gemm"]
    loaded.filter.clear()
    qtbot.keyClicks(loaded.filter, "block2/")
    assert len(_column(loaded, "Layer")) == 6
    loaded.filter.clear()
    loaded.table.sortByColumn(COLUMN_NAMES.index("Bytes"), Qt.SortOrder.DescendingOrder)
    assert _column(loaded, "Layer")[0] == "/block3/conv2/Conv"  # 128x128x3x3, the largest


def _select_rows(window, qtbot, names: list[str]) -> None:
    """Click the first name, ctrl-click the rest (as a user picks several layers)."""
    view = window.table
    for i, name in enumerate(names):
        row = _column(window, "Layer").index(name)
        rect = view.visualRect(window.proxy.index(row, 0))
        modifier = Qt.KeyboardModifier.ControlModifier if i else Qt.KeyboardModifier.NoModifier
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, modifier, rect.center())
    assert window.selected_layers() == sorted(names, key=_column(window, "Layer").index)


def test_bits_slider_edits_every_selected_layer_and_totals_follow(loaded, qtbot) -> None:
    names = ["/block3/conv1/Conv", "/block3/conv2/Conv"]
    _select_rows(loaded, qtbot, names)
    before = loaded.totals.text()
    slider = loaded.controls.bits.slider
    slider.setFocus()
    qtbot.keyClick(slider, Qt.Key.Key_Right)  # 32 -> 16
    qtbot.keyClick(slider, Qt.Key.Key_Right)  # 16 -> 8
    assert [loaded.session.plan.setting(n).bits for n in names] == [8, 8]
    assert loaded.session.plan.setting("/block1/conv1/Conv").bits == 32
    bits = dict(zip(_column(loaded, "Layer"), _column(loaded, "Bits"), strict=True))
    assert bits["/block3/conv2/Conv"] == "8" and bits["/block1/conv1/Conv"] == "32"
    assert loaded.totals.text() != before
    assert "predicted size" in loaded.totals.text()


def test_a_slider_drag_is_one_undo_step(loaded, qtbot) -> None:
    _select_rows(loaded, qtbot, ["/block2/conv2/Conv"])
    prune = loaded.controls.prune
    prune._slider.setSliderDown(True)  # the user grabs the handle...
    for value in range(5, 55, 5):  # ...drags through ten values...
        prune.setValue(value)
    prune._slider.setSliderDown(False)  # ...and lets go
    assert loaded.session.plan.setting("/block2/conv2/Conv").prune_ratio == 0.5
    assert loaded.session.history.count() == 1
    loaded.undo_action.trigger()
    assert loaded.session.plan.setting("/block2/conv2/Conv").prune_ratio == 0.0
    assert prune.value() == 0
    loaded.redo_action.trigger()
    assert _column(loaded, "Prune")[_column(loaded, "Layer").index("/block2/conv2/Conv")] == "50%"


def test_pattern_choice_applies_to_the_selection(loaded, qtbot) -> None:
    _select_rows(loaded, qtbot, ["/block1/conv1/Conv", "/block1/conv2/Conv"])
    loaded.controls.pattern.setCurrentText("channel")
    plan = loaded.session.plan
    assert plan.setting("/block1/conv1/Conv").prune_pattern == "channel"
    assert plan.setting("/block1/conv2/Conv").prune_pattern == "channel"


def test_opened_files_are_remembered_as_recent(loaded, demo_path: Path) -> None:
    loaded.close()
    assert Settings().recent_files()[0] == str(demo_path.resolve())


def test_clicking_a_bar_selects_its_layer(loaded, qtbot) -> None:
    loaded.charts.layer_clicked.emit("/dwsep/pointwise/conv/Conv")
    assert loaded.selected_layers() == ["/dwsep/pointwise/conv/Conv"]
    assert loaded.controls.title.text() == "/dwsep/pointwise/conv/Conv"


def test_recipe_saved_and_loaded_back_is_one_undo_step(loaded, qtbot, tmp_path: Path) -> None:
    loaded.session.edit_layers(["/fc/Gemm"], bits=4, prune_ratio=0.5)
    recipe = tmp_path / "plan.json"
    loaded.save_recipe(recipe)
    loaded.reset_action.trigger()
    assert loaded.session.plan.setting("/fc/Gemm").bits == 32
    loaded.load_recipe(recipe)
    assert loaded.session.plan.setting("/fc/Gemm").bits == 4
    loaded.undo_action.trigger()
    assert loaded.session.plan.setting("/fc/Gemm").bits == 32


def test_inventory_columns_through_sparsity_show_without_scrolling(loaded) -> None:
    header = loaded.table.horizontalHeader()
    column = COLUMN_NAMES.index("Sparsity")
    right_edge = header.sectionViewportPosition(column) + header.sectionSize(column)
    assert right_edge <= loaded.table.viewport().width()


def test_dark_selection_stays_visible_when_the_window_loses_focus(window) -> None:
    window.set_theme("dark")
    palette = QApplication.palette()
    inactive = QPalette.ColorGroup.Inactive
    highlight = palette.color(inactive, QPalette.ColorRole.Highlight)
    base = palette.color(inactive, QPalette.ColorRole.Base)
    assert abs(highlight.lightness() - base.lightness()) > 30


def test_prune_globally_sets_one_threshold_over_all_layers_in_one_undo_step(loaded, qtbot):
    loaded.table.clearSelection()
    loaded.global_prune_action.trigger()
    qtbot.waitUntil(lambda: loaded.findChild(QInputDialog) is not None)
    dialog = loaded.findChild(QInputDialog)
    assert dialog.intValue() == 50
    dialog.setIntValue(60)
    dialog.accept()
    qtbot.waitUntil(lambda: loaded.session.history.count() == 1, timeout=20_000)
    plan, inventory = loaded.session.plan, loaded.session.inventory
    pruned = {name: s.prune_ratio for name, s in plan.layers.items() if s.prune_ratio}
    params = {layer.name: layer.params for layer in inventory.layers}
    share = sum(ratio * params[name] for name, ratio in pruned.items())
    assert share / sum(params[name] for name in pruned) == pytest.approx(0.6, abs=0.01)
    assert len(set(pruned.values())) > 1  # one threshold, so each layer gets its own ratio
    assert all(ratio <= 0.95 for ratio in pruned.values())
    assert "globally" in loaded.undo_action.toolTip()
    loaded.undo_action.trigger()
    assert not any(s.prune_ratio for s in loaded.session.plan.layers.values())


def _open_demo(qtbot, demo_path: Path):
    from compressor_gui.ui.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    window.open_path(demo_path)
    qtbot.waitUntil(lambda: window.session.inventory is not None, timeout=20_000)
    return window


def _answer(box: QMessageBox, text: str) -> None:
    next(button for button in box.buttons() if button.text() == text).click()


def test_a_plan_not_saved_as_a_recipe_comes_back_after_closing(qtbot, demo_path: Path):
    first = _open_demo(qtbot, demo_path)
    first.select_layers(["/block3/conv2/Conv"])
    first.controls.bits.set_bits(4)
    first.close()  # no recipe saved: the draft is all that is left of this plan

    second = _open_demo(qtbot, demo_path)
    qtbot.waitUntil(lambda: second.opener.draft_offer is not None, timeout=5_000)
    offer = second.opener.draft_offer
    assert "demo.onnx" in offer.text() and "1 layer setting," in offer.text()
    _answer(offer, "Restore")
    assert second.session.plan.setting("/block3/conv2/Conv").bits == 4
    second.undo_action.trigger()  # restoring was one undo step
    assert second.session.plan.setting("/block3/conv2/Conv").bits == 32
    second.redo_action.trigger()
    second.close()

    third = _open_demo(qtbot, demo_path)
    qtbot.waitUntil(lambda: third.opener.draft_offer is not None, timeout=5_000)
    _answer(third.opener.draft_offer, "Discard")
    assert third.session.plan.setting("/block3/conv2/Conv").bits == 32
    third.close()
    fourth = _open_demo(qtbot, demo_path)
    qtbot.wait(500)
    assert fourth.opener.draft_offer is None  # discarded means gone


def test_int8_form_menu_sets_the_plan_and_undoes(loaded, qtbot) -> None:
    menu = loaded.int8_form_menu
    assert menu.form_actions["auto"].isChecked()
    menu.form_actions["u8u8"].trigger()
    assert loaded.session.plan.int8_form == "u8u8" and menu.form_actions["u8u8"].isChecked()
    loaded.undo_action.trigger()
    assert loaded.session.plan.int8_form == "auto" and menu.form_actions["auto"].isChecked()
