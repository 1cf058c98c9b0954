"""The Deploy tab: every form the target measured (runtime x precision x plan) in one table
with the recommended one marked and its reason; a click on a row exports that form as a
deployment folder. The forms' files live in a work folder this view owns until the next
deploy or until the window closes."""

from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from compressor_gui.core.data import Dataset
from compressor_gui.core.deploy import CandidateRow, DeployResult
from compressor_gui.core.deploy_report import write_deployment
from compressor_gui.core.errors import CompressorError
from compressor_gui.formatting import human_bytes
from compressor_gui.targets.deploy import default_work_dir

COLUMNS = (
    "form",
    "runtime",
    "precision",
    "plan",
    "p50 ms",
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
        box = QVBoxLayout(self)
        box.addWidget(self.summary)
        box.addWidget(self.table, 1)

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
            + "<br>".join(result.notes)
            + "<br>Click a row to export that form."
        )
        self.table.setRowCount(len(result.rows))
        for index, row in enumerate(result.rows):
            cells = _cells(row)
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, row.key)
                item.setToolTip(row.error or row.note)
                if row.key == result.recommendation.key:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(index, column, item)

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


def _cells(row: CandidateRow) -> tuple[str, ...]:
    return (
        row.label + (f" - {row.error[:80]}" if row.error else ""),
        row.runtime,
        row.precision,
        row.plan,
        *row.measured_cells,
        human_bytes(row.size_bytes),
    )
