"""The window's view of the session: core/session.py's state, its events re-emitted as Qt
signals so widgets can connect to them like to any other signal.

Reads and edits go straight to the core session; this class adds no state and no rule.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from compressor_gui.core.session import Session as CoreSession


def _read(name: str, writable: bool = False) -> property:
    def get(self: Session) -> Any:
        return getattr(self.core, name)

    def put(self: Session, value: Any) -> None:
        setattr(self.core, name, value)

    return property(get, put if writable else None)


def _call(name: str) -> Any:
    def forward(self: Session, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.core, name)(*args, **kwargs)

    forward.__name__ = name
    forward.__doc__ = getattr(CoreSession, name).__doc__
    return forward


class Session(QObject):
    model_changed = Signal()
    plan_changed = Signal()
    sensitivity_changed = Signal()
    autoplan_changed = Signal()
    history_changed = Signal()  # undo/redo possible or their texts changed
    result_added = Signal(object)  # the Summary of a finished run

    opened = _read("opened")
    plan = _read("plan")
    inventory = _read("inventory")
    path = _read("path")
    sensitivity = _read("sensitivity")
    autoplan = _read("autoplan")
    history = _read("history")
    results = _read("results")
    data_path = _read("data_path", writable=True)
    compressed_path = _read("compressed_path", writable=True)

    set_model = _call("set_model")
    set_input_shapes = _call("set_input_shapes")
    set_sensitivity = _call("set_sensitivity")
    set_autoplan = _call("set_autoplan")
    add_sensitivity_point = _call("add_sensitivity_point")
    add_result = _call("add_result")
    new_gesture = _call("new_gesture")
    edit_layers = _call("edit_layers")
    set_plan = _call("set_plan")
    edit_count = _call("edit_count")
    prediction = _call("prediction")

    def __init__(self, parent: QObject | None = None, core: CoreSession | None = None) -> None:
        super().__init__(parent)
        self.core = core or CoreSession()
        for name in ("model_changed", "plan_changed", "sensitivity_changed", "autoplan_changed"):
            getattr(self.core, name).connect(getattr(self, name).emit)
        self.core.result_added.connect(self.result_added.emit)
        self.core.history.changed.connect(self.history_changed.emit)
