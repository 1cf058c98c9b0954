"""Where Sensitivity and Auto plan run: this machine's processes, or a Dask cluster the user
names (with its TLS files). It says plainly that the model and data go to that cluster."""

from __future__ import annotations

import os

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from compressor_gui.core.errors import CompressorError
from compressor_gui.ui.settings import ComputeSettings

SENT_THERE = (
    "The model and its data are sent to this cluster's workers, and only to the address "
    "given here. Leave it empty to keep everything on this machine."
)


class ComputeDialog(QDialog):
    """A form over ComputeSettings; OK checks the address and files before closing."""

    def __init__(self, compute: ComputeSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Where jobs run")
        self.setObjectName("compute_dialog")
        self.workers = QSpinBox(minimum=1, maximum=max(1, os.cpu_count() or 1))
        self.workers.setValue(min(compute.workers, self.workers.maximum()))
        self.workers.setSuffix(" processes")
        self.cluster = QLineEdit(compute.cluster, placeholderText="tcp://scheduler-host:8786")
        self.tls_ca = QLineEdit(compute.tls_ca_file, placeholderText="CA certificate (.pem)")
        self.tls_cert = QLineEdit(compute.tls_cert_file, placeholderText="client certificate")
        self.tls_key = QLineEdit(compute.tls_key_file, placeholderText="client key")
        self.sent_there = QLabel(SENT_THERE, wordWrap=True)
        self.problem = QLabel("", wordWrap=True, objectName="problem")
        form = QFormLayout(self)
        form.addRow("On this machine", self.workers)
        form.addRow("Dask scheduler", self.cluster)
        form.addRow("", self.sent_there)
        form.addRow("TLS CA file", self.tls_ca)
        form.addRow("TLS certificate", self.tls_cert)
        form.addRow("TLS key", self.tls_key)
        form.addRow(self.problem)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)

    def compute(self) -> ComputeSettings:
        return ComputeSettings(
            self.workers.value(),
            self.cluster.text().strip(),
            self.tls_ca.text().strip(),
            self.tls_cert.text().strip(),
            self.tls_key.text().strip(),
        )

    def accept(self) -> None:
        try:
            self.compute().placement()
        except CompressorError as exc:
            self.problem.setText(str(exc))
            return
        super().accept()
