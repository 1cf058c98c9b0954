"""A model whose dynamic dims do not run as 1 gets its input shape asked in the window before
any job, and every job then runs at the answer."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from PySide6.QtWidgets import QDialogButtonBox, QMessageBox

from tests import modelgen


@pytest.fixture
def detector(window, qtbot, tmp_path: Path):
    """The window on a YOLO-style neck with dynamic height and width, just opened."""
    path = tmp_path / "detector.onnx"
    onnx.save(modelgen.dynamic_detector(), str(path))
    window.open_path(path)
    qtbot.waitUntil(lambda: window.opener.shape_dialog is not None, timeout=20_000)
    return window


def _answer(window, qtbot, text: str) -> None:
    dialog = window.opener.shape_dialog
    dialog.fields["images"].setText(text)
    dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok).click()


def _shaped(window, qtbot, text: str) -> None:
    _answer(window, qtbot, text)
    qtbot.waitUntil(lambda: not window.jobs.running, timeout=20_000)
    assert window.opener.shape_dialog is None


def test_opening_a_detector_asks_its_input_shape_prefilled_with_an_image_size(detector):
    dialog = detector.opener.shape_dialog
    assert dialog.fields["images"].text() == "1x3x640x640"
    assert "does not run with them set to 1" in dialog.explanation.text()
    assert not detector.jobs.running  # asked before any job


def test_the_answer_is_the_models_shape_its_macs_and_the_status_bar_follow(detector, qtbot):
    macs_at_1 = detector.session.inventory.total_macs
    _shaped(detector, qtbot, "1x3x64x64")
    assert detector.session.opened.loaded.input_shapes == ((1, 3, 64, 64),)
    assert detector.session.inventory.total_macs > 100 * macs_at_1  # 32x32 maps, not 1x1
    assert "1x3x64x64" in detector.input_shape.text()


def test_a_shape_of_the_wrong_rank_is_refused_in_the_dialog(detector, qtbot):
    _answer(detector, qtbot, "1x3x64")
    dialog = detector.opener.shape_dialog
    assert dialog is not None and dialog.isVisible()
    assert "has 3 dims" in dialog.error.text()


def test_a_shape_the_model_does_not_run_at_asks_again_with_the_reason(detector, qtbot):
    _answer(detector, qtbot, "1x3x60x60")  # 60 -> 30 -> 15 -> 8: upsampled 16 meets 15
    qtbot.waitUntil(lambda: detector.opener.shape_dialog is not None, timeout=20_000)
    dialog = detector.opener.shape_dialog
    assert dialog.fields["images"].text() == "1x3x60x60"
    assert detector.session.opened.loaded.input_shapes == ()


def test_benchmark_runs_at_the_answered_shape(detector, qtbot):
    _shaped(detector, qtbot, "1x3x64x64")
    qtbot.waitUntil(lambda: detector.targets.current() is not None, timeout=20_000)
    detector.bench_action.trigger()
    qtbot.waitUntil(lambda: not detector.jobs.running, timeout=60_000)
    assert detector.session.results and detector.session.results[-1].title.startswith("Bench")


def test_a_job_that_needs_the_shape_asks_for_it_again(detector, qtbot):
    """Compress runs in a child process: its InputShapeNeeded crosses back intact."""
    detector.opener.shape_dialog.reject()
    qtbot.waitUntil(lambda: detector.opener.shape_dialog is None)
    detector.compress_action.trigger()
    box = detector.runs.data_question
    random = next(b for b in box.buttons() if "random inputs" in b.text())
    assert box.buttonRole(random) == QMessageBox.ButtonRole.ActionRole
    random.click()
    qtbot.waitUntil(lambda: detector.opener.shape_dialog is not None, timeout=60_000)
    assert not [b for b in detector.findChildren(QMessageBox) if b.isVisible()]
    asked = detector.opener.shape_dialog.explanation.text()
    assert "does not run with them set to 1" in asked and "--input-shape" not in asked
    assert "--input-shape" not in detector.jobs.log.toPlainText()  # the CLI's flag, not ours


def test_the_answer_is_remembered_when_the_same_file_is_opened_again(detector, qtbot):
    _shaped(detector, qtbot, "1x3x64x64")
    path = detector.session.path
    detector.open_path(path)
    qtbot.waitUntil(lambda: not detector.jobs.running, timeout=20_000)
    assert detector.opener.shape_dialog is None  # not asked again
    assert detector.session.opened.loaded.input_shapes == ((1, 3, 64, 64),)
    assert "1x3x64x64" in detector.input_shape.text()
    assert "remembered" in detector.input_shape.text()
    onnx.save(modelgen.dynamic_detector(channels=4), str(path))  # changed: asked again
    detector.open_path(path)
    qtbot.waitUntil(lambda: detector.opener.shape_dialog is not None, timeout=20_000)
    assert detector.session.opened.loaded.input_shapes == ()
