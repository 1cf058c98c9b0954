"""The "Layer error" tab: where a compressed model lost its accuracy, layer by layer.

After each Compress (and from Run ▸ Where did accuracy go?) the core compare job runs in a
child process; its result is drawn worst first, linked to the layer table both ways, and the
worst (or the selected) layers are one click from being kept float through an undoable plan
edit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from compressor_gui.core.compare import KEEP_FLOAT, CompareResult, compare_job
from compressor_gui.core.jobs import CancelToken, job_in_child_process
from compressor_gui.core.workflows import evaluation_data
from compressor_gui.ui.charts import BarChart
from compressor_gui.ui.theme import DARK, ChartColors

HINT = "Compress, then Run ▸ Where did accuracy go? to see which layers lose accuracy"


class LayerErrorView(QWidget):
    """A summary line, bars of each layer's output error and the share it adds itself
    (worst first), and the buttons that keep layers float."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result: CompareResult | None = None
        self._selected: list[str] = []
        self._colors = DARK
        self.summary = QLabel(HINT)
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.chart = BarChart("relative error (%)", ("output error", "added by the layer"))
        self.count = QSpinBox()
        self.count.setRange(1, 50)
        self.count.setValue(3)
        self.count.setPrefix("worst ")
        self.keep_worst = QPushButton("Keep worst 3 float")
        self.keep_selected = QPushButton("Keep selected float")
        self.count.valueChanged.connect(lambda n: self.keep_worst.setText(f"Keep worst {n} float"))
        buttons = QHBoxLayout()
        buttons.addWidget(self.count)
        buttons.addWidget(self.keep_worst)
        buttons.addWidget(self.keep_selected)
        buttons.addStretch(1)
        box = QVBoxLayout(self)
        box.setContentsMargins(4, 4, 4, 4)
        box.addWidget(self.summary)
        box.addWidget(self.chart, 1)
        box.addLayout(buttons)
        self.show_result(None)

    def worst(self) -> tuple[str, ...]:
        return self.result.worst(self.count.value()) if self.result else ()

    def set_selection(self, names: list[str]) -> None:
        self._selected = names
        self.keep_selected.setEnabled(self.result is not None and bool(names))
        self._draw()

    def set_colors(self, colors: ChartColors) -> None:
        self._colors = colors
        self.chart.setBackground(colors.background)
        for side in ("left", "bottom"):
            self.chart.getAxis(side).setPen(colors.foreground)
            self.chart.getAxis(side).setTextPen(colors.foreground)
        self.chart.legend.setLabelTextColor(colors.foreground)
        self._draw()

    def show_result(self, result: CompareResult | None) -> None:
        self.result = result
        self.summary.setText(HINT if result is None else summary_text(result))
        self.keep_worst.setEnabled(bool(self.worst()))
        self.keep_selected.setEnabled(result is not None and bool(self._selected))
        self._draw()

    def _draw(self) -> None:
        compared = [e for e in self.result.layers if e.compared] if self.result else []
        if not compared:
            self.chart.clear()
            self.chart.legend.clear()
            return
        names = [e.name for e in compared]
        output = np.array([e.relative_error for e in compared]) * 100
        added = np.array([max(e.added_error or 0.0, 0.0) for e in compared]) * 100
        self.chart.show_bars(names, output, added, set(self._selected), self._colors)


def summary_text(result: CompareResult) -> str:
    """Totals, then the worst layer in words (and, for QDQ, whether the CPU's kernel or the
    quantization itself lost it)."""
    if result.fidelity_only:
        parts = [f"random inputs: fidelity only ({result.samples} samples)"]
    else:
        parts = [f"{result.samples} samples of {Path(result.data_source).name}"]
        if result.top1_original is not None and result.top1_compressed is not None:
            parts.insert(0, f"top-1 {result.top1_original:.2%} → {result.top1_compressed:.2%}")
    parts.append(f"output SQNR {result.output_sqnr_db:.1f} dB")
    if result.measured_on is not None:
        parts.append(f"measured on {result.measured_on.cpu_model}")
    text = " · ".join(parts)
    worst = next((e for e in result.layers if e.compared), None)
    if worst is not None and worst.added_error is not None:
        text += (
            f"\nworst: {worst.name} adds {worst.added_error:.3f} relative error "
            f"(output SQNR {worst.sqnr_db:.1f} dB)"
        )
        if worst.simulated_sqnr_db is not None and worst.simulated_sqnr_db > worst.sqnr_db + 10:
            text += (
                f"; {worst.simulated_sqnr_db:.1f} dB with its QDQ computed in float: this "
                "CPU's INT8 kernel loses it, not the quantization (try another INT8 form)"
            )
    return text


class LayerErrorFeature:
    """Wires the tab into the window: the Run menu action, the job after each Compress,
    selection both ways and the keep-float plan edits."""

    def __init__(self, window: QMainWindow) -> None:  # the MainWindow, typed by its Qt base
        self.window = window
        self.view = LayerErrorView()
        window.charts.addTab(self.view, "Layer error")
        self.action = QAction("Where did accuracy go?", window)
        self.action.setToolTip(
            "Compare the compressed model's activations with the original's, layer by layer, "
            "on the chosen data"
        )
        self.action.triggered.connect(self.compare)
        self._after_compress = False
        self.view.chart.layer_clicked.connect(window.select_layers)
        self.view.keep_worst.clicked.connect(lambda: self.keep_float(self.view.worst()))
        self.view.keep_selected.clicked.connect(lambda: self.keep_float(window.selected_layers()))
        window.table.selectionModel().selectionChanged.connect(
            lambda *_: self.view.set_selection(window.selected_layers())
        )
        window.session.model_changed.connect(lambda: self.view.show_result(None))
        window.jobs.busy_changed.connect(self._busy_changed)

    def compare_when_idle(self) -> None:
        """Start the comparison as soon as the job that asked for it (Compress) is done."""
        self._after_compress = True

    def compare(self) -> None:
        window = self.window
        loaded = window.session.opened.loaded if window.session.opened else None
        if loaded is None or loaded.onnx_model is None:
            return
        compressed, chosen = window.session.compressed_path, window.session.data_path
        if compressed is None:
            window.show_error("Where did accuracy go?", "Compress the model first.")
            return

        def job(token: CancelToken):  # a generator: the data loads in the worker too
            dataset = evaluation_data(loaded, chosen)
            return (
                yield from job_in_child_process(
                    compare_job, loaded.path, compressed, dataset, cancel=token, what="compare"
                )
            )

        window.jobs.start(f"Compare {compressed.name}", job, self._compared)

    def _compared(self, result: CompareResult) -> None:
        self.view.show_result(result)
        for note in result.notes:
            self.window.jobs.log_line(f"note: {note}")
        self.window.views.setCurrentWidget(self.window.charts)
        self.window.charts.setCurrentWidget(self.view)

    def keep_float(self, names: tuple[str, ...] | list[str]) -> None:
        """One undo step: the named layers neither quantized nor pruned."""
        self.window.session.edit_layers(list(names), **KEEP_FLOAT)

    def _busy_changed(self, busy: bool) -> None:
        if not busy and self._after_compress:
            self._after_compress = False
            if self.window.session.compressed_path is not None:
                self.compare()
