"""The Deploy tab's chart: every measured form as a point, quality (top-1, else output
cosine to the original) against p50 latency, the recommended one ringed; a click on a point
emits that form's key (the tab selects its row)."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Signal

from compressor_gui.core.deploy import CandidateRow, DeployResult
from compressor_gui.ui.theme import LIGHT, ChartColors


class FormsPlot(pg.PlotWidget):
    form_clicked = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.showGrid(x=True, y=True)
        self.setLabel("bottom", "latency p50 (ms) on the target")
        self.colors: ChartColors = LIGHT
        self.result: DeployResult | None = None
        self.scatter: pg.ScatterPlotItem | None = None

    def set_colors(self, colors: ChartColors) -> None:
        self.colors = colors
        self.setBackground(colors.background)
        for side in ("left", "bottom"):
            self.getAxis(side).setPen(colors.foreground)
            self.getAxis(side).setTextPen(colors.foreground)
        self.show_result(self.result)

    def show_result(self, result: DeployResult | None) -> None:
        self.clear()
        self.result, self.scatter = result, None
        if result is None:
            return
        labelled = any(row.top1 is not None for row in result.rows)
        measured = [row for row in result.rows if _point(row, labelled) is not None]
        self.setLabel("left", "top-1 (%)" if labelled else "output cosine to the original")
        if not measured:
            return
        chosen = result.recommendation.key
        spots = [
            {
                "pos": _point(row, labelled),
                "data": row.key,
                "size": 16 if row.key == chosen else 11,
                "brush": pg.mkBrush(
                    self.colors.highlight if row.key == chosen else self.colors.after
                ),
                "pen": pg.mkPen(self.colors.foreground, width=2 if row.key == chosen else 0.5),
            }
            for row in measured
        ]
        self.scatter = pg.ScatterPlotItem(spots=spots, hoverable=True, tip=_tip(result))
        self.scatter.sigClicked.connect(self._clicked)
        self.addItem(self.scatter)
        points = [_point(row, labelled) for row in measured]
        xs, ys = [x for x, _ in points], [y for _, y in points]
        span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
        for x, y, names in _label_groups(measured, points, span_x / 4, span_y / 25):
            text = pg.TextItem("\n".join(names), color=self.colors.foreground, anchor=(-0.05, 1))
            text.setPos(x, y)
            self.addItem(text)
        self.setXRange(min(xs) - span_x * 0.05, max(xs) + span_x * 0.35, padding=0)  # labels
        self.setYRange(min(ys) - span_y * 0.1, max(ys) + span_y * 0.3, padding=0)

    def _clicked(self, _item, points, _event=None) -> None:
        if len(points):
            self.form_clicked.emit(points[0].data())


def _point(row: CandidateRow, labelled: bool) -> tuple[float, float] | None:
    quality = 100 * row.top1 if labelled and row.top1 is not None else None
    if not labelled:
        quality = row.cosine
    if row.p50_ms is None or quality is None:
        return None
    return row.p50_ms, quality


def _label_groups(rows, points, dx: float, dy: float) -> list[tuple[float, float, list[str]]]:
    """Forms drawn on (nearly) the same spot share one label, one name per line."""
    groups: list[tuple[float, float, list[str]]] = []
    for row, (x, y) in zip(rows, points, strict=True):
        for gx, gy, names in groups:
            if abs(gx - x) <= dx and abs(gy - y) <= dy:
                names.append(row.label)
                break
        else:
            groups.append((x, y, [row.label]))
    return groups


def _tip(result: DeployResult):
    def tip(x: float, y: float, key: str) -> str:
        row = result.row(key)
        return f"{row.label}\np50 {x:.3f} ms, {y:.4g}\nclick to select its row"

    return tip
