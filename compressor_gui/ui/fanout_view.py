"""Benchmark on several targets at once: a checkable list of the targets (the target panel's
choices) and the comparison table, each row arriving as its target finishes; a target that
failed or dropped its link is a red row with the reason."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from compressor_gui.core.data import Dataset
from compressor_gui.core.jobs import CancelToken, Job, Progress
from compressor_gui.targets.fanout import COLUMNS, FanoutRow, Leg, bench_fanout_job
from compressor_gui.ui.jobs_panel import JobsPanel

FAILED_BRUSH = QBrush(QColor(255, 205, 205))
FAILED_TEXT = QBrush(QColor(150, 0, 0))


class FanoutView(QWidget):
    """Which targets the Benchmark action runs on when more than one is checked, and what
    each of them measured."""

    started = Signal()  # a fan-out job began: show this view

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.targets = QListWidget()
        self.targets.setToolTip(
            "Check two or more: Benchmark then runs on all of them at once, one worker per "
            "machine, into the table"
        )
        self._legs: dict[str, Leg] = {}
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.score = QCheckBox("Also score on each target (Evaluate's data)")
        self.score.setToolTip(
            "Top-1 (with labels) and cosine to the original, as each target's own runtime "
            "computes them"
        )
        left = QVBoxLayout()
        left.addWidget(QLabel("Check two or more targets, then Benchmark"))
        left.addWidget(self.targets, 1)
        left.addWidget(self.score)
        box = QHBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.addLayout(left, 1)
        box.addWidget(self.table, 3)
        self.rows: list[FanoutRow] = []

    def set_choices(self, entries: Sequence[tuple[str, str, Leg]]) -> None:
        """Offer (key, label, leg) entries; what was checked stays checked."""
        checked = {leg_key for leg_key, _ in self._checked_items()}
        self._legs = {key: leg for key, _, leg in entries}
        self.targets.clear()
        for key, label, _ in entries:
            item = QListWidgetItem(label)
            item.setData(Qt.ItemDataRole.UserRole, key)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            state = Qt.CheckState.Checked if key in checked else Qt.CheckState.Unchecked
            item.setCheckState(state)
            self.targets.addItem(item)

    def _checked_items(self) -> list[tuple[str, QListWidgetItem]]:
        items = (self.targets.item(i) for i in range(self.targets.count()))
        return [
            (item.data(Qt.ItemDataRole.UserRole), item)
            for item in items
            if item.checkState() == Qt.CheckState.Checked
        ]

    def checked_legs(self) -> list[Leg]:
        return [self._legs[key] for key, _ in self._checked_items() if key in self._legs]

    def start(
        self,
        jobs: JobsPanel,
        models: list[tuple[str, Path]],
        data: Callable[[], Dataset] | None = None,
        input_shapes: Callable[[], dict[str, list[int]]] | None = None,
    ) -> bool:
        """Run the models on every checked target as one job (scored on `data()`, loaded in
        the worker, when the user asks; fed at `input_shapes()`); False (nothing started)
        when fewer than two are checked, so Benchmark uses the one target of the toolbar."""
        legs = self.checked_legs()
        if len(legs) < 2:
            return False
        data = data if self.score.isChecked() else None
        self.rows = []
        self.table.setRowCount(0)

        def job(token: CancelToken) -> Job[list[FanoutRow]]:
            dataset = data() if data is not None else None
            sized = legs
            if input_shapes is not None:
                shapes = input_shapes()
                sized = [
                    replace(leg, config=replace(leg.config, input_shapes=shapes)) for leg in legs
                ]
            return (yield from bench_fanout_job(sized, models, token, dataset))

        name = f"Benchmark on {len(legs)} targets"
        if not jobs.start(name, job, self.show_rows, progress=self._progress):
            return False
        self.started.emit()
        return True

    def _progress(self, step: Progress) -> None:
        if isinstance(step.payload, FanoutRow):
            self.rows.append(step.payload)
            self._add(step.payload)

    def show_rows(self, rows: list[FanoutRow]) -> None:
        """Every row, in target order, once all have finished."""
        self.rows = list(rows)
        self.table.setRowCount(0)
        for row in rows:
            self._add(row)

    def _add(self, row: FanoutRow) -> None:
        index = self.table.rowCount()
        self.table.insertRow(index)
        for column, text in enumerate(row.cells()):
            item = QTableWidgetItem(text)
            if not row.ok:
                item.setBackground(FAILED_BRUSH)
                item.setForeground(FAILED_TEXT)
                item.setToolTip(row.error)
            self.table.setItem(index, column, item)
