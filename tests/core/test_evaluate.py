"""Accuracy, fidelity and latency measured the way the CLI reports them."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest

from compressor_gui.core.data import demo_dataset
from compressor_gui.core.evaluate import (
    accuracy,
    evaluate,
    fidelity,
    make_session,
    measure_latency,
    sample_feed,
)


def test_top1_and_top5_from_logits():
    logits = np.zeros((4, 10), np.float32)
    logits[np.arange(4), [1, 2, 3, 4]] = 5.0
    logits[3, 9] = 9.0  # sample 3 ranks class 9 first, its label second
    top1, top5 = accuracy(logits, np.array([1, 2, 3, 4]))
    assert top1 == 0.75 and top5 == 1.0


def test_no_top5_with_five_classes_or_fewer():
    assert accuracy(np.eye(3, dtype=np.float32), np.arange(3))[1] is None


def test_identical_outputs_have_full_fidelity():
    outputs = np.random.default_rng(0).standard_normal((8, 10))
    assert fidelity(outputs, outputs.copy()) == (1.0, pytest.approx(1.0), 200.0)


def test_sqnr_is_signal_over_noise_energy_in_db():
    reference = np.ones((4, 10))
    _, _, sqnr = fidelity(reference, reference + 0.1)
    assert sqnr == pytest.approx(10 * math.log10(1 / 0.01))


def test_demo_model_scores_its_held_out_split(demo_onnx):
    model = onnx.load(str(demo_onnx))
    result, output = evaluate(make_session(model), demo_dataset(model, "eval"))
    assert result.samples == 450 and output[0].shape == (450, 10)
    assert result.top1 >= 0.95 and result.top5 >= result.top1


def test_latency_reports_percentiles_with_fixed_threads(demo_onnx):
    model = onnx.load(str(demo_onnx))
    session = make_session(model, threads=1)
    latency = measure_latency(session, sample_feed(model), warmup=2, runs=10)
    assert latency.threads == 1 and latency.runs == 10
    assert 0 < latency.p50_ms <= latency.p90_ms
