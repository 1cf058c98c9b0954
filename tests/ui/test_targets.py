"""The Targets dock: add an SSH target, trust its host key after seeing it, benchmark on it."""

from __future__ import annotations

import json
import sys

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox


def _fill_form(panel, qtbot, sshd, name: str = "box", port: int | None = None) -> None:
    qtbot.keyClicks(panel.name_edit, name)
    qtbot.keyClicks(panel.host_edit, "127.0.0.1")
    panel.port_edit.setValue(port or sshd.port)
    panel.user_edit.clear()
    qtbot.keyClicks(panel.user_edit, sshd.spec().user)
    qtbot.keyClicks(panel.key_edit, str(sshd.user_key))
    panel.agent_check.setChecked(False)
    panel.python_edit.setText(sys.executable)  # the "remote" Python that has onnxruntime


def test_add_ssh_target_accept_host_key_and_benchmark_on_it(
    loaded, qtbot, sshd, monkeypatch
) -> None:
    asked: list[str] = []

    def answer_yes(_parent, _title, text):
        asked.append(text)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr("compressor_gui.ui.targets_panel.QMessageBox.question", answer_yes)
    panel = loaded.targets
    loaded.targets_dock.raise_()
    _fill_form(panel, qtbot, sshd)
    qtbot.mouseClick(panel.save_button, Qt.MouseButton.LeftButton)
    assert [panel.saved.item(i).text() for i in range(panel.saved.count())] == ["box"]
    with qtbot.waitSignal(panel.connection_tested, timeout=60_000) as tested:
        qtbot.mouseClick(panel.test_button, Qt.MouseButton.LeftButton)
    assert tested.args == [True], panel.ssh_result.toPlainText()
    assert len(asked) == 1 and sshd.fingerprint() in asked[0]
    info = json.loads(panel.ssh_result.toPlainText())
    assert info["name"] == "box" and "CPUExecutionProvider" in info["providers"]

    labels = [panel.model.item(i).text() for i in range(panel.model.rowCount())]
    ssh_cpu = labels.index("box (SSH) CPU · ORT CPU fp32")
    panel.combo.setCurrentIndex(ssh_cpu)
    loaded.bench_action.trigger()
    qtbot.waitUntil(lambda: not loaded.jobs.running, timeout=120_000)
    record = loaded.results.records[-1]
    assert record.title == "Benchmark (box (SSH) CPU · ORT CPU fp32)", loaded.jobs.log.toPlainText()
    assert record.rows[0].original.endswith("ms")

    with qtbot.waitSignal(panel.connection_tested, timeout=60_000):  # the key is known now
        qtbot.mouseClick(panel.test_button, Qt.MouseButton.LeftButton)
    assert len(asked) == 1


def test_unreachable_target_says_so_in_plain_words(window, qtbot, sshd) -> None:
    panel = window.targets
    _fill_form(panel, qtbot, sshd, port=1)
    with qtbot.waitSignal(panel.connection_tested, timeout=30_000) as tested:
        qtbot.mouseClick(panel.test_button, Qt.MouseButton.LeftButton)
    assert tested.args == [False]
    text = panel.ssh_result.toPlainText()
    assert text.startswith("Connection failed: cannot reach") and "127.0.0.1:1" in text
    assert panel.test_button.isEnabled()


def test_targets_panel_shows_each_machine_and_evaluate_says_where_it_ran(
    loaded, qtbot, sshd, monkeypatch
) -> None:
    from compressor_gui.core.hardware import local_machine

    monkeypatch.setattr(
        "compressor_gui.ui.targets_panel.QMessageBox.question",
        lambda *_: QMessageBox.StandardButton.Yes,
    )
    panel = loaded.targets
    here = local_machine()
    qtbot.waitUntil(lambda: panel.current() is not None, timeout=30_000)
    assert panel.local_machine_label.text() == (
        f"Machine: {here.summary} · INT8 family {here.isa_class}"
    )
    _fill_form(panel, qtbot, sshd, name="evalbox")
    qtbot.mouseClick(panel.save_button, Qt.MouseButton.LeftButton)
    assert panel.ssh_machine_label.text().startswith("Machine: not read yet")
    with qtbot.waitSignal(panel.connection_tested, timeout=60_000) as tested:
        qtbot.mouseClick(panel.test_button, Qt.MouseButton.LeftButton)
    assert tested.args == [True], panel.ssh_result.toPlainText()
    assert f"INT8 family {here.isa_class}" in panel.ssh_machine_label.text()
    assert f"{here.cores} cores" in panel.ssh_machine_label.text()

    labels = [panel.model.item(i).text() for i in range(panel.model.rowCount())]
    panel.combo.setCurrentIndex(labels.index("evalbox (SSH) CPU · ORT CPU fp32"))
    loaded.evaluate_action.trigger()
    qtbot.waitUntil(lambda: not loaded.jobs.running, timeout=120_000)
    record = loaded.results.records[-1]
    assert record.title == "Evaluate on evalbox", loaded.jobs.log.toPlainText()
    assert record.notes[0] == (f"ran on evalbox: {here.summary} · INT8 family {here.isa_class}"), (
        record.notes
    )
    rows = {row.metric: row for row in record.rows}
    assert rows["samples"].original == "450" and rows["top-1"].original.endswith("%")
