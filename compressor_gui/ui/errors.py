"""Error dialogs that fit on the screen, and the hook that turns any uncaught exception into
one of them instead of a traceback on the terminal (the window and the plan stay)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import TracebackType

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from compressor_gui.core.advice import in_window_words
from compressor_gui.core.logs import record_internal_error

SHORT_TEXT_CHARS = 300
SHORT_TEXT_LINES = 4


def summary(message: str) -> tuple[str, str]:
    """(what the dialog says, what goes in its scrollable details box; "" when it all fits)."""
    lines = message.strip().splitlines() or [""]
    if len(message) <= SHORT_TEXT_CHARS and len(lines) <= SHORT_TEXT_LINES:
        return message.strip(), ""
    first = lines[0]
    if len(first) > SHORT_TEXT_CHARS:
        cut = first[:SHORT_TEXT_CHARS]
        first = cut[: cut.rfind(" ")] if " " in cut else cut
    return f"{first.rstrip(' ;,:')} … (the whole message is under Show Details)", message


def error_box(parent: QWidget | None, title: str, message: str) -> QMessageBox:
    """A window-modal error box, opened without blocking the event loop; long text goes into
    the details box, which scrolls, so the dialog is never taller than the screen."""
    text, details = summary(in_window_words(message))
    box = QMessageBox(QMessageBox.Icon.Critical, title, text, parent=parent)
    box.setObjectName("error_dialog")
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if details:
        box.setDetailedText(details)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box


class _Relay(QObject):
    """Carries an error from any thread to the GUI thread (queued signal)."""

    report = Signal(str)


class ErrorHook:
    """sys.excepthook and threading.excepthook for the GUI: the traceback goes to the log,
    the user sees one line and the log's path, and the app goes on."""

    def __init__(self, show: Callable[[str], None]) -> None:
        self._relay = _Relay()
        self._relay.report.connect(show, Qt.ConnectionType.QueuedConnection)
        self._previous = (sys.excepthook, threading.excepthook)

    def install(self) -> None:
        sys.excepthook = self._on_exception
        threading.excepthook = lambda args: self._on_exception(
            args.exc_type, args.exc_value, args.exc_traceback
        )

    def uninstall(self) -> None:
        sys.excepthook, threading.excepthook = self._previous

    def _on_exception(
        self, kind: type[BaseException], exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None or issubclass(kind, KeyboardInterrupt | SystemExit):
            self._previous[0](kind, exc, tb)
            return
        exc = exc.with_traceback(tb)
        self._relay.report.emit(str(record_internal_error(exc, "the desktop app")))
