"""Asks what Auto plan should aim for: a size (N x smaller), a largest accuracy drop, or both;
and whether plans may be recovered by distillation (the third step of the progressive recipe)."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QSpinBox,
    QWidget,
)

from compressor_gui.core.distill_types import DistillOptions
from compressor_gui.core.search import Budget


@dataclass(frozen=True)
class AutoPlanRequest:
    budget: Budget
    verification: str  # "simulated" | "real", as core.search.autoplan_job takes it
    samples: int
    recovery: DistillOptions | None = None  # distill plans this long (QAT + KD), or not


class AutoPlanDialog(QDialog):
    """A budget form; OK stays disabled until at least one limit is ticked."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Auto plan")
        self.setObjectName("autoplan_dialog")
        self.size_check = QCheckBox("Size: at least", checked=True)
        self.size_times = QDoubleSpinBox(minimum=1.1, maximum=64.0, value=4.0, suffix=" x smaller")
        self.drop_check = QCheckBox("Accuracy: drop at most")
        self.max_drop = QDoubleSpinBox(minimum=0.0, maximum=50.0, value=1.0, suffix=" points")
        self.verification = QComboBox()
        self.verification.addItem("simulated (fast: weights simulated, one session)", "simulated")
        self.verification.addItem("real (build and evaluate every plan)", "real")
        self.samples = QSpinBox(minimum=8, maximum=100_000, value=256, suffix=" samples")
        self.recover_check = QCheckBox("Recover by distillation:")
        self.recover_check.setToolTip(
            "Also build the chosen plan and the smaller ones with QAT + knowledge distillation "
            "towards the original on the training data, and choose a recovered plan when it "
            "meets the budget better (slow: minutes per plan; checks plans for real)"
        )
        self.recover_epochs = QSpinBox(minimum=1, maximum=200, value=10, suffix=" epochs")
        self.recover_epochs.setEnabled(False)
        form = QFormLayout(self)
        form.addRow(
            QLabel(
                "Auto plan sweeps every layer, then picks per-layer bits and pruning\n"
                "under your limits and measures the result and a few alternatives."
            )
        )
        form.addRow(self.size_check, self.size_times)
        form.addRow(self.drop_check, self.max_drop)
        form.addRow("Check plans by", self.verification)
        form.addRow("Evaluate on", self.samples)
        form.addRow(self.recover_check, self.recover_epochs)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)
        for check in (self.size_check, self.drop_check):
            check.toggled.connect(self._limits_changed)
        self.recover_check.toggled.connect(self._recovery_changed)

    def _recovery_changed(self, on: bool) -> None:
        """Recovered plans can only be measured by building them."""
        self.recover_epochs.setEnabled(on)
        if on:
            self.verification.setCurrentIndex(self.verification.findData("real"))
        self.verification.setEnabled(not on)

    def _limits_changed(self) -> None:
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setEnabled(self.size_check.isChecked() or self.drop_check.isChecked())

    def request(self) -> AutoPlanRequest:
        ratio = 1 / self.size_times.value() if self.size_check.isChecked() else None
        drop = self.max_drop.value() if self.drop_check.isChecked() else None
        recovery = None
        if self.recover_check.isChecked():
            recovery = DistillOptions(epochs=self.recover_epochs.value(), qat=True)
        return AutoPlanRequest(
            Budget(size_ratio=ratio, max_drop=drop),
            self.verification.currentData(),
            self.samples.value(),
            recovery,
        )
