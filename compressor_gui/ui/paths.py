"""Where the bundled demo lives (kept here so the UI has one place to change if it moves)."""

from __future__ import annotations

from pathlib import Path

import compressor_gui


def demo_model_path() -> Path:
    return Path(compressor_gui.__file__).parents[1] / "resources" / "demo.onnx"
