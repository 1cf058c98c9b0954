"""Distillation in the window: the options dialog and the live training curves.

The curves show what the job yields after every epoch (`core.distill_types.EpochStats`): training
and validation loss, validation top-1 and agreement with the teacher (for a dense model such
as a detector: the output cosine to it), the best epoch marked.
"Stop, keep best" ends the training early; the run then writes its best epoch as planned.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from compressor_gui.core.distill_types import (
    DistillOptions,
    DistillReport,
    EpochStats,
    fidelity_words,
)
from compressor_gui.core.jobs import CancelToken
from compressor_gui.ui.theme import DARK, ChartColors


class DistillDialog(QDialog):
    """Epochs, QAT, threads and optional unlabeled data for a Compress run with recovery
    training (the teacher labels those samples: more to learn from than labels alone)."""

    def __init__(self, data_text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Distill")
        self.setObjectName("distill_dialog")
        defaults = DistillOptions()
        self.epochs = QSpinBox(minimum=1, maximum=1000, value=defaults.epochs)
        self.qat = QCheckBox("simulate the plan's bit widths while training (QAT)", checked=True)
        cores = os.cpu_count() or 1
        self.threads = QSpinBox(minimum=1, maximum=cores, value=cores, suffix=" threads")
        form = QFormLayout(self)
        form.addRow(
            QLabel(
                "Compress with recovery: prune as planned, train the result towards the\n"
                "original (knowledge distillation), then quantize and write it."
            )
        )
        form.addRow("Epochs", self.epochs)
        form.addRow(self.qat)
        form.addRow("Use", self.threads)
        form.addRow("Train on", QLabel(data_text))
        self.unlabeled_edit = QLineEdit(placeholderText="none (optional .npz or image folder)")
        browse = QPushButton(".npz…")
        browse.clicked.connect(self._browse_unlabeled)
        folder = QPushButton("Image folder…")
        folder.clicked.connect(self._browse_unlabeled_folder)
        row = QHBoxLayout()
        row.addWidget(self.unlabeled_edit)
        row.addWidget(browse)
        row.addWidget(folder)
        form.addRow("Also unlabeled", row)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)

    def _browse_unlabeled(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Unlabeled training data", "", "*.npz")
        if path:
            self.unlabeled_edit.setText(path)

    def _browse_unlabeled_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Unlabeled images (with preprocess.json)")
        if path:
            self.unlabeled_edit.setText(path)

    def unlabeled(self) -> Path | None:
        """More training samples without labels, or None."""
        text = self.unlabeled_edit.text().strip()
        return Path(text) if text else None

    def options(self) -> DistillOptions:
        return DistillOptions(
            epochs=self.epochs.value(), qat=self.qat.isChecked(), threads=self.threads.value()
        )


class TrainingPanel(QWidget):
    """Loss (top) and validation accuracy (bottom) per epoch, growing as epochs finish."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loss_plot = pg.PlotWidget()
        self.loss_plot.setLabel("left", "loss")
        self.accuracy_plot = pg.PlotWidget()
        self.accuracy_plot.setLabel("left", "validation (%)")
        self.accuracy_plot.setLabel("bottom", "epoch")
        for plot in (self.loss_plot, self.accuracy_plot):
            plot.showGrid(x=True, y=True)
            plot.addLegend(offset=(-10, 10))
        self.status = QLabel("Run > Distill… trains the compressed model; its curves show here.")
        self.stop_button = QPushButton("Stop, keep best")
        self.stop_button.setToolTip("End training now and write the best epoch so far")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        row = QHBoxLayout()
        row.addWidget(self.status, 1)
        row.addWidget(self.stop_button)
        box = QVBoxLayout(self)
        box.setContentsMargins(4, 4, 4, 4)
        box.addLayout(row)
        box.addWidget(self.loss_plot, 1)
        box.addWidget(self.accuracy_plot, 1)
        self.history: list[EpochStats] = []
        self._finish: CancelToken | None = None
        self._colors = DARK

    def begin(self, finish: CancelToken) -> None:
        """A new run: empty curves; `finish` is what "Stop, keep best" sets."""
        self.history = []
        self._finish = finish
        self.stop_button.setEnabled(True)
        self.status.setText("training: measuring the student before it trains…")
        self._draw()

    def add(self, stats: EpochStats) -> None:
        self.history.append(stats)
        top1 = "" if stats.val_top1 is None else f", validation top-1 {stats.val_top1:.1%}"
        label = "before training" if stats.epoch == 0 else f"epoch {stats.epoch}/{stats.epochs}"
        self.status.setText(
            f"{label}: validation loss {stats.val_loss:.4f}{top1}, {fidelity_words(stats)}"
        )
        self._draw()

    def end(self, report: DistillReport | None) -> None:
        """Training over (report None: the run failed or was cancelled; nothing to do when
        no training was running)."""
        if report is None and self._finish is None:
            return
        self.stop_button.setEnabled(False)
        self._finish = None
        if report is None:
            self.status.setText("training ended without a model")
            return
        best = report.best
        top1 = "" if best.val_top1 is None else f", validation top-1 {best.val_top1:.1%}"
        stopped = " (stopped early)" if report.stopped_early else ""
        self.status.setText(
            f"best epoch {report.best_epoch}{top1}, {fidelity_words(best)}{stopped}"
        )

    def stop(self) -> None:
        if self._finish is not None:
            self._finish.cancel()
            self.stop_button.setEnabled(False)
            self.status.setText("stopping after this batch; the best epoch will be written…")

    def set_colors(self, colors: ChartColors) -> None:
        self._colors = colors
        for plot in (self.loss_plot, self.accuracy_plot):
            plot.setBackground(colors.background)
            for side in ("left", "bottom"):
                plot.getAxis(side).setPen(colors.foreground)
                plot.getAxis(side).setTextPen(colors.foreground)
        self._draw()

    def _draw(self) -> None:
        epochs = [s.epoch for s in self.history]
        trained = [s for s in self.history if s.train_loss is not None]
        dense = any(s.val_cosine is not None for s in self.history)
        self.accuracy_plot.setLabel("left", "cosine to the original" if dense else "validation (%)")
        closeness = [s.val_cosine if dense else 100 * s.val_agreement for s in self.history]
        curves = (
            (self.loss_plot, "train", [s.epoch for s in trained], [s.train_loss for s in trained]),
            (self.loss_plot, "validation", epochs, [s.val_loss for s in self.history]),
            (self.accuracy_plot, "cosine" if dense else "agreement", epochs, closeness),
        )
        for plot in (self.loss_plot, self.accuracy_plot):
            plot.clear()
        colors = (self._colors.before, self._colors.after, self._colors.after)
        for (plot, name, x, y), color in zip(curves, colors, strict=True):
            plot.plot(x, y, pen=pg.mkPen(color, width=2), symbol="o", symbolSize=5, name=name)
        labeled = [s for s in self.history if s.val_top1 is not None]
        if labeled:
            self.accuracy_plot.plot(
                [s.epoch for s in labeled],
                [100 * s.val_top1 for s in labeled],
                pen=pg.mkPen(self._colors.highlight, width=2),
                symbol="o",
                symbolSize=5,
                name="top-1",
            )
        best = [s for s in self.history if s.best]
        if best:
            mark = pg.InfiniteLine(
                best[-1].epoch, pen=pg.mkPen(self._colors.highlight, style=Qt.PenStyle.DashLine)
            )
            self.loss_plot.addItem(mark)
