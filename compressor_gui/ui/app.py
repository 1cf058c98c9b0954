"""Entry point of the desktop app: `compressor-gui [MODEL]` and `python -m compressor_gui`."""

from __future__ import annotations

import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from compressor_gui.core.logs import quiet_libraries
from compressor_gui.ui.errors import ErrorHook
from compressor_gui.ui.main_window import MainWindow
from compressor_gui.ui.settings import APP_NAME


def run_gui(path: str | None = None) -> int:
    """Show the main window (opening `path` once the event loop runs) and return the exit code."""
    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName(APP_NAME)
    app.setOrganizationName(APP_NAME)
    quiet_libraries()
    window = MainWindow()
    hook = ErrorHook(lambda message: window.show_error("Internal error", message))
    hook.install()
    window.show()
    if path:
        QTimer.singleShot(0, lambda: window.open_path(path))
    try:
        return app.exec()
    finally:
        hook.uninstall()
