"""Dark and light Fusion palettes; charts read the same colours so plots match the window."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QWidget


@dataclass(frozen=True)
class ChartColors:
    background: str
    foreground: str
    grid_alpha: float
    before: str  # original model
    after: str  # planned / compressed
    highlight: str  # selected layer


DARK = ChartColors("#1e1f22", "#d8d8d8", 0.25, "#7a8599", "#4fc3f7", "#ffb74d")
LIGHT = ChartColors("#ffffff", "#202020", 0.3, "#9aa3b5", "#0277bd", "#e65100")


def _dark_palette() -> QPalette:
    p = QPalette()
    role = QPalette.ColorRole
    colors = {
        role.Window: "#2b2d30",
        role.WindowText: "#e6e6e6",
        role.Base: "#1e1f22",
        role.AlternateBase: "#26282b",
        role.ToolTipBase: "#3c3f41",
        role.ToolTipText: "#e6e6e6",
        role.PlaceholderText: "#8c8c8c",
        role.Text: "#e6e6e6",
        role.Button: "#3c3f41",
        role.ButtonText: "#e6e6e6",
        role.BrightText: "#ff6b6b",
        role.Link: "#4fc3f7",
        role.Highlight: "#2f65ca",
        role.HighlightedText: "#ffffff",
        role.Mid: "#4a4d50",
        role.Dark: "#1b1c1e",
        role.Light: "#505356",
    }
    for r, c in colors.items():
        p.setColor(r, QColor(c))
    for r in (role.Text, role.WindowText, role.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, r, QColor("#7a7a7a"))
    # a selection must stay visible when the window loses focus (Fusion greys it out)
    p.setColor(QPalette.ColorGroup.Inactive, role.Highlight, QColor("#2a4a80"))
    p.setColor(QPalette.ColorGroup.Inactive, role.HighlightedText, QColor("#ffffff"))
    return p


def apply_theme(app: QApplication, theme: str, window: QWidget) -> ChartColors:
    """Switch the whole app to `theme` ("dark" | "light") and return its chart colours."""
    app.setStyle("Fusion")
    app.setPalette(_dark_palette() if theme == "dark" else app.style().standardPalette())
    # widgets styled by a stylesheet (superqt's slider labels) keep the colours they were
    # polished with; re-polish the window's own (not app.allWidgets(), which also lists
    # widgets of closed windows still being torn down: touching those crashed)
    for widget in window.findChildren(QWidget):
        if widget.styleSheet():
            widget.setStyleSheet(widget.styleSheet())
    return DARK if theme == "dark" else LIGHT
