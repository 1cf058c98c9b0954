"""Where the accuracy went: per-layer error of compressed demo models against the original."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from compressor_gui.core.compare import compare_job
from compressor_gui.core.data import RANDOM_SOURCE, demo_dataset
from compressor_gui.core.errors import CompressorError
from compressor_gui.core.evaluate import evaluate, make_session
from compressor_gui.core.fuse import fuse_model
from compressor_gui.core.jobs import CancelToken, JobCancelled, run_job
from compressor_gui.core.model import save_onnx
from compressor_gui.core.plan import CompressionPlan, LayerSetting
from compressor_gui.core.quantize import quantize_model
from tests import modelgen

HARD_LAYER = "/block2/conv1/Conv"
FEEDS = {HARD_LAYER: "/block2/conv2/Conv"}  # the next layer it feeds
SAMPLES = 64


@pytest.fixture(scope="module")
def demo_model(demo_onnx) -> onnx.ModelProto:
    return onnx.load(str(demo_onnx))


@pytest.fixture(scope="module")
def eval_data(demo_model):
    return demo_dataset(demo_model, "eval").subset(SAMPLES)


@pytest.fixture(scope="module")
def two_bit_path(demo_model, tmp_path_factory):
    """Every layer INT8 weight-only (no calibration data), one layer ternary 2-bit."""
    plan = CompressionPlan(default=LayerSetting(bits=8)).with_layers([HARD_LAYER], bits=2)
    result = quantize_model(demo_model, plan)
    return save_onnx(result.model, tmp_path_factory.mktemp("compare") / "two_bit.onnx")


@pytest.fixture(scope="module")
def qdq_path(demo_model, tmp_path_factory):
    """Fused, then static INT8 QDQ (u8 activations, 7-bit s8 weights) on calibration data."""
    fused, _ = fuse_model(demo_model)
    plan = CompressionPlan(default=LayerSetting(bits=8), int8_form="u8s8-rr")
    calibration = demo_dataset(demo_model, "calib").subset(SAMPLES)
    result = quantize_model(fused, plan, calibration)
    return save_onnx(result.model, tmp_path_factory.mktemp("compare") / "qdq.onnx")


def test_the_layer_compressed_hardest_ranks_worst(demo_onnx, two_bit_path, eval_data):
    result = run_job(compare_job(demo_onnx, two_bit_path, eval_data))
    assert result.layers[0].name in (HARD_LAYER, FEEDS[HARD_LAYER])
    assert result.worst(1) == (result.layers[0].name,)
    hard = next(e for e in result.layers if e.name == HARD_LAYER)
    others = [e for e in result.layers if e.name not in (HARD_LAYER, FEEDS[HARD_LAYER])]
    assert all(hard.added_error > 2 * e.added_error for e in others)
    assert hard.input_relative_error < hard.relative_error
    assert not result.qdq and all(e.simulated_sqnr_db is None for e in result.layers)
    assert result.samples == SAMPLES and not result.fidelity_only
    assert result.top1_original is not None and result.agreement_top1 is not None


def test_every_layer_of_a_fused_qdq_model_is_matched_through_the_debugger(
    demo_onnx, qdq_path, eval_data
):
    result = run_job(compare_job(demo_onnx, qdq_path, eval_data))
    assert result.qdq
    conv_and_gemm = [
        n.name for n in onnx.load(str(demo_onnx)).graph.node if n.op_type in ("Conv", "Gemm")
    ]
    assert sorted(e.name for e in result.layers) == sorted(conv_and_gemm)
    assert all(e.compared and e.simulated_sqnr_db is not None for e in result.layers)
    # the runtime's own result: what compare measured is what the model computes alone
    alone, _ = evaluate(make_session(qdq_path), eval_data)
    assert result.top1_compressed == pytest.approx(alone.top1)
    assert not any("observing the layers changed" in note for note in result.notes)
    errors = [e.relative_error for e in result.layers]
    assert [e.rank_error for e in result.layers] == sorted(
        (e.rank_error for e in result.layers), reverse=True
    )
    assert all(np.isfinite(errors))


def test_random_inputs_measure_fidelity_only(demo_onnx, two_bit_path):
    result = run_job(compare_job(demo_onnx, two_bit_path, None))
    assert result.fidelity_only and result.data_source == RANDOM_SOURCE
    assert result.top1_original is None and result.top1_compressed is None
    assert result.agreement_top1 is not None and result.layers[0].compared


def test_models_with_different_inputs_are_refused(demo_onnx, tmp_path):
    other = save_onnx(modelgen.linear(), tmp_path / "linear.onnx")
    with pytest.raises(CompressorError, match="inputs"):
        run_job(compare_job(demo_onnx, other, None))


def test_a_cancel_stops_between_batches(demo_onnx, two_bit_path, eval_data):
    token = CancelToken()
    job = compare_job(demo_onnx, two_bit_path, eval_data, token, batch_size=8)
    next(job)
    token.cancel()
    with pytest.raises(JobCancelled):
        run_job(job)
