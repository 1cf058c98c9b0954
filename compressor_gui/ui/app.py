"""Entry point of the desktop app: `compressor-gui [MODEL]` and `python -m compressor_gui`."""

from __future__ import annotations

import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from compressor_gui.ui.main_window import MainWindow
from compressor_gui.ui.settings import APP_NAME


def run_gui(path: str | None = None) -> int:
    """Show the main window (opening `path` once the event loop runs) and return the exit code."""
    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName(APP_NAME)
    app.setOrganizationName(APP_NAME)
    window = MainWindow()
    window.show()
    if path:
        QTimer.singleShot(0, lambda: window.open_path(path))
    return app.exec()
