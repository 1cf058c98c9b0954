"""The Deploy tab, the benchmark sweep of one plan: every form the target measured (runtime x
precision x plan) in one sortable table and one chart (quality against latency), the
recommended one marked with its reason; a click on a row exports that form as a deployment
folder, a click on a point selects its row. The forms' files live in a work folder this view
owns until the next deploy or until the window closes."""

from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from compressor_gui.core.advice import in_window_words
from compressor_gui.core.data import Dataset
from compressor_gui.core.deploy import (
    RECOVERY_EPOCHS,
    REFERENCE_KEY,
    CandidateRow,
    DeployResult,
)
from compressor_gui.core.deploy_report import write_deployment
from compressor_gui.core.errors import CompressorError
from compressor_gui.formatting import human_bytes
from compressor_gui.targets.deploy import default_work_dir
from compressor_gui.ui.deploy_chart import FormsPlot

COLUMNS = (
    "form",
    "runtime",
    "precision",
    "plan",
    "p50 ms",
    "x FP32",
    "p90 ms",
    "p99 ms",
    "per s",
    "top-1",
    "cosine",
    "size",
)


class DeployView(QWidget):
    """Shows a DeployResult; `exported(folder)` or `failed(message)` after a row's export."""

    exported = Signal(Path)
    failed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result: DeployResult | None = None
        self._sample: Dataset | None = None
        self.work_dir: Path | None = None
        self.summary = QLabel(
            "Run > Deploy builds every form the target can run, measures "
            "each there and recommends one."
        )
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setToolTip("Click a row to export that form as a deployment folder")
        self.table.cellClicked.connect(lambda row, _column: self.ask_export(row))
        self.table.verticalHeader().setVisible(False)
        # the target's order until a header is clicked (Qt would sort by column 0 at once)
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)
        self.chart = FormsPlot()
        self.chart.form_clicked.connect(self.select_form)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.chart)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        self.recovery_epochs = QSpinBox(minimum=0, maximum=500, value=RECOVERY_EPOCHS)
        self.recovery_epochs.setSuffix(" epochs")
        self.recovery_epochs.setToolTip(
            "With labelled data, Deploy's channel-pruned forms are trained back towards the "
            "original (distillation) this long before they are quantized and measured; 0: not "
            "trained back (as --recovery-epochs in the command line)"
        )
        options = QHBoxLayout()
        options.addWidget(QLabel("Train pruned forms back:"))
        options.addWidget(self.recovery_epochs)
        options.addStretch(1)
        box = QVBoxLayout(self)
        box.addLayout(options)
        box.addWidget(self.summary)
        box.addWidget(split, 1)

    def new_work_dir(self) -> Path:
        """A fresh folder for the next deploy's forms; the previous one goes."""
        self.discard()
        self.work_dir = default_work_dir()
        return self.work_dir

    def discard(self) -> None:
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir = None

    def show_result(self, result: DeployResult, sample: Dataset) -> None:
        self.result, self._sample = result, sample
        self.summary.setText(
            f"<b>Recommended: {result.recommendation.reason}</b><br>"
            f"{result.target}: {result.machine.summary}<br>latency: {result.measurement}<br>"
            + "<br>".join(in_window_words(note) for note in result.notes)
            + "<br>Click a row to export that form, a point to find its row, a header to sort."
        )
        self.table.setSortingEnabled(False)  # rows stay where they are put while filling
        self.table.setRowCount(len(result.rows))
        reference = result.row(REFERENCE_KEY).p50_ms
        for index, row in enumerate(result.rows):
            for column, (text, order) in enumerate(_cells(row, reference)):
                item = _SortableItem(text, order)
                item.setData(Qt.ItemDataRole.UserRole, row.key)
                item.setToolTip(row.error or row.note)
                if row.key == result.recommendation.key:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(index, column, item)
        self.table.setSortingEnabled(True)
        self.chart.show_result(result)

    def select_form(self, key: str) -> None:
        """Select the row of form `key` (wherever sorting has put it)."""
        for index in range(self.table.rowCount()):
            if self.table.item(index, 0).data(Qt.ItemDataRole.UserRole) == key:
                self.table.selectRow(index)
                self.table.scrollToItem(self.table.item(index, 0))

    def ask_export(self, row: int) -> None:
        """Ask where, then export the form in `row`."""
        if self.result is None:
            return
        key = self.table.item(row, 0).data(Qt.ItemDataRole.UserRole)
        name, _ = QFileDialog.getSaveFileName(
            self,
            f"Export {self.result.row(key).label} as a deployment folder",
            str(Path.home() / f"{self.result.model_path.stem}-{key}"),
        )
        if name:
            self.export(key, Path(name))

    def export(self, key: str, folder: Path) -> None:
        try:
            written = write_deployment(self.result, folder, self._sample, key)
        except CompressorError as exc:
            self.failed.emit(str(exc))
            return
        self.exported.emit(written)


class _SortableItem(QTableWidgetItem):
    """A cell that sorts by its number (unmeasured cells last), not by its text."""

    def __init__(self, text: str, order: float | str) -> None:
        super().__init__(text)
        self.order = order

    def __lt__(self, other: QTableWidgetItem) -> bool:
        mine, theirs = self.order, getattr(other, "order", other.text())
        if isinstance(mine, float) and isinstance(theirs, float):
            return mine < theirs
        return str(mine) < str(theirs)


def _cells(row: CandidateRow, reference_ms: float | None) -> tuple[tuple[str, float | str], ...]:
    """(text, sort key) per column; numbers sort as numbers, unmeasured ones last."""
    p50, p90, p99, rate, _power, top1, cosine = row.measured_cells
    speed = reference_ms / row.p50_ms if reference_ms and row.p50_ms else None
    numbers = (
        (p50, row.p50_ms),
        ("" if speed is None else f"{speed:.2f}x", speed),
        (p90, row.p90_ms),
        (p99, row.p99_ms),
        (rate, row.throughput_per_s),
        (top1, row.top1),
        (cosine, row.cosine),
        (human_bytes(row.size_bytes), float(row.size_bytes)),
    )
    label = row.label + (f" - {row.error[:80]}" if row.error else "")
    words = ((label, row.label), *((word, word) for word in (row.runtime, row.precision, row.plan)))
    return (
        *words,
        *((text, float("inf") if value is None else float(value)) for text, value in numbers),
    )
