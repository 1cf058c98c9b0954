"""The state one window edits: the open model, its inventory, the plan and its undo stack.

Widgets read from here and change the plan only through `edit_layers`/`set_plan`, so every
change is undoable and every view hears about it through the same signals.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from compressor_gui.core.inventory import ModelInventory
from compressor_gui.core.plan import CompressionPlan, Prediction, skipped_summary
from compressor_gui.core.search import AutoPlanResult
from compressor_gui.core.sensitivity import SensitivityPoint, SensitivityTable
from compressor_gui.core.workflows import OpenedModel
from compressor_gui.ui.undo import PlanEdit


class Session(QObject):
    model_changed = Signal()
    plan_changed = Signal()
    sensitivity_changed = Signal()
    autoplan_changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.opened: OpenedModel | None = None
        self.plan = CompressionPlan()
        self.undo_stack = QUndoStack(self)
        self.sensitivity: SensitivityTable | None = None
        self.autoplan: AutoPlanResult | None = None  # the last Auto plan's candidates
        self._gestures = itertools.count(1)
        self._gesture_start: tuple[int | None, CompressionPlan] = (None, self.plan)

    @property
    def inventory(self) -> ModelInventory | None:
        return self.opened.inventory if self.opened else None

    @property
    def path(self) -> Path | None:
        return self.opened.loaded.path if self.opened else None

    def set_model(self, opened: OpenedModel) -> None:
        self.opened = opened
        self.plan = CompressionPlan()
        self.sensitivity = None
        self.autoplan = None
        self.undo_stack.clear()
        self.model_changed.emit()
        self.plan_changed.emit()

    def set_sensitivity(self, table: SensitivityTable) -> None:
        self.sensitivity = table
        self.sensitivity_changed.emit()

    def set_autoplan(self, result: AutoPlanResult) -> None:
        self.autoplan = result
        self.autoplan_changed.emit()

    def add_sensitivity_point(self, point: SensitivityPoint) -> None:
        """Replace one point of the table as the sweep measures it (live curves)."""
        if self.sensitivity is None:
            return
        points = tuple(
            point if (p.layer, p.option) == (point.layer, point.option) else p
            for p in self.sensitivity.points
        )
        self.set_sensitivity(dataclasses.replace(self.sensitivity, points=points))

    def new_gesture(self) -> int:
        """A fresh id for one user gesture (a slider drag) whose steps merge into one undo."""
        return next(self._gestures)

    def edit_layers(self, names: list[str], gesture: int | None = None, **changes: Any) -> str:
        """Apply `changes` to the named layers that can take them (one undo step, merged
        over a gesture); return one line naming the layers skipped, "" if none was."""
        if not names:
            return ""
        # a drag from 32 to 8 passes 16: a layer that cannot take 8 keeps what it had before
        # the drag, not the 16 it took on the way
        if gesture is None or self._gesture_start[0] != gesture:
            self._gesture_start = (gesture, self.plan)
        base = self._gesture_start[1]
        if self.inventory is None:
            after, skipped = base.with_layers(names, **changes), []
        else:
            by_name = {layer.name: layer for layer in self.inventory.layers}
            layers = [by_name[name] for name in names]
            after, skipped = base.with_layers_that_fit(layers, **changes)
        if after != self.plan:
            what = ", ".join(f"{k}={v}" for k, v in changes.items())
            label = names[0] if len(names) == 1 else f"{len(names)} layers"
            key = None if gesture is None else (gesture, tuple(names), tuple(changes))
            self.undo_stack.push(PlanEdit(self, self.plan, after, f"{label}: {what}", key))
        return skipped_summary(skipped)

    def set_plan(self, plan: CompressionPlan, text: str) -> None:
        self.undo_stack.push(PlanEdit(self, self.plan, plan, text))

    def edit_count(self) -> int:
        default = self.plan.default
        return sum(1 for s in self.plan.layers.values() if s != default)

    def prediction(self) -> Prediction | None:
        """The plan's predicted size and MACs (instant: no graph rewrite); None without model."""
        return None if self.inventory is None else self.plan.predict(self.inventory)

    def _apply_plan(self, plan: CompressionPlan) -> None:
        self.plan = plan
        self.plan_changed.emit()
