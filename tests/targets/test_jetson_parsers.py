"""Parsers on every real board output in ../shared/fixtures/jetson."""

from __future__ import annotations

import pytest

from compressor_gui.targets.jetson import (
    parse_device_model,
    parse_export_times,
    parse_l4t_release,
    parse_tegrastats_line,
    parse_trtexec,
    summarize_tegrastats,
    total_power_mw,
    trtexec_failure_message,
)
from tests.targets.conftest import JETSON_FIXTURES


def fixture_text(name: str) -> str:
    return (JETSON_FIXTURES / name).read_text()


@pytest.mark.parametrize(
    ("name", "version", "median_ms", "p90_ms", "qps"),
    [
        ("trtexec_trt8001_nano_loadEngine_fp16.txt", "8.0.1", 40.3808, None, 24.7474),
        ("trtexec_trt8502_orinnano_fp16_summary.txt", None, 10.7972, 10.9329, 97.8649),
        ("trtexec_trt100300_jetson_resnet50_fp16_summary.txt", "10.3.0", 3.14062, 3.14587, 318.007),
        ("trtexec_trt100900_onnx_build_fp32_desktop.txt", "10.9.0", 112.567, 114.427, 8.66824),
    ],
)
def test_trtexec_summary_of_each_tensorrt_version(name, version, median_ms, p90_ms, qps):
    report = parse_trtexec(fixture_text(name))
    assert report.passed and report.throughput_qps == qps
    assert report.stats["Latency"]["median"] == median_ms
    assert report.stats["Latency"].get("p90") == p90_ms
    assert "p99" in report.stats["GPU Compute Time"]
    if version:
        assert report.version == version


def test_trtexec_8_0_has_end_to_end_latency_and_engine_load_time():
    report = parse_trtexec(fixture_text("trtexec_trt8001_nano_loadEngine_fp16.txt"))
    assert report.stats["End-to-End Host Latency"]["p99"] == 40.647
    assert report.engine_load_s == 3.78183


def test_trtexec_10_9_build_time_and_warnings():
    report = parse_trtexec(fixture_text("trtexec_trt100900_onnx_build_fp32_desktop.txt"))
    assert report.engine_build_s == 104.774
    assert any("unstable" in w for w in report.warnings)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("trtexec_fail_trt100300_jetson_unknown_option.txt", "dropped --workspace"),
        ("trtexec_fail_trt100300_jetson_cask_conv.txt", "short of memory"),
    ],
)
def test_trtexec_failures_are_quoted_with_a_hint(name, expected):
    report = parse_trtexec(fixture_text(name))
    assert not report.passed and report.version == "10.3.0" and report.errors
    assert expected in trtexec_failure_message(report, 1)


def test_export_times_gives_per_query_latency():
    latencies = parse_export_times(fixture_text("trtexec_exportTimes.json"))
    assert len(latencies) == 40 and all(value > 0 for value in latencies)


TEGRASTATS = [
    "tegrastats_agx_orin.txt",
    "tegrastats_agx_xavier_jp4.txt",
    "tegrastats_legacy_tx1_l4t28.txt",
    "tegrastats_nano_jp4.txt",
    "tegrastats_orin_nano_jp7_r39.txt",
    "tegrastats_orin_nano_nx.txt",
    "tegrastats_tx2_jp4.txt",
    "tegrastats_xavier_nx.txt",
]


@pytest.mark.parametrize("name", TEGRASTATS)
def test_every_tegrastats_line_parses(name):
    for line in fixture_text(name).splitlines():
        sample = parse_tegrastats_line(line)
        assert sample is not None and sample.ram_total_mb > sample.ram_used_mb > 0
        assert sample.cpu_load_percent and all(0 <= v <= 100 for v in sample.cpu_load_percent)
        assert all(t > -256 for t in sample.temperatures_c.values())
        if "legacy" not in name:
            assert sample.gpu_load_percent is not None and sample.power_mw
            assert total_power_mw(sample.power_mw) > 0
        assert not {"RAM", "SWAP", "IRAM"} & set(sample.power_mw)


def test_tegrastats_values_per_generation():
    nano = parse_tegrastats_line(fixture_text("tegrastats_nano_jp4.txt").splitlines()[0])
    assert nano.power_mw == {"POM_5V_IN": 1750, "POM_5V_GPU": 0, "POM_5V_CPU": 366}
    assert nano.temperatures_c["GPU"] == 40 and nano.cpu_load_percent == (5, 4, 3, 6)
    r39 = parse_tegrastats_line(fixture_text("tegrastats_orin_nano_jp7_r39.txt"))
    assert r39.power_mw["VDD_IN"] == 9761 and r39.temperatures_c["cpu"] == 50
    assert r39.gpu_load_percent == 33
    orin = parse_tegrastats_line(fixture_text("tegrastats_agx_orin.txt").splitlines()[0])
    assert "GPU" not in orin.temperatures_c  # -256C: sensor off
    assert total_power_mw(orin.power_mw) == 2340 + 390 + 4025
    tx1 = parse_tegrastats_line(fixture_text("tegrastats_legacy_tx1_l4t28.txt").splitlines()[0])
    assert tx1.cpu_load_percent == (17, 13, 29, 5) and tx1.gpu_load_percent == 3
    nano_off = parse_tegrastats_line(fixture_text("tegrastats_nano_jp4.txt").splitlines()[2])
    assert nano_off.cpu_load_percent == (22, 67)


def test_tegrastats_summary_means_power_and_keeps_max_temperature():
    summary = summarize_tegrastats(fixture_text("tegrastats_orin_nano_nx.txt").splitlines())
    assert summary.samples == 5
    assert summary.power_mw["VDD_IN"] == pytest.approx((4915 + 2957 + 4742 + 4824 + 6120) / 5)
    assert summary.temperatures_c["tj"] == 50.25  # line 4 is the hottest


def test_l4t_release_every_sample():
    lines = [
        line
        for line in fixture_text("nv_tegra_release_samples.txt").splitlines()
        if line.startswith("# R")
    ]
    parsed = [parse_l4t_release(line) for line in lines]
    assert all(parsed) and len(parsed) == 15
    assert parsed[0] == {
        "version": "32.6.1",
        "major": 32,
        "revision": "6.1",
        "gcid": "27863751",
        "board": "t210ref",
    }
    assert {p["version"] for p in parsed} >= {"32.5", "35.4.1", "36.3.0", "38.2.0", "39.2.0"}


def test_device_model_strips_nul():
    assert parse_device_model(b"NVIDIA Jetson Nano Developer Kit\0") == (
        "NVIDIA Jetson Nano Developer Kit"
    )
