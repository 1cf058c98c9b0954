"""Model ▸ Input shape…: the size each dynamic input takes, asked once per model and used by
every job (the GUI's answer to what `--input-shape` is on the command line)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnx
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from compressor_gui.core.errors import CompressorError
from compressor_gui.core.shapes import (
    dims_text,
    input_specs,
    parse_shape,
    resolve_input_shapes,
    shape_text,
)

ERROR_STYLE = "color: #d04040;"


class InputShapeDialog(QDialog):
    """One field per input with a dynamic dim, prefilled with `current`; the answer is
    checked against the model (rank, fixed dims) before the dialog closes."""

    def __init__(
        self,
        model: onnx.ModelProto,
        current: Mapping[str, Sequence[int]],
        reason: str,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Input shape")
        self.setObjectName("input_shape_dialog")
        self.model = model
        self.specs = input_specs(model)
        self.fields: dict[str, QLineEdit] = {}
        self._fixed = {s.name: tuple(s.shape) for s in self.specs if None not in s.shape}
        self.explanation = explanation = QLabel(reason)
        explanation.setWordWrap(True)
        explanation.setMinimumWidth(460)
        form = QFormLayout()
        for spec in self.specs:
            label = f"{spec.name} {shape_text(spec.shape)}"
            if spec.name in self._fixed:
                form.addRow(label, QLabel(dims_text(spec.shape)))
                continue
            field = QLineEdit(dims_text(current[spec.name]) if spec.name in current else "")
            field.setPlaceholderText("e.g. 1x3x640x640")
            field.setObjectName(f"shape_{spec.name}")
            self.fields[spec.name] = field
            form.addRow(label, field)
        self.error = QLabel("")
        self.error.setWordWrap(True)
        self.error.setStyleSheet(ERROR_STYLE)
        self.error.hide()
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Use these shapes")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        box = QVBoxLayout(self)
        box.addWidget(explanation)
        box.addLayout(form)
        box.addWidget(self.error)
        box.addWidget(buttons)
        self._answer: tuple[tuple[int, ...], ...] = ()

    def accept(self) -> None:
        try:
            self._answer = self._read()
        except CompressorError as exc:
            self.show_error(str(exc))
            return
        super().accept()

    def show_error(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()

    def shapes(self) -> tuple[tuple[int, ...], ...]:
        """The accepted shapes, one per real input in the model's order."""
        return self._answer

    def _read(self) -> tuple[tuple[int, ...], ...]:
        named = {
            spec.name: self._fixed[spec.name]
            if spec.name in self._fixed
            else parse_shape(self.fields[spec.name].text().strip())
            for spec in self.specs
        }
        resolved = resolve_input_shapes(self.model, named, probe=False)
        return tuple(resolved[spec.name] for spec in self.specs)
