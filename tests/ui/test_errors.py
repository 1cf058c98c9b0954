"""Errors in the window: an uncaught exception is one line and the log's path in a dialog
(the app and the plan stay), and a long message never makes a dialog taller than the screen."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QMessageBox

from compressor_gui.ui.errors import ErrorHook


def _dialog(window) -> QMessageBox | None:
    boxes = [b for b in window.findChildren(QMessageBox) if b.isVisible()]
    return boxes[-1] if boxes else None


def test_an_exception_in_a_slot_shows_one_line_and_the_log_and_the_plan_stays(
    loaded, qtbot, tmp_path
) -> None:
    loaded.controls.set_layers(["/fc/Gemm"])
    loaded.controls.bits.set_bits(8)
    hook = ErrorHook(lambda message: loaded.show_error("Internal error", message))
    hook.install()
    try:

        def broken_slot() -> None:
            raise ZeroDivisionError("a bug in a slot")

        QTimer.singleShot(0, broken_slot)
        qtbot.waitUntil(lambda: _dialog(loaded) is not None, timeout=5_000)
    finally:
        hook.uninstall()
    log = tmp_path / "logs" / "compressor-gui.log"
    assert _dialog(loaded).text() == (
        f"internal error: ZeroDivisionError: a bug in a slot; details in {log}"
    )
    assert "in broken_slot" in log.read_text()
    assert loaded.session.plan.setting("/fc/Gemm").bits == 8
    loaded.controls.bits.set_bits(4)  # still editing
    assert loaded.session.plan.setting("/fc/Gemm").bits == 4


def test_a_long_error_goes_into_a_scrollable_details_box(loaded, qtbot) -> None:
    rows = "; ".join(f"/block{i}/bn (BatchNormalization) cannot be quantized" for i in range(300))
    box = loaded.show_error("Compress failed", f"the plan does not fit this model: {rows}")
    qtbot.waitUntil(box.isVisible, timeout=5_000)
    assert len(box.text()) < 400 and "Show Details" in box.text()
    assert box.detailedText().endswith("/block299/bn (BatchNormalization) cannot be quantized")
    screen = loaded.screen().availableGeometry()
    assert box.frameGeometry().height() <= screen.height()
    box.close()
