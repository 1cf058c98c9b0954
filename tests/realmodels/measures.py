"""Each model's own measure, where the suite knows the truth: characters read right by the
text recognizer, text regions found by the detector (against the original's), speech
decisions of the voice detector over a stream (against the original's), top-1 of the
classifiers (the CLI reports that one itself from the labels in the data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from tests.realmodels import ocr_data
from tests.realmodels.suite import run_stream


def _outputs(model: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i : i + 4]})[0] for i in range(0, len(x), 4)])


def dictionary(model: Path) -> list[str]:
    """The recognizer's characters, from its 'character' metadata (Paddle's export keeps it)."""
    metadata = onnx.load(str(model), load_external_data=False).metadata_props
    return {p.key: p.value for p in metadata}["character"].split("\n")


def recognizer_accuracy(
    model: Path, x: np.ndarray, texts: list[str], characters: list[str]
) -> float:
    """Character accuracy of greedy CTC decoding of the model's outputs."""
    predicted = ocr_data.ctc_greedy(_outputs(model, x), characters)
    return ocr_data.character_accuracy(predicted, texts)


def detector_agreement(original: Path, compressed: Path, x: np.ndarray) -> float:
    """Text-region IoU of the compressed detector's maps against the original's."""
    return ocr_data.text_region_iou(_outputs(original, x), _outputs(compressed, x))


def speech_decisions(model: Path, audio: np.ndarray) -> np.ndarray:
    """silero-vad's speech / no-speech call per chunk at its default threshold 0.5, the model
    carrying its own state through the stream."""
    return run_stream(model, audio)[2] >= 0.5
