"""Data chosen in the window as the CLI's --data takes it: an .npz file or a folder of images
with its preprocess.json, checked against the model when chosen."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtWidgets import QFileDialog, QMessageBox

from compressor_gui.cli import main
from compressor_gui.ui.paths import demo_model_path

DEMO_SCALE = {"mean": [0.305225], "std": [0.32354]}  # resources/demo.json's preprocessing
PER_CLASS = 3


def _digit_folder(folder: Path, with_spec: bool = True) -> Path:
    """The demo's held-out digits as 8-bit PNGs, one subfolder per class (the labels)."""
    with np.load(demo_model_path().with_name("demo_eval.npz")) as data:
        x, y = data["x"], data["y"]
    for label in range(10):
        (folder / str(label)).mkdir(parents=True)
        for index in np.flatnonzero(y == label)[:PER_CLASS]:
            pixels = x[index, 0] * DEMO_SCALE["std"][0] + DEMO_SCALE["mean"][0]
            image = np.clip(np.rint(pixels * 255), 0, 255).astype(np.uint8)
            Image.fromarray(image, "L").save(folder / str(label) / f"{index}.png")
    if with_spec:
        spec = {"size": [32, 32], "channels": "L", "scale": 1 / 255, **DEMO_SCALE}
        (folder / "preprocess.json").write_text(json.dumps(spec))
    return folder


@pytest.fixture
def digits_model(window, qtbot, tmp_path):
    """The window on a copy of the demo model: no data beside it, none bundled for it."""
    path = tmp_path / "digits.onnx"
    shutil.copy(demo_model_path(), path)
    window.open_path(path)
    qtbot.waitUntil(lambda: window.session.inventory is not None, timeout=20_000)
    qtbot.waitUntil(lambda: not window.jobs.running, timeout=20_000)
    return path


def test_an_image_folder_answers_the_data_question_and_scores_as_the_cli_does(
    window, digits_model, qtbot, tmp_path, monkeypatch, capsys
):
    folder = _digit_folder(tmp_path / "digits")
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args: str(folder))
    window.evaluate_action.trigger()
    box = window.runs.data_question
    next(b for b in box.buttons() if b.text() == "Choose image folder…").click()
    qtbot.waitUntil(lambda: bool(window.session.results), timeout=60_000)
    assert window.session.data_path == folder
    result = window.session.results[-1]
    rows = {row.metric: row.original for row in result.rows}
    assert rows["samples"] == str(10 * PER_CLASS) and f"data: {folder}" in result.notes
    assert main(["evaluate", str(digits_model), "--data", str(folder), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)["results"]["original"]
    assert rows["top-1"] == f"{100 * printed['top1']:.2f}%"
    assert printed["top1"] >= 0.9  # the digits survive the round trip through 8-bit PNGs


def test_a_folder_without_its_preprocess_json_is_refused_with_the_clis_reason(
    window, digits_model, qtbot, tmp_path, monkeypatch, capsys
):
    folder = _digit_folder(tmp_path / "bare", with_spec=False)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args: str(folder))
    window.data_folder_action.trigger()
    qtbot.waitUntil(lambda: window.findChild(QMessageBox, "error_dialog") is not None)
    shown = window.findChild(QMessageBox, "error_dialog").text()
    assert window.session.data_path is None
    assert main(["evaluate", str(digits_model), "--data", str(folder)]) == 2
    assert shown.split(" e.g.")[0] in capsys.readouterr().err
    assert "needs a preprocess.json" in shown

    good = _digit_folder(tmp_path / "good")  # Run ▸ Choose image folder… again
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args: str(good))
    window.data_folder_action.trigger()
    qtbot.waitUntil(lambda: not window.jobs.running, timeout=20_000)
    assert window.session.data_path == good
    assert "(30 samples, with labels)" in window.jobs.log.toPlainText()
    shown = [box.text() for box in window.findChildren(QMessageBox) if box.isVisible()]
    assert not [text for text in shown if "internal error" in text]


def test_distills_unlabeled_data_can_be_an_image_folder(qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QPushButton

    from compressor_gui.ui.training import DistillDialog

    folder = _digit_folder(tmp_path / "unlabeled")
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args: str(folder))
    dialog = DistillDialog("the demo's training split")
    qtbot.addWidget(dialog)
    button = next(b for b in dialog.findChildren(QPushButton) if b.text() == "Image folder…")
    button.click()
    assert dialog.unlabeled() == folder
