"""The state one user edits, without Qt: the open model, the plan and its undo history, the
last measurements, the results of every run, and plain-Python events.

The window is one view of it (ui/session.py re-emits the events as Qt signals); a script or a
test can drive the same session headless. The plan changes only through `edit_layers` and
`set_plan`, so every change is undoable and every listener hears about it.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compressor_gui.core.inventory import ModelInventory
from compressor_gui.core.plan import CompressionPlan, Prediction, skipped_summary
from compressor_gui.core.search import AutoPlanResult
from compressor_gui.core.sensitivity import SensitivityPoint, SensitivityTable
from compressor_gui.core.summaries import Summary
from compressor_gui.core.workflows import OpenedModel


class Event:
    """A list of callbacks called in order with the event's arguments."""

    def __init__(self) -> None:
        self._listeners: list[Callable[..., Any]] = []

    def connect(self, listener: Callable[..., Any]) -> None:
        self._listeners.append(listener)

    def disconnect(self, listener: Callable[..., Any]) -> None:
        self._listeners.remove(listener)

    def emit(self, *args: Any) -> None:
        for listener in list(self._listeners):
            listener(*args)


@dataclass
class PlanChange:
    """One undo step: the plan before and after, what the user did, and the gesture it
    belongs to (steps of one slider drag share a key and merge into one step)."""

    before: CompressionPlan
    after: CompressionPlan
    text: str
    merge_key: tuple | None = None


class UndoHistory:
    """Plan changes in order, with a position: undo walks back, redo forward, a new change
    drops what was undone. `apply` puts a plan into effect."""

    def __init__(self, apply: Callable[[CompressionPlan], None]) -> None:
        self._apply = apply
        self._steps: list[PlanChange] = []
        self._index = 0  # steps before this are in effect
        self.changed = Event()

    def push(self, change: PlanChange) -> None:
        """Apply `change` and record it, merged into the last step of the same gesture."""
        del self._steps[self._index :]
        last = self._steps[-1] if self._steps else None
        self._apply(change.after)
        if last is not None and change.merge_key is not None and last.merge_key == change.merge_key:
            last.after, last.text = change.after, change.text
        else:
            self._steps.append(change)
            self._index = len(self._steps)
        self.changed.emit()

    def undo(self) -> None:
        if self.can_undo():
            self._index -= 1
            self._apply(self._steps[self._index].before)
            self.changed.emit()

    def redo(self) -> None:
        if self.can_redo():
            self._apply(self._steps[self._index].after)
            self._index += 1
            self.changed.emit()

    def clear(self) -> None:
        self._steps.clear()
        self._index = 0
        self.changed.emit()

    def count(self) -> int:
        return len(self._steps)

    def can_undo(self) -> bool:
        return self._index > 0

    def can_redo(self) -> bool:
        return self._index < len(self._steps)

    def undo_text(self) -> str:
        return self._steps[self._index - 1].text if self.can_undo() else ""

    def redo_text(self) -> str:
        return self._steps[self._index].text if self.can_redo() else ""


class Session:
    """The open model, its plan with undo history, sensitivity and Auto plan results, the
    chosen data, the last compressed model and the results of every run."""

    def __init__(self) -> None:
        self.opened: OpenedModel | None = None
        self._graph_bytes = 0
        self.plan = CompressionPlan()
        self.history = UndoHistory(self._apply_plan)
        self.sensitivity: SensitivityTable | None = None
        self.autoplan: AutoPlanResult | None = None  # the last Auto plan's candidates
        self.data_path: Path | None = None  # chosen by the user; else the data rule decides
        self.compressed_path: Path | None = None  # the last model Compress wrote
        self.results: list[Summary] = []
        self.model_changed = Event()
        self.plan_changed = Event()
        self.sensitivity_changed = Event()
        self.autoplan_changed = Event()
        self.result_added = Event()  # called with the Summary
        self._gestures = itertools.count(1)
        self._gesture_start: tuple[int | None, CompressionPlan] = (None, self.plan)

    @property
    def inventory(self) -> ModelInventory | None:
        return self.opened.inventory if self.opened else None

    @property
    def path(self) -> Path | None:
        return self.opened.loaded.path if self.opened else None

    def set_model(self, opened: OpenedModel) -> None:
        """A newly opened model: a fresh plan and history; the old model's compressed file
        and measurements no longer apply."""
        self.opened = opened
        self._graph_bytes = _graph_bytes(opened)
        self.plan = CompressionPlan()
        self.sensitivity = None
        self.autoplan = None
        self.compressed_path = None
        self.history.clear()
        self.model_changed.emit()
        self.plan_changed.emit()

    def set_input_shapes(self, opened: OpenedModel) -> None:
        """The same model with the user's input shapes (its inventory counted at them): the
        plan, its history and the measurements stay; every job from now on runs at them."""
        self.opened = opened
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

    def add_result(self, summary: Summary) -> None:
        self.results.append(summary)
        self.result_added.emit(summary)

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
            self.history.push(PlanChange(self.plan, after, f"{label}: {what}", key))
        return skipped_summary(skipped)

    def set_plan(self, plan: CompressionPlan, text: str) -> None:
        self.history.push(PlanChange(self.plan, plan, text))

    def edit_count(self) -> int:
        default = self.plan.default
        return sum(1 for s in self.plan.layers.values() if s != default)

    def prediction(self) -> Prediction | None:
        """The plan's predicted size and MACs (instant: no graph rewrite); None without model."""
        if self.inventory is None:
            return None
        prediction = self.plan.predict(self.inventory)
        return dataclasses.replace(prediction, graph_bytes=self._graph_bytes)

    def _apply_plan(self, plan: CompressionPlan) -> None:
        self.plan = plan
        self.plan_changed.emit()


def _graph_bytes(opened: OpenedModel) -> int:
    """What the opened ONNX file holds besides its weights (0 for torch files: their
    compressed form is a new ONNX file)."""
    if opened.loaded.format != "onnx":
        return 0
    try:
        on_disk = opened.loaded.file_size_bytes
    except OSError:
        return 0
    return max(0, on_disk - opened.inventory.total_bytes)
