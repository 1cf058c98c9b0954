"""The Qt binding itself must not corrupt Python's reference counts.

PySide6 6.12.0 dropped one reference to None on every call of a method returning void; on
Python 3.11, where None is not immortal, the app aborted with "none_dealloc" a few seconds
after opening a model. This guards the pin in pyproject.toml.
"""

from __future__ import annotations

import sys

from PySide6.QtWidgets import QApplication, QLabel


def test_void_qt_calls_keep_references_to_none_and_booleans(qtbot) -> None:
    label = QLabel("refcount")
    qtbot.addWidget(label)
    label.show()
    app = QApplication.instance()
    app.processEvents()
    before = [sys.getrefcount(obj) for obj in (None, True, False)]
    for _ in range(2000):
        label.update()
        label.setVisible(True)
        app.processEvents()
    after = [sys.getrefcount(obj) for obj in (None, True, False)]
    # a few references may come and go with Python's own caches; a leak costs thousands
    assert all(b - a < 100 for a, b in zip(after, before, strict=True)), (before, after)
