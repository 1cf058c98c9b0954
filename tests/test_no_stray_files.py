"""The tool writes nothing outside its output path and its own temp folder, which it removes:
onnxruntime's symbolic shape inference saves `sym_shape_infer_temp.onnx` and UUID-named
weight files into the working directory when it cannot finish a model."""

from __future__ import annotations

import subprocess
import sys
import tempfile

import numpy as np
import onnx
import pytest
from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

from compressor_gui.core.graph import contained
from tests import modelgen


@pytest.fixture
def expand_model(tmp_path):
    """A model symbolic shape inference gives up on, with calibration data for both inputs."""
    path = tmp_path / "models" / "expand.onnx"
    path.parent.mkdir()
    onnx.save(modelgen.expand_to_input_shape(), str(path))
    rng = np.random.default_rng(0)
    data = tmp_path / "models" / "expand_data.npz"
    x = rng.standard_normal((8, 1, 3, 8, 8)).astype(np.float32)
    np.savez(data, x=x, shape=np.tile(np.array([1, 16, 8, 8]), (8, 1)))
    return path, data


def test_compress_int8_leaves_the_working_directory_and_temp_folder_as_they_were(
    tmp_path, expand_model
):
    model, data = expand_model
    cwd, scratch, out = tmp_path / "cwd", tmp_path / "tmp", tmp_path / "out"
    cwd.mkdir()
    scratch.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "compressor_gui", "compress", str(model), "--int8"]
        + ["--data", str(data), "-o", str(out / "expand_int8.onnx"), "--no-latency"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=cwd,
        env={**__import__("os").environ, "TMPDIR": str(scratch)},
    )
    assert result.returncode == 0, result.stderr
    # the path that writes into the working directory was really taken
    assert "Incomplete symbolic shape inference" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["expand_int8.onnx"]
    assert list(cwd.iterdir()) == []
    # `.ses` is the session file onnxruntime's native telemetry library writes into $TMPDIR
    # on import (one small file, reused by every run); beside it, nothing is left behind
    assert [p.name for p in scratch.iterdir() if p.name != ".ses"] == []


def test_the_scratch_folder_goes_when_shape_inference_fails(tmp_path, monkeypatch, expand_model):
    cwd, scratch = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    scratch.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    model = onnx.load(str(expand_model[0]))
    with pytest.raises(Exception, match="Incomplete symbolic shape inference"), contained():
        SymbolicShapeInference.infer_shapes(model)
    assert list(cwd.iterdir()) == []
    assert list(scratch.iterdir()) == []
