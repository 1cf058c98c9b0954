"""Local target: real runs in a child process with onnxruntime and OpenVINO."""

from __future__ import annotations

import multiprocessing
import os
import signal

import pytest

from compressor_gui.core.errors import JobCancelled, TargetError
from compressor_gui.core.jobs import CancelToken, run_job
from compressor_gui.targets.base import BenchConfig
from compressor_gui.targets.local import LocalTarget


def test_onnxruntime_run_reports_ordered_latency_stats(conv_model):
    result = run_job(LocalTarget().benchmark(conv_model, BenchConfig(warmup=2, runs=40, threads=1)))
    lat = result.latency
    assert result.runs == 40 and result.device == "CPUExecutionProvider"
    assert 0 < lat.min_ms <= lat.p50_ms <= lat.p90_ms <= lat.p99_ms <= lat.max_ms
    assert result.throughput_per_s == pytest.approx(1000 / lat.mean_ms, rel=1e-6)
    assert result.session_create_ms > 0 and result.peak_memory_bytes > 10 * 2**20


def test_openvino_strict_fp32_is_a_second_runtime(conv_model):
    config = BenchConfig(runtime="openvino", precision="fp32", warmup=1, runs=10, threads=1)
    result = run_job(LocalTarget().benchmark(conv_model, config))
    assert result.runtime == "openvino" and result.runtime_version.startswith("openvino")
    assert "OpenVINO inference precision: f32" in result.notes


def test_duration_mode_times_for_the_given_seconds(conv_model):
    config = BenchConfig(warmup=0, duration_s=0.3, threads=1)
    result = run_job(LocalTarget().benchmark(conv_model, config))
    assert result.runs > 1 and result.latency.mean_ms * result.runs >= 250


def test_runtime_options_list_what_is_installed():
    labels = [option.label for option in LocalTarget().runtime_options()]
    assert "ort/CPUExecutionProvider/fp32" in labels and "openvino/CPU/fp32" in labels


def test_a_model_the_runtime_rejects_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(TargetError, match="the runtime failed"):
        run_job(LocalTarget().benchmark(bad, BenchConfig(runs=1)))


def test_a_crashed_runtime_process_is_reported_not_fatal(conv_model):
    job = LocalTarget().benchmark(conv_model, BenchConfig(warmup=0, duration_s=30, threads=1))
    with pytest.raises(TargetError, match="SIGKILL"):
        for step in job:
            if step.message == "timing":
                for child in multiprocessing.active_children():
                    os.kill(child.pid, signal.SIGKILL)


def test_cancel_kills_the_child_process(conv_model):
    cancel = CancelToken()
    job = LocalTarget().benchmark(conv_model, BenchConfig(duration_s=30, threads=1), cancel)
    with pytest.raises(JobCancelled):
        for step in job:
            if step.message == "timing":
                cancel.cancel()
    assert multiprocessing.active_children() == []


def test_unknown_provider_names_the_ones_available(conv_model):
    with pytest.raises(TargetError, match="CPUExecutionProvider"):
        run_job(LocalTarget().benchmark(conv_model, BenchConfig(provider="NoSuchProvider")))
