"""Fixtures that several modules of tests/core share; none is autouse for all of them."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from compressor_gui.core.data import dataset_from_arrays


@pytest.fixture
def own_sweep_cache(tmp_path, monkeypatch):
    """A sweep cache folder of this test's own: no test reads points another one measured."""
    monkeypatch.setenv("COMPRESSOR_GUI_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def demo48():
    """The demo model and the first 48 labelled samples of its evaluation split."""
    model = onnx.load("resources/demo.onnx")
    data = np.load("resources/demo_eval.npz")
    return model, dataset_from_arrays({"x": data["x"][:48], "y": data["y"][:48]}, model)
