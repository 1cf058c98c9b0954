"""The application layer headless: opening, the data rule, undo history, result summaries."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from compressor_gui.core.compress import compress_job
from compressor_gui.core.data import RANDOM_SOURCE, save_npz
from compressor_gui.core.errors import CompressorError
from compressor_gui.core.jobs import run_job
from compressor_gui.core.model import load_model
from compressor_gui.core.plan import CompressionPlan, LayerSetting
from compressor_gui.core.session import Session
from compressor_gui.core.summaries import compress_summary
from compressor_gui.core.workflows import (
    NO_DATA_FOR_SWEEP,
    has_own_data,
    open_model_job,
    sweep_data,
)
from tests import modelgen


@pytest.fixture
def stack_path(tmp_path):
    path = tmp_path / "stack.onnx"
    path.write_bytes(modelgen.conv_stack().SerializeToString())
    return path


def test_a_torch_module_opens_with_its_module_types(tmp_path):
    module = torch.jit.script(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()))
    path = tmp_path / "net.pt"
    module.save(str(path))
    opened = run_job(open_model_job(path))
    assert opened.loaded.onnx_model is None  # no recorded input shapes: weights only
    ops = {layer.name: layer.op_type for layer in opened.inventory.layers}
    assert ops == {"0": "Conv2d", "1": "BatchNorm2d"}
    assert opened.inventory.total_params == 8 * 3 * 9 + 8 + 2 * 8 + 2 * 8 + 1


def test_sweeps_refuse_without_data_and_take_the_data_beside_the_model(stack_path):
    loaded = load_model(stack_path)
    assert not has_own_data(stack_path, None)
    with pytest.raises(CompressorError, match="no data to measure accuracy on"):
        sweep_data(loaded, None)
    samples = np.random.default_rng(0).standard_normal((12, 8, 8, 8)).astype(np.float32)
    save_npz(stack_path.with_name("stack_eval.npz"), {"x": samples, "y": np.arange(12) % 10})
    assert has_own_data(stack_path, None)
    dataset = sweep_data(loaded, None, samples=5)
    assert len(dataset) == 5 and dataset.labels is not None
    assert NO_DATA_FOR_SWEEP.startswith("no data")


def test_random_inputs_give_fidelity_rows_and_no_agreement(stack_path, tmp_path):
    loaded = load_model(stack_path)
    plan = CompressionPlan(default=LayerSetting(bits=8))
    job = compress_job(loaded, plan, tmp_path / "out.onnx", latency=False)
    summary = compress_summary(run_job(job))
    metrics = [row.metric for row in summary.rows]
    assert f"data: {RANDOM_SOURCE}" in summary.notes
    assert "output cosine" in metrics and "output SQNR" in metrics
    assert "agreement with original" not in metrics and "top-1" not in metrics
    assert len(summary.layers) == len(
        [layer for layer in run_job(open_model_job(stack_path)).inventory.layers if layer.macs]
    )


def test_a_gesture_is_one_undo_step_and_a_new_edit_drops_the_redo(demo_onnx):
    session = Session()
    session.set_model(run_job(open_model_job(demo_onnx)))
    heard = []
    session.plan_changed.connect(lambda: heard.append(session.plan))
    gesture = session.new_gesture()
    for bits in (16, 8, 4):  # one slider drag
        session.edit_layers(["/fc/Gemm"], gesture, bits=bits)
    assert session.history.count() == 1 and session.plan.setting("/fc/Gemm").bits == 4
    assert session.history.undo_text() == "/fc/Gemm: bits=4"
    session.history.undo()
    assert session.plan == CompressionPlan() and session.history.can_redo()
    session.set_plan(CompressionPlan(default=LayerSetting(bits=8)), "uniform INT8")
    assert not session.history.can_redo() and session.history.count() == 1
    assert len(heard) == 5  # three drag steps, the undo, the new plan


def test_the_predicted_file_is_the_file_compress_writes(published_models, tmp_path):
    """silero-vad holds 145 KB of graph besides its weights (many small Constant nodes in If
    branches): the window predicts the file, which Compress then reports, within 2 % (fusion
    may shrink the graph further)."""
    from compressor_gui.core.compress import compress_job
    from compressor_gui.core.jobs import run_job
    from compressor_gui.core.plan import CompressionPlan, LayerSetting
    from compressor_gui.core.workflows import open_model_job
    from tests.realmodels.suite import MODELS_BY_NAME

    session = Session()
    session.set_model(run_job(open_model_job(published_models / "silero_vad.onnx")))
    layers = [layer.name for layer in session.inventory.layers if layer.op_type in ("Conv", "LSTM")]
    # unfused: onnxslim's pass in fusion also drops graph nodes, which no prediction sees
    plan = CompressionPlan(layers={name: LayerSetting(bits=8) for name in layers}, fuse=False)
    session.set_plan(plan, "int8")
    predicted = session.prediction()
    assert predicted.original_file_bytes == (published_models / "silero_vad.onnx").stat().st_size
    out = tmp_path / "int8.onnx"
    data = tmp_path / "data.npz"
    np.savez(data, **MODELS_BY_NAME["silero-vad"].data(2, 0))
    run_job(compress_job(session.opened.loaded, plan, out, data, latency=False))
    assert abs(predicted.file_size_bytes / out.stat().st_size - 1) < 0.02
