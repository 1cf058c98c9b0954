"""Keeps the embedded web view offline: only 127.0.0.1 (our netron server) may be reached.

A module of its own so that importing the graph view does not import QtWebEngine.
"""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtWebEngineCore import QWebEngineUrlRequestInfo, QWebEngineUrlRequestInterceptor

LOCAL_SCHEMES = ("data", "blob")


class LocalOnlyInterceptor(QWebEngineUrlRequestInterceptor):
    """Blocks every request not to 127.0.0.1 and keeps the list (tests assert it is empty)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.blocked: list[str] = []
        self.allowed = 0

    def interceptRequest(self, info: QWebEngineUrlRequestInfo) -> None:  # noqa: N802 (Qt API)
        url = info.requestUrl()
        if url.scheme() in LOCAL_SCHEMES or url.host() == "127.0.0.1":
            self.allowed += 1
            return
        self.blocked.append(url.toString())
        info.block(True)
