"""compress --int8 keeps each model's own measure, on data it was made for: the recognizer
reads rendered lines as the original does, the detector marks the same text regions."""

from __future__ import annotations

import numpy as np
import pytest

from tests.realmodels import measures, ocr_data
from tests.realmodels.matrix import EVAL_SAMPLES, EVAL_SEED
from tests.realmodels.suite import MODELS_BY_NAME

# compress --int8 of a Paddle export (calibration, fallbacks, evaluation) took over five
# minutes of wall time on two cores shared with other work (load average 12-18).
pytestmark = pytest.mark.timeout(900)


def test_int8_recognizer_reads_rendered_lines_as_the_original(workspace):
    model = MODELS_BY_NAME["ppocr-rec"]
    assert workspace.cell(model.name, "compress --int8").exit_code == 0
    original = workspace.model_file(model)
    x, texts = ocr_data.text_lines(EVAL_SAMPLES, EVAL_SEED)
    characters = measures.dictionary(original)
    before = measures.recognizer_accuracy(original, x, texts, characters)
    after = measures.recognizer_accuracy(workspace.output(model, "int8.onnx"), x, texts, characters)
    assert before >= 0.9  # the rendered lines are what the recognizer was made for
    assert after >= before - 0.02


def test_int8_detector_marks_the_text_regions_of_the_original(workspace):
    model = MODELS_BY_NAME["ppocr-det"]
    assert workspace.cell(model.name, "compress --int8").exit_code == 0
    x = np.load(workspace.data_file(model, "eval"))["x"]
    compressed = workspace.output(model, "int8.onnx")
    assert measures.detector_agreement(workspace.model_file(model), compressed, x) >= 0.9
