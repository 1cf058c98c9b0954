"""Controls for the selected layer(s): bit width, prune ratio and pattern.

Edits apply to the whole selection; one slider drag becomes one undo step (a gesture).
"""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGridLayout,
    QLabel,
    QSlider,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledSlider

from compressor_gui.core.plan import BIT_WIDTHS, MAX_PRUNE_RATIO, PRUNE_PATTERNS, lead_layer
from compressor_gui.formatting import human_bytes, human_count
from compressor_gui.ui.session import Session


class BitsSlider(QWidget):
    """A slider over the discrete bit widths 32..1 with each value written under its tick."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, len(BIT_WIDTHS) - 1)
        self.slider.setPageStep(1)
        self.slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.slider.setTickInterval(1)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setVerticalSpacing(0)
        grid.addWidget(self.slider, 0, 0, 1, len(BIT_WIDTHS))
        for i, bits in enumerate(BIT_WIDTHS):
            label = QLabel(str(bits))
            if i == 0:
                label.setAlignment(Qt.AlignmentFlag.AlignLeft)
            elif i == len(BIT_WIDTHS) - 1:
                label.setAlignment(Qt.AlignmentFlag.AlignRight)
            else:
                label.setAlignment(Qt.AlignmentFlag.AlignHCenter)
            grid.addWidget(label, 1, i)

    def bits(self) -> int:
        return BIT_WIDTHS[self.slider.value()]

    def set_bits(self, bits: int) -> None:
        self.slider.setValue(BIT_WIDTHS.index(bits))


class LayerControls(QWidget):
    """Edits the plan for the layers currently selected in the table."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._session = session
        self._names: list[str] = []
        self._gesture: int | None = None

        self.title = QLabel("Select layers in the table to edit them")
        self.title.setWordWrap(True)
        font = self.title.font()
        font.setBold(True)  # a font, not a stylesheet: stylesheets freeze the palette colours
        self.title.setFont(font)
        self.bits = BitsSlider()
        self.prune = QLabeledSlider(Qt.Orientation.Horizontal)
        self.prune.setRange(0, round(MAX_PRUNE_RATIO * 100))
        self.prune.setToolTip("fraction of this layer's weights set to zero (%)")
        self.pattern = QComboBox()
        self.pattern.addItems(PRUNE_PATTERNS)
        self.pattern.setToolTip(
            "unstructured: any weight; 2:4: two of every four (sparse tensor cores); "
            "channel: whole output channels (smaller and faster everywhere)"
        )
        self.skipped = QLabel()  # which selected layers the last edit could not apply to
        self.skipped.setObjectName("skipped_note")
        self.skipped.setWordWrap(True)
        self.stats = QLabel()
        self.stats.setWordWrap(True)
        self.stats.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        form = QFormLayout()
        form.addRow("Bits", self.bits)
        form.addRow("Prune %", self.prune)
        form.addRow("Pattern", self.pattern)
        box = QVBoxLayout(self)
        box.addWidget(self.title)
        box.addLayout(form)
        box.addWidget(self.skipped)
        box.addWidget(self.stats)
        box.addStretch(1)

        for slider in (self.bits.slider, self.prune):
            slider.sliderPressed.connect(self._begin_gesture)
            slider.sliderReleased.connect(self._end_gesture)
        self.bits.slider.valueChanged.connect(lambda _: self._edit(bits=self.bits.bits()))
        self.prune.valueChanged.connect(lambda v: self._edit(prune_ratio=v / 100))
        self.pattern.currentTextChanged.connect(lambda p: self._edit(prune_pattern=p))
        session.plan_changed.connect(self._sync)
        self.set_layers([])

    def set_layers(self, names: list[str]) -> None:
        """Show and edit these layers (the table's selection)."""
        self._names = names
        self.skipped.clear()
        self.setEnabled(bool(names))
        inv = self._session.inventory
        if not names or inv is None:
            self.title.setText("Select layers in the table to edit them")
            self.stats.clear()
        else:
            layers = [inv.layer(n) for n in names]
            self.title.setText(names[0] if len(names) == 1 else f"{len(names)} layers selected")
            params = sum(layer.params for layer in layers)
            size = sum(layer.size_bytes for layer in layers)
            macs = sum(layer.macs or 0 for layer in layers)
            zeros = sum(layer.zeros for layer in layers)
            lines = [
                f"{human_count(params)} params, {human_bytes(size)}, {human_count(macs)} MACs",
                f"sparsity now {zeros / params:.1%}" if params else "",
            ]
            if len(layers) == 1:
                one = layers[0]
                lines.append(
                    f"{one.op_type} ({one.kind}) {'x'.join(map(str, one.weight_shape))}, "
                    f"{one.dtype}; weights {one.weight_min:.3g}..{one.weight_max:.3g}, "
                    f"std {one.weight_std:.3g}"
                )
                lines.extend(one.notes)
            self.stats.setText("\n".join(line for line in lines if line))
        self._sync()

    def _sync(self) -> None:
        """Show the plan's setting of the selection's lead layer without emitting edits."""
        inv = self._session.inventory
        if not self._names or inv is None:
            return
        lead = lead_layer([inv.layer(name) for name in self._names])
        setting = self._session.plan.setting(lead.name)
        blockers = [QSignalBlocker(w) for w in (self.bits.slider, self.prune, self.pattern)]
        self.bits.set_bits(setting.bits)
        self.prune.setValue(round(setting.prune_ratio * 100))
        self.pattern.setCurrentText(setting.prune_pattern)
        del blockers

    def _begin_gesture(self) -> None:
        self._gesture = self._session.new_gesture()

    def _end_gesture(self) -> None:
        self._gesture = None
        self._sync()  # a drag no selected layer could take snaps back to what they have

    def _edit(self, **changes) -> None:
        note = self._session.edit_layers(self._names, gesture=self._gesture, **changes)
        self.skipped.setText(note)
        self.skipped.setToolTip(note)
