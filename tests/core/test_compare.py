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


def test_layers_inside_branches_the_data_fixes_are_observed(published_models, tmp_path):
    """silero-vad's layers sit in If branches chosen by its sample-rate input, which
    onnxruntime cannot expose; with 16000 in every sample the branch is inlined in both models
    and its layers are compared under their own names (before: every layer "inside a
    subgraph: not observed", and "no layer adds error")."""
    from compressor_gui.core.data import dataset_from_arrays
    from tests.realmodels.suite import MODELS_BY_NAME

    original = onnx.load(str(published_models / "silero_vad.onnx"))
    compressed = quantize_model(original, CompressionPlan(default=LayerSetting(bits=4))).model
    compressed_path = save_onnx(compressed, tmp_path / "int4.onnx")
    data = dataset_from_arrays(MODELS_BY_NAME["silero-vad"].data(4, 0), original)
    result = run_job(compare_job(published_models / "silero_vad.onnx", compressed_path, data))
    compared = {error.name: error for error in result.layers if error.compared}
    assert "If_0_then_branch__Inline_0__/decoder/rnn/LSTM" in compared
    assert len(compared) >= 6 and all(e.sqnr_db < 60 for e in compared.values())
    assert any("sr = 16000 in every sample" in note for note in result.notes)
    assert result.worst(3)
