"""Edit > INT8 form: the plan's INT8 form (auto, measured for the target CPU, or one form)."""

from __future__ import annotations

import dataclasses

from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QMenu, QWidget

from compressor_gui.core.int8_forms import FORM_CHOICES, FORMS
from compressor_gui.ui.session import Session

_TIPS = {
    "auto": "Measure the forms the target CPU family prefers on the calibration data and keep "
    "the fastest one that is as faithful as the best",
    **{
        name: f"{form.label}"
        + (
            ": the fastest on CPUs with VNNI/AMX and on ARM; its sums can saturate on x86 "
            "CPUs without VNNI"
            if name == "u8s8"
            else ""
        )
        for name, form in FORMS.items()
    },
}


class Int8FormMenu(QMenu):
    """Radio entries bound to `session.plan.int8_form`; a choice is one undoable plan edit."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__("INT8 form", parent)
        self.setObjectName("int8_form_menu")
        self.setToolTipsVisible(True)
        self._session = session
        self._group = QActionGroup(self)
        self.form_actions: dict[str, QAction] = {}
        for name in FORM_CHOICES:
            action = QAction("auto (measured for the target)" if name == "auto" else name, self)
            action.setCheckable(True)
            action.setToolTip(_TIPS[name])
            action.triggered.connect(lambda _checked=False, n=name: self.choose(n))
            self._group.addAction(action)
            self.addAction(action)
            self.form_actions[name] = action
        session.plan_changed.connect(self._sync)
        self._sync()

    def choose(self, name: str) -> None:
        plan = self._session.plan
        if plan.int8_form != name:
            self._session.set_plan(dataclasses.replace(plan, int8_form=name), f"INT8 form: {name}")

    def _sync(self) -> None:
        self.form_actions[self._session.plan.int8_form].setChecked(True)
