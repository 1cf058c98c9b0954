"""Where benchmarks and evaluations run: this machine's runtimes or a saved SSH target, each
shown with its machine (CPU, INT8 family, cores, memory, runtimes).

The list is filled by a worker (importing onnxruntime and probing providers takes a while)
so the window appears at once; the toolbar combo and this panel share one model of choices.
SSH targets are added with a form; "Test connection" runs in a worker, and an unknown host
key is shown to the user (its fingerprint) before it is trusted. Below, the targets to
benchmark on at once and their comparison table (fanout_view.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import create_worker

from compressor_gui.core.errors import CompressorError
from compressor_gui.core.hardware import MachineInfo
from compressor_gui.targets.base import BenchConfig, RuntimeOption, Target
from compressor_gui.targets.fanout import Leg
from compressor_gui.targets.ssh import SshTarget, UnknownHostKeyError
from compressor_gui.targets.store import (
    TargetSpec,
    load_targets,
    remove_target,
    save_target,
    set_password,
)
from compressor_gui.ui.fanout_view import FanoutView
from compressor_gui.ui.jobs_panel import error_text

# what a saved SSH target offers before "Test connection" has asked it for more
SSH_DEFAULT_OPTION = RuntimeOption("ort", "CPUExecutionProvider", "fp32")
NOT_READ = "Machine: not read yet (Test connection reads it)"


@dataclass(frozen=True)
class TargetChoice:
    """One entry of the target combo: a target and the runtime/device it runs with there."""

    key: str  # persisted in settings, e.g. "local:ort/CPUExecutionProvider/fp32"
    label: str
    target: Target
    option: RuntimeOption

    def config(self, runs: int = 50) -> BenchConfig:
        provider = self.option.device if self.option.runtime == "ort" else None
        return BenchConfig(
            runs=runs,
            warmup=5,
            runtime=self.option.runtime,
            provider=provider,
            precision=self.option.precision,
        )


def _friendly(option: RuntimeOption) -> str:
    """'GPU · ORT CUDA fp32': the device kind first, as a user picks by it."""
    device = option.device.replace("ExecutionProvider", "")
    kind = "GPU" if device in {"CUDA", "Tensorrt", "ROCM", "DML", "GPU"} else "CPU"
    return f"{kind} · {option.runtime.upper()} {device} {option.precision}"


def machine_line(describe: dict) -> str:
    """The machine a target's `describe()` reported, as one line with its INT8 family."""
    if "machine" not in describe:
        return "Machine: not reported"
    machine = MachineInfo.from_dict(describe["machine"])
    return f"Machine: {machine.summary} · INT8 family {machine.isa_class}"


def _machine_label(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def _probe_local() -> tuple[dict, list[TargetChoice]]:
    from compressor_gui.targets.local import LocalTarget

    target = LocalTarget()
    choices = [
        TargetChoice(f"local:{o.label}", f"local {_friendly(o)}", target, o)
        for o in target.runtime_options()
    ]
    return target.describe(), choices


def _ssh_choices(target: SshTarget, options: list[RuntimeOption]) -> list[TargetChoice]:
    name = target.spec.name
    return [
        TargetChoice(f"ssh:{name}/{o.label}", f"{name} (SSH) {_friendly(o)}", target, o)
        for o in options
    ]


class TargetsPanel(QWidget):
    """Shows the available targets and what each machine is; emits the chosen one."""

    choices_ready = Signal()
    connection_tested = Signal(bool)  # True: the target answered and was described

    def __init__(self, preferred_key: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.choices: list[TargetChoice] = []
        self._local: list[TargetChoice] = []
        self._ssh: dict[str, list[TargetChoice]] = {}
        self._machines: dict[str, str] = {}  # SSH target name -> its machine line, once read
        self.model = QStandardItemModel(self)
        self.model.appendRow(QStandardItem("probing this machine…"))
        self.combo = QComboBox()  # lives in the toolbar
        self.combo.setModel(self.model)
        self.combo.setMinimumContentsLength(28)
        self.combo.setToolTip("Where Benchmark and Evaluate run")
        self.combo.setEnabled(False)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.local_machine_label = _machine_label("Machine: reading…")
        local = QVBoxLayout()
        local.addWidget(QLabel("This machine"))
        local.addWidget(self.local_machine_label)
        local.addWidget(self.details, 1)
        machines = QWidget()
        row = QHBoxLayout(machines)
        row.addLayout(local, 1)
        row.addWidget(self._build_ssh_form(), 2)
        self.fanout = FanoutView()
        self.tabs = QTabWidget()
        self.tabs.addTab(machines, "Machines")
        self.tabs.addTab(self.fanout, "Benchmark on several")
        self.fanout.started.connect(lambda: self.tabs.setCurrentWidget(self.fanout))
        box = QVBoxLayout(self)
        box.setContentsMargins(4, 4, 4, 4)
        box.addWidget(self.tabs)
        self._preferred = preferred_key
        self._tester = None
        self._load_saved()
        worker = create_worker(
            _probe_local,
            _start_thread=False,
            _connect={"returned": self._probed, "errored": self._probe_failed},
        )
        self._worker = worker
        worker.start()

    def _build_ssh_form(self) -> QGroupBox:
        group = QGroupBox("SSH targets")
        self.saved = QListWidget()
        self.saved.currentTextChanged.connect(self._show_saved)
        self.name_edit = QLineEdit(placeholderText="e.g. jetson")
        self.host_edit = QLineEdit(placeholderText="host name or IP")
        self.port_edit = QSpinBox(minimum=1, maximum=65535, value=22)
        self.user_edit = QLineEdit(placeholderText="user on the target")
        self.key_edit = QLineEdit(placeholderText="~/.ssh/id_ed25519 (empty: agent/password)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_key)
        key_row = QHBoxLayout()
        key_row.addWidget(self.key_edit, 1)
        key_row.addWidget(browse)
        self.agent_check = QCheckBox("Use the SSH agent", checked=True)
        self.password_edit = QLineEdit(placeholderText="optional: kept in the OS keyring only")
        self.password_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.python_edit = QLineEdit("python3")
        self.python_edit.setToolTip("The Python on the target that has onnxruntime")
        form = QFormLayout()
        form.addRow("Name", self.name_edit)
        form.addRow("Host", self.host_edit)
        form.addRow("Port", self.port_edit)
        form.addRow("User", self.user_edit)
        form.addRow("Key file", key_row)
        form.addRow("", self.agent_check)
        form.addRow("Password", self.password_edit)
        form.addRow("Python there", self.python_edit)
        self.test_button = QPushButton("Test connection")
        self.test_button.clicked.connect(lambda: self.test_connection())
        self.save_button = QPushButton("Save")
        self.save_button.clicked.connect(self.save)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove)
        buttons = QHBoxLayout()
        buttons.addWidget(self.test_button)
        buttons.addWidget(self.save_button)
        self.ssh_result = QPlainTextEdit(readOnly=True)
        self.ssh_result.setPlaceholderText("What the target says about itself")
        self.ssh_machine_label = _machine_label(NOT_READ)
        left = QVBoxLayout()
        left.addWidget(self.saved, 1)
        left.addWidget(self.remove_button)
        right = QVBoxLayout()
        right.addLayout(form)
        right.addLayout(buttons)
        right.addWidget(self.ssh_machine_label)
        right.addWidget(self.ssh_result, 1)
        row = QHBoxLayout(group)
        row.addLayout(left, 1)
        row.addLayout(right, 3)
        return group

    def current(self) -> TargetChoice | None:
        index = self.combo.currentIndex()
        return self.choices[index] if 0 <= index < len(self.choices) else None

    # --- the combo: local choices first, then every saved SSH target -------------------------

    def _rebuild_combo(self) -> None:
        keep = self.current().key if self.current() else self._preferred
        self.choices = [*self._local, *(c for cs in self._ssh.values() for c in cs)]
        self.model.clear()
        for choice in self.choices:
            self.model.appendRow(QStandardItem(choice.label))
        keys = [c.key for c in self.choices]
        self.combo.setCurrentIndex(keys.index(keep) if keep in keys else 0)
        self.combo.setEnabled(bool(self.choices))
        legs = [(c.key, c.label, Leg(c.target, c.config())) for c in self.choices]
        self.fanout.set_choices(legs)

    def _probed(self, result: tuple[dict, list[TargetChoice]]) -> None:
        describe, self._local = result
        self._rebuild_combo()
        self.local_machine_label.setText(machine_line(describe))
        self.details.setPlainText(json.dumps(describe, indent=2, default=str))
        self.choices_ready.emit()

    def _probe_failed(self, exc: BaseException) -> None:
        self.details.setPlainText(f"Could not probe this machine: {exc}")
        self._rebuild_combo()
        if not self.choices:
            self.model.appendRow(QStandardItem("no local runtime"))

    def _load_saved(self) -> None:
        try:
            specs = load_targets()
        except CompressorError as exc:
            self.ssh_result.setPlainText(str(exc))
            return
        self._ssh = {
            name: _ssh_choices(SshTarget(spec), [SSH_DEFAULT_OPTION])
            for name, spec in specs.items()
        }
        self.saved.clear()
        self.saved.addItems(sorted(specs))

    # --- the form ----------------------------------------------------------------------------

    def _browse_key(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "SSH private key", str(Path.home() / ".ssh"))
        if name:
            self.key_edit.setText(name)

    def _show_saved(self, name: str) -> None:
        if name not in self._ssh:
            return
        self.ssh_machine_label.setText(self._machines.get(name, NOT_READ))
        spec = self._ssh[name][0].target.spec
        self.name_edit.setText(spec.name)
        self.host_edit.setText(spec.host)
        self.port_edit.setValue(spec.port)
        self.user_edit.setText(spec.user)
        self.key_edit.setText(spec.key_file or "")
        self.agent_check.setChecked(spec.use_agent)
        self.python_edit.setText(spec.python)
        self.password_edit.clear()

    def spec_from_form(self) -> TargetSpec:
        """The form as a TargetSpec; raises TargetError (plain words) on a bad field."""
        return TargetSpec(
            name=self.name_edit.text().strip(),
            host=self.host_edit.text().strip(),
            user=self.user_edit.text().strip(),
            port=self.port_edit.value(),
            key_file=str(Path(self.key_edit.text().strip()).expanduser())
            if self.key_edit.text().strip()
            else None,
            use_agent=self.agent_check.isChecked(),
            python=self.python_edit.text().strip() or "python3",
            password_in_keyring=bool(self.password_edit.text()),
        )

    def save(self) -> bool:
        """Save the form as a target (password to the keyring) and offer it in the combo."""
        try:
            spec = self.spec_from_form()
            if not spec.host or not spec.user:
                self.ssh_result.setPlainText("Fill in the host and the user first.")
                return False
            if spec.password_in_keyring:
                set_password(spec, self.password_edit.text())
            save_target(spec)
        except CompressorError as exc:
            self.ssh_result.setPlainText(f"Not saved: {exc}")
            return False
        self._load_saved()
        self._rebuild_combo()
        self.ssh_result.appendPlainText(f"saved {spec.name} ({spec.address})")
        return True

    def remove(self) -> None:
        item = self.saved.currentItem()
        if item is None:
            return
        try:
            remove_target(item.text())
        except CompressorError as exc:
            self.ssh_result.setPlainText(str(exc))
            return
        self._load_saved()
        self._rebuild_combo()

    def test_connection(self, accept_host_key: str | None = None) -> None:
        """Connect and describe the target in a worker; the event loop never waits on SSH."""
        try:
            spec = self.spec_from_form()
        except CompressorError as exc:
            self.ssh_result.setPlainText(str(exc))
            return
        password = self.password_edit.text() or None
        target = SshTarget(spec, accept_host_key=accept_host_key or None, password=password)
        self.test_button.setEnabled(False)
        self.ssh_result.setPlainText(f"connecting to {spec.address}…")
        self.ssh_machine_label.setText(f"Machine: reading {spec.address}…")
        self._tester = create_worker(
            target.describe,
            _start_thread=False,
            _connect={
                "returned": lambda info: self._tested(target, info),
                "errored": lambda exc: self._test_failed(exc),
            },
        )
        self._tester.start()

    def _tested(self, target: SshTarget, info: dict) -> None:
        self.test_button.setEnabled(True)
        self._machines[target.spec.name] = machine_line(info)
        self.ssh_machine_label.setText(self._machines[target.spec.name])
        self.ssh_result.setPlainText(json.dumps(info, indent=2, default=str))
        if target.spec.name in self._ssh:  # offer every runtime the target reported
            options = target.runtime_options() or [SSH_DEFAULT_OPTION]
            self._ssh[target.spec.name] = _ssh_choices(SshTarget(target.spec), options)
            self._rebuild_combo()
        self.connection_tested.emit(True)

    def _test_failed(self, exc: BaseException) -> None:
        self.test_button.setEnabled(True)
        if isinstance(exc, UnknownHostKeyError) and self.confirm_host_key(exc):
            self.test_connection(accept_host_key=exc.fingerprint)
            return
        self.ssh_result.setPlainText(f"Connection failed: {error_text(exc)}")
        self.ssh_machine_label.setText("Machine: unknown (no connection)")
        self.connection_tested.emit(False)

    def confirm_host_key(self, exc: UnknownHostKeyError) -> bool:
        """Ask the user to check the fingerprint (as ssh does on a first connection)."""
        answer = QMessageBox.question(
            self,
            "Unknown host key",
            f"{exc.host} presented a {exc.key_type} host key never seen before:\n\n"
            f"{exc.fingerprint}\n\nCompare it with `ssh-keygen -lf` on the target. "
            "Trust this key and connect?",
        )
        return answer == QMessageBox.StandardButton.Yes
