"""Results of runs: original vs compressed side by side, and a history of every run."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFrame,
    QHeaderView,
    QListWidget,
    QPlainTextEdit,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from compressor_gui.core.advice import in_window_words
from compressor_gui.core.summaries import Summary


class ResultsView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.history = QListWidget()
        self.history.setMinimumWidth(180)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Metric", "Original", "Compressed", "Change"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        # notes, then what was done to each layer: scrolls, however many layers there are
        self.notes = QPlainTextEdit()
        self.notes.setReadOnly(True)
        self.notes.setFrameShape(QFrame.Shape.NoFrame)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.table)
        right.addWidget(self.notes)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 2)
        split = QSplitter()
        split.addWidget(self.history)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        split.setSizes([280, 700])  # room for "12:00:00  Benchmark (target) · model"
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(split)
        self.records: list[Summary] = []
        self.history.currentRowChanged.connect(self._show)

    def add(self, record: Summary) -> None:
        self.records.append(record)
        text = f"{record.when}  {record.title} · {record.model}"
        self.history.addItem(text)
        self.history.item(self.history.count() - 1).setToolTip(text)
        self.history.setCurrentRow(len(self.records) - 1)

    def _show(self, row: int) -> None:
        if not 0 <= row < len(self.records):
            return
        record = self.records[row]
        self.table.setRowCount(len(record.rows))
        for r, comp in enumerate(record.rows):
            for c, text in enumerate((comp.metric, comp.original, comp.compressed, comp.change)):
                item = QTableWidgetItem(text)
                if c:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                self.table.setItem(r, c, item)
        self.notes.setPlainText(in_window_words("\n".join((*record.notes, *record.layers))))
