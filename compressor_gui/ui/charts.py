"""pyqtgraph charts of the inventory and plan, linked to the table's selection.

Size and sparsity bars show every layer before (original) and after (the plan's prediction);
the selected layers are drawn in the highlight colour and a click on a bar selects its layer.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QSizePolicy, QTabWidget, QWidget
from superqt.utils import qthrottled

from compressor_gui.core.inventory import weight_array
from compressor_gui.core.search import AutoPlanResult, Candidate
from compressor_gui.core.sensitivity import SensitivityTable
from compressor_gui.ui.session import Session
from compressor_gui.ui.theme import DARK, ChartColors

MAX_HISTOGRAM_VALUES = 2_000_000  # subsample bigger tensors: the shape of the histogram holds


def _short(name: str) -> str:
    """'/block2/conv1/Conv' -> 'block2/conv1': enough to tell layers apart on an axis."""
    parts = [p for p in name.strip("/").split("/") if p]
    return "/".join(parts[:-1]) if len(parts) > 1 else name


LEGEND_ROW_PX = 24


def _legend_above(plot: pg.PlotItem) -> pg.LegendItem:
    """A one-line legend in the title row, above the plot area: inside it, it would cover
    the bars wherever they are tall."""
    legend = pg.LegendItem(colCount=2)
    legend.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Maximum)
    plot.layout.removeItem(plot.titleLabel)
    plot.titleLabel.hide()
    plot.layout.addItem(legend, 0, 1, Qt.AlignmentFlag.AlignRight)
    plot.layout.setRowFixedHeight(0, LEGEND_ROW_PX)
    plot.legend = legend  # where addLegend keeps it: themes colour its labels
    return legend


class BarChart(pg.PlotWidget):
    """Paired bars per layer with clickable layers and a highlighted selection."""

    layer_clicked = Signal(str)

    def __init__(self, y_label: str, legend: tuple[str, str]) -> None:
        super().__init__()
        self._names: list[str] = []
        self._legend_names = legend
        self.setLabel("left", y_label)
        self.setMouseEnabled(x=True, y=False)
        self.showGrid(y=True)
        self.legend = _legend_above(self.plotItem)
        self.scene().sigMouseClicked.connect(self._clicked)

    def show_bars(
        self,
        names: list[str],
        before: np.ndarray,
        after: np.ndarray | None,
        selected: set[str],
        colors: ChartColors,
    ) -> None:
        self.clear()
        self.legend.clear()
        self._names = names
        x = np.arange(len(names), dtype=float)
        chosen = np.array([n in selected for n in names], dtype=bool)
        width = 0.4 if after is not None else 0.8
        offset = width / 2 if after is not None else 0.0
        series = [(before, -offset, colors.before, self._legend_names[0])]
        if after is not None:
            series.append((after, offset, colors.after, self._legend_names[1]))
        for values, shift, color, label in series:
            brushes = [pg.mkBrush(colors.highlight if c else color) for c in chosen]
            bars = pg.BarGraphItem(
                x=x + shift,
                height=values,
                width=width,
                brushes=brushes,
                brush=color,
                pen=pg.mkPen(None),  # `brush` is what the legend swatch shows
            )
            self.addItem(bars)
            self.legend.addItem(bars, label)
        axis = self.getAxis("bottom")
        labels = [_short(n) for n in names]
        # as many labels as fit side by side: each needs its text width plus a gap
        metrics = QFontMetrics(axis.style.get("tickFont") or axis.font())
        label_px = max((metrics.horizontalAdvance(t) for t in labels), default=0) + 16
        bar_px = max(self.plotItem.vb.width(), self.width() * 0.85) / max(len(names), 1)
        step = max(1, math.ceil(label_px / max(bar_px, 1)))
        axis.setTicks([[(i, t) for i, t in enumerate(labels) if i % step == 0], []])
        axis.setStyle(tickTextOffset=4)
        self.setXRange(-0.8, max(len(names), 1) - 0.2, padding=0)
        top = float(max(before.max(initial=0), 0 if after is None else after.max(initial=0)))
        self.setYRange(0, top * 1.08 or 1, padding=0)

    def _clicked(self, event) -> None:
        if not self._names:
            return
        point = self.plotItem.vb.mapSceneToView(event.scenePos())
        index = round(point.x())
        if 0 <= index < len(self._names):
            self.layer_clicked.emit(self._names[index])


class ChartsPanel(QTabWidget):
    """Tabs: size, sparsity, sensitivity, weight histogram, Pareto front of Auto plan."""

    layer_clicked = Signal(str)
    candidate_clicked = Signal(object)  # a core.search.Candidate

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._session = session
        self._selected: list[str] = []
        self._colors = DARK
        self.size_chart = BarChart("size (KB)", ("original", "planned"))
        self.sparsity_chart = BarChart("zeros (%)", ("now", "planned"))
        self.sensitivity_plot = pg.PlotWidget()
        self.sensitivity_plot.showGrid(y=True)
        self.histogram = pg.PlotWidget()
        self.histogram.setLabel("bottom", "weight value")
        self.histogram.setLabel("left", "count")
        self.addTab(self.size_chart, "Size per layer")
        self.addTab(self.sparsity_chart, "Sparsity")
        self.addTab(self.sensitivity_plot, "Sensitivity")
        self.addTab(self.histogram, "Weight histogram")
        self.pareto = ParetoPlot()
        self.pareto.candidate_clicked.connect(self.candidate_clicked)
        self.addTab(self.pareto, "Pareto")
        for chart in (self.size_chart, self.sparsity_chart):
            chart.layer_clicked.connect(self.layer_clicked)
        session.model_changed.connect(self.refresh)
        session.plan_changed.connect(self._plan_changed)
        session.sensitivity_changed.connect(self._sensitivity_changed)
        session.autoplan_changed.connect(self.refresh)
        self.currentChanged.connect(lambda _: self.refresh())

    def set_colors(self, colors: ChartColors) -> None:
        self._colors = colors
        plots = (self.size_chart, self.sparsity_chart, self.sensitivity_plot, self.histogram)
        for plot in (*plots, self.pareto):
            plot.setBackground(colors.background)
            for side in ("left", "bottom"):
                axis = plot.getAxis(side)
                axis.setPen(colors.foreground)
                axis.setTextPen(colors.foreground)
            if (legend := plot.getPlotItem().legend) is not None:
                legend.setLabelTextColor(colors.foreground)
        self.refresh()

    def set_selection(self, names: list[str]) -> None:
        self._selected = names
        self.refresh()

    @qthrottled(timeout=60)
    def _plan_changed(self) -> None:
        """Slider drags re-plan many times a second; redraw at most ~16 times a second."""
        if self.currentWidget() in (self.size_chart, self.sparsity_chart):
            self.refresh()

    @qthrottled(timeout=200)
    def _sensitivity_changed(self) -> None:
        if self.currentWidget() is self.sensitivity_plot:
            self._draw_sensitivity()

    def refresh(self) -> None:
        """Redraw only the visible tab: hidden ones redraw when shown."""
        inv = self._session.inventory
        if inv is None:
            return
        current = self.currentWidget()
        names = [layer.name for layer in inv.layers]
        selected = set(self._selected)
        if current is self.size_chart:
            before = np.array([layer.size_bytes for layer in inv.layers], float) / 1000
            after = self._predicted_sizes(names)
            self.size_chart.show_bars(names, before, after, selected, self._colors)
        elif current is self.sparsity_chart:
            now = np.array([layer.sparsity for layer in inv.layers]) * 100
            planned = (
                np.array(
                    [
                        max(layer.sparsity, self._session.plan.setting(layer.name).prune_ratio)
                        for layer in inv.layers
                    ]
                )
                * 100
            )
            self.sparsity_chart.show_bars(names, now, planned, selected, self._colors)
        elif current is self.sensitivity_plot:
            self._draw_sensitivity()
        elif current is self.histogram:
            self._draw_histogram()
        elif current is self.pareto:
            self.pareto.show_result(self._session.autoplan, self._colors)

    def _predicted_sizes(self, names: list[str]) -> np.ndarray | None:
        prediction = self._session.prediction()
        if prediction is None:
            return None
        per_layer = prediction.layers
        return np.array([per_layer[n].size_bytes for n in names], float) / 1000

    def _draw_sensitivity(self) -> None:
        """One line per layer over the swept options: measured drop, or nothing yet."""
        plot = self.sensitivity_plot
        plot.clear()
        table = self._session.sensitivity
        if table is None:
            plot.addItem(
                _message("Run Sensitivity to see how each layer's accuracy drops", self._colors)
            )
            return
        if plot.getPlotItem().legend is None:
            plot.addLegend(offset=(-10, 10))
            plot.getPlotItem().legend.setLabelTextColor(self._colors.foreground)
        plot.getPlotItem().legend.clear()
        chosen = [n for n in self._selected if n in table.layers] or _most_sensitive(table, 6)
        for i, name in enumerate(chosen):
            ys = [np.nan if p.drop is None else p.drop for p in table.curve(name)]
            pen = pg.mkPen(pg.intColor(i, hues=max(len(chosen), 3)), width=2)
            plot.plot(
                range(len(ys)),
                ys,
                pen=pen,
                symbol="o",
                symbolSize=6,
                name=_short(name),
                connect="finite",
            )
        plot.getAxis("bottom").setTicks([list(enumerate(table.options)), []])
        plot.setXRange(-0.5, len(table.options) - 0.4, padding=0)  # room for the last label
        plot.setLabel("bottom", "option")
        plot.setLabel("left", f"{table.metric} drop (points)")

    def _draw_histogram(self) -> None:
        plot = self.histogram
        plot.clear()
        loaded = self._session.opened.loaded if self._session.opened else None
        inv = self._session.inventory
        if not self._selected or loaded is None or loaded.onnx_model is None or inv is None:
            plot.addItem(_message("Select a layer to see its weight histogram", self._colors))
            return
        layer = inv.layer(self._selected[0])
        values = weight_array(loaded.onnx_model, layer.weight_names[0]).ravel()
        if values.size > MAX_HISTOGRAM_VALUES:
            values = values[:: values.size // MAX_HISTOGRAM_VALUES + 1]
        counts, edges = np.histogram(values.astype(np.float64), bins=80)
        plot.addItem(
            pg.BarGraphItem(
                x0=edges[:-1],
                x1=edges[1:],
                height=counts,
                brush=self._colors.after,
                pen=pg.mkPen(None),
            )
        )
        plot.setTitle(
            f"{_short(layer.name)} · {layer.weight_names[0]}", color=self._colors.foreground
        )


class ParetoPlot(pg.PlotWidget):
    """Auto plan's measured candidates: size (x smaller) against the measured metric; the
    Pareto front joined by a line, the chosen plan ringed; plans recovered by distillation
    drawn as stars, each joined by an arrow-less dotted line to the same plan before
    recovery; clicking a point emits it."""

    candidate_clicked = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.showGrid(x=True, y=True)
        self.setLabel("bottom", "size: times smaller than the original (predicted)")
        self.result: AutoPlanResult | None = None
        self.scatter: pg.ScatterPlotItem | None = None

    def show_result(self, result: AutoPlanResult | None, colors: ChartColors) -> None:
        self.clear()
        self.result = result
        self.scatter = None
        if result is None:
            self.addItem(_message("Run Auto plan to see size against accuracy", colors))
            return
        original = result.original_size_bytes
        front = sorted(result.pareto, key=lambda c: c.predicted_size_bytes)
        self.plot(
            [original / c.predicted_size_bytes for c in front],
            [c.measured_value * 100 for c in front],
            pen=pg.mkPen(colors.before, width=1.5, style=Qt.PenStyle.DashLine),
        )
        by_label = {c.label: c for c in result.candidates}
        for after in result.candidates:
            before = by_label.get(after.recovered_from or "")
            if before is not None:
                self.plot(
                    [original / before.predicted_size_bytes, original / after.predicted_size_bytes],
                    [before.measured_value * 100, after.measured_value * 100],
                    pen=pg.mkPen(colors.highlight, width=1.5, style=Qt.PenStyle.DotLine),
                )
        spots = [
            {
                "pos": (original / c.predicted_size_bytes, c.measured_value * 100),
                "data": c,
                "symbol": "star" if c.recovered else "o",
                "size": (16 if c is result.chosen else 11) + (4 if c.recovered else 0),
                "brush": pg.mkBrush(colors.highlight if c is result.chosen else colors.after),
                "pen": pg.mkPen(colors.foreground, width=2 if c is result.chosen else 0.5),
            }
            for c in result.candidates
        ]
        self.scatter = pg.ScatterPlotItem(spots=spots, hoverable=True, tip=_tip(original))
        self.scatter.sigClicked.connect(self._clicked)
        self.addItem(self.scatter)
        xs = [original / c.predicted_size_bytes for c in result.candidates]
        ys = [c.measured_value * 100 for c in result.candidates]
        span_x, span_y = max(xs) - min(xs) or 1.0, max(ys) - min(ys) or 1.0
        for x, y, names in _label_groups(result, xs, ys, span_x / 25, span_y / 25):
            text = pg.TextItem("\n".join(names), color=colors.foreground, anchor=(-0.02, 1.0))
            text.setPos(x, y)
            self.addItem(text)
        metric = "top-1" if result.metric == "top1" else "top-1 agreement"
        self.setLabel("left", f"{metric} (%)")
        recovered = any(c.recovered for c in result.candidates)
        self.setTitle(
            "★ after recovery by distillation, dotted from the same plan before"
            if recovered
            else "",
            color=colors.foreground,
        )
        self.setXRange(min(xs) - span_x * 0.05, max(xs) + span_x * 0.3, padding=0)
        self.setYRange(min(ys) - span_y * 0.1, max(ys) + span_y * 0.4, padding=0)  # labels

    def _clicked(self, _item, points, _event=None) -> None:
        if len(points):
            self.candidate_clicked.emit(points[0].data())


def _label_groups(result: AutoPlanResult, xs: list[float], ys: list[float], dx: float, dy: float):
    """Candidates drawn on (nearly) the same spot share one label, one name per line."""
    groups: list[tuple[float, float, list[str]]] = []
    for c, x, y in zip(result.candidates, xs, ys, strict=True):
        name = f"{c.label} (chosen)" if c is result.chosen else c.label
        for gx, gy, names in groups:
            if abs(gx - x) <= dx and abs(gy - y) <= dy:
                names.append(name)
                break
        else:
            groups.append((x, y, [name]))
    return groups


def _tip(original: int):
    def tip(x: float, y: float, data: Candidate) -> str:
        return (
            f"{data.label}\n{original / data.predicted_size_bytes:.2f}x smaller, "
            f"{y:.2f}% (drop {data.measured_drop:.2f} pts)\nclick to load this plan"
        )

    return tip


def _most_sensitive(table: SensitivityTable, count: int) -> list[str]:
    """Layers with the largest measured drop (inventory order while nothing is measured)."""

    def worst(name: str) -> float:
        return max((p.drop for p in table.curve(name) if p.drop is not None), default=-1.0)

    return sorted(table.layers, key=worst, reverse=True)[:count]


def _message(text: str, colors: ChartColors) -> pg.TextItem:
    item = pg.TextItem(text, color=colors.foreground, anchor=(0.5, 0.5))
    item.setPos(0.5, 0.5)
    return item
