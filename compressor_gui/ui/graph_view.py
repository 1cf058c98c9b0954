"""The model graph drawn by netron: embedded with QtWebEngine when present, else a browser link.

Built lazily (QtWebEngine starts a Chromium process): nothing starts until the tab is first
shown. A request interceptor blocks and counts every request that is not to 127.0.0.1, so
the embedded view cannot reach the internet whatever the page tries.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import shiboken6
from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from compressor_gui.ui.netron_server import NetronServer

# netron keeps the drawn graph in window.__view__._target; its _table maps each model node
# to its drawn element, and select + scrollTo is what netron's own Find sidebar does.
_REVEAL_JS = """
(function (name, tries) {
  const attempt = (left) => {
    const view = window.__view__;
    const target = view && view._target;
    if (target && target._table) {
      for (const [value] of target._table) {
        if (value && value.name === name && Array.isArray(value.inputs)) {
          target.scrollTo(target.select([value]));
          return;
        }
      }
    }
    if (left > 0) { setTimeout(() => attempt(left - 1), 250); }
  };
  attempt(tries);
})(%s, 40);
"""

# what a test (or a curious user) wants to know about the page: is a graph drawn, is a
# message (consent, "please update", an error) covering it, and what is selected
STATE_JS = """
document.body && JSON.stringify({
  nodes: document.querySelectorAll('#canvas g.node').length,
  body: document.body.className,
  message: (document.getElementById('message-text') || {}).innerText || '',
  selected: Array.from(document.querySelectorAll('#canvas .select'))
    .map((e) => e.id).filter((id) => id)
})
"""


def _web_engine_available() -> bool:
    try:
        from PySide6 import QtWebEngineCore, QtWebEngineWidgets  # noqa: F401
    except ImportError:
        return False
    return True


def _allow_chromium_as_root() -> None:
    """Chromium aborts the whole process when started as root with its sandbox on (docker,
    CI, a root shell on a Jetson host); Qt's documented switch turns the sandbox off then.
    Must run before the first QtWebEngine object is created."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        os.environ.setdefault("QTWEBENGINE_DISABLE_SANDBOX", "1")


class GraphView(QWidget):
    """netron on the current model; `reveal(name)` selects and scrolls to a layer."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.server: NetronServer | None = None
        self.web = None  # QWebEngineView once built
        self.interceptor = None
        self._model: Path | None = None
        self._loads = 0
        self.status = QLabel("Open a model to see its graph")
        self.browser_button = QPushButton("Open in browser")
        self.browser_button.setToolTip("Show the same offline graph view in your web browser")
        self.browser_button.setEnabled(False)
        self.browser_button.clicked.connect(self.open_in_browser)
        row = QHBoxLayout()
        row.addWidget(self.status, 1)
        row.addWidget(self.browser_button)
        self._box = QVBoxLayout(self)
        self._box.setContentsMargins(0, 4, 0, 0)
        self._box.addLayout(row)
        self._box.addStretch(1)

    @property
    def started(self) -> bool:
        return self.server is not None

    def ensure_started(self) -> None:
        """Start the server and (if QtWebEngine is there) the web view; idempotent."""
        if self.server is not None:
            return
        self.server = NetronServer()
        self.server.set_model(self._model)
        if _web_engine_available():
            self._build_web_view()
        else:
            self.status.setText("QtWebEngine is not installed: open the graph in your browser")
        self._reload()

    def _build_web_view(self) -> None:
        _allow_chromium_as_root()
        from PySide6.QtWebEngineCore import QWebEnginePage, QWebEngineProfile
        from PySide6.QtWebEngineWidgets import QWebEngineView

        from compressor_gui.ui.web_guard import LocalOnlyInterceptor

        # off the record: no cookies or cache written to disk; our page sets its own consent
        profile = QWebEngineProfile(self)
        self.interceptor = LocalOnlyInterceptor(self)
        profile.setUrlRequestInterceptor(self.interceptor)
        self.web = QWebEngineView(self)
        self.web.setPage(QWebEnginePage(profile, self.web))
        self._box.takeAt(self._box.count() - 1)  # the stretch that held the place
        self._box.addWidget(self.web, 1)

    def set_model(self, path: Path | None) -> None:
        self._model = path
        self.browser_button.setEnabled(path is not None)
        if self.server is not None:
            self.server.set_model(path)
            self._reload()

    def _reload(self) -> None:
        if self._model is not None and self.web is not None:
            self.status.setText(f"{self._model.name} · drawn by netron, offline")
            self._loads += 1  # a fresh URL per model: the page reads its model once
            self.web.load(QUrl(f"{self.server.url}?model={self._loads}"))

    def reveal(self, name: str) -> None:
        """Select and scroll to a layer (retries while netron is still drawing)."""
        if self.web is not None and self._model is not None:
            self.web.page().runJavaScript(_REVEAL_JS % json.dumps(name))

    def open_in_browser(self) -> None:
        self.ensure_started()
        QDesktopServices.openUrl(QUrl(self.server.url))

    def shutdown(self) -> None:
        if self.web is not None:  # the page must go before its profile (Chromium's rule)
            shiboken6.delete(self.web)
            self.web = None
        if self.server is not None:
            self.server.stop()
            self.server = None
