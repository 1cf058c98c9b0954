"""compress --int8 keeps each model's own measure, on data it was made for: the recognizer
reads rendered lines as the original does, the detector marks the same text regions, the voice
detector calls speech where the original does."""

from __future__ import annotations

import numpy as np
import pytest

from tests.realmodels import measures, ocr_data
from tests.realmodels.matrix import EVAL_SAMPLES, EVAL_SEED
from tests.realmodels.suite import MODELS_BY_NAME, voiced_stream
from tests.realmodels.test_matrix import marks_of

# compress --int8 of a Paddle export (calibration, fallbacks, evaluation) took over five
# minutes of wall time on two cores shared with other work (load average 12-18).
pytestmark = pytest.mark.timeout(1800)  # as test_matrix.py: the cells they share run here first


def _quantized_file(workspace, model_name: str):
    """The INT8 file compress wrote, after checking it really is INT8: a file left float
    would read every line and mark every region exactly as the original does."""
    cell = workspace.cell(model_name, "compress --int8")
    assert cell.exit_code == 0, cell.reason
    ratio = cell.result["after"]["size_bytes"] / cell.result["before"]["size_bytes"]
    assert ratio <= 0.35, f"the INT8 file is {ratio:.2f}x the original: left (mostly) float"
    return workspace.output(MODELS_BY_NAME[model_name], "int8.onnx")


@pytest.mark.parametrize(
    "model_name",
    [pytest.param("ppocr-rec", marks=marks_of("ppocr-rec", "character accuracy"))],
)
def test_int8_recognizer_reads_rendered_lines_as_the_original(workspace, model_name):
    model = MODELS_BY_NAME[model_name]
    compressed = _quantized_file(workspace, model.name)
    original = workspace.model_file(model)
    x, texts = ocr_data.text_lines(EVAL_SAMPLES, EVAL_SEED)
    characters = measures.dictionary(original)
    before = measures.recognizer_accuracy(original, x, texts, characters)
    after = measures.recognizer_accuracy(compressed, x, texts, characters)
    assert before >= 0.9  # the rendered lines are what the recognizer was made for
    assert after >= before - 0.02


@pytest.mark.parametrize(
    "model_name",
    [pytest.param("ppocr-det", marks=marks_of("ppocr-det", "text regions"))],
)
def test_int8_detector_marks_the_text_regions_of_the_original(workspace, model_name):
    model = MODELS_BY_NAME[model_name]
    compressed = _quantized_file(workspace, model.name)
    x = np.load(workspace.data_file(model, "eval"))["x"]
    assert measures.detector_agreement(workspace.model_file(model), compressed, x) >= 0.9


def test_int8_voice_detector_calls_speech_where_the_original_does(workspace):
    """Over a whole stream (not the matrix's sampled chunks), each model carrying its own
    state: the INT8 model's errors could compound through the LSTM state."""
    model = MODELS_BY_NAME["silero-vad"]
    compressed = _quantized_file(workspace, model.name)
    audio = voiced_stream(6.0, seed=EVAL_SEED + 100)
    before = measures.speech_decisions(workspace.model_file(model), audio)
    after = measures.speech_decisions(compressed, audio)
    assert 0.2 < before.mean() < 0.9  # the stream has both speech and pauses
    assert np.mean(before == after) >= 0.98
