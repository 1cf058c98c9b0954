"""`compressor-gui bench` and `compressor-gui targets` as a user types them."""

from __future__ import annotations

import json

import numpy as np

from compressor_gui.cli import main
from compressor_gui.core.hardware import local_machine
from tests.modelgen import linear


def test_bench_json_has_latency_and_runtime(conv_model, capsys):
    assert main(["bench", str(conv_model), "--runs", "20", "--threads", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["runtime"] == "ort" and data["runs"] == 20
    assert data["latency"]["p50_ms"] > 0 and data["peak_memory_bytes"] > 0
    assert data["machine"]["isa_class"] == local_machine().isa_class


def test_bench_several_batch_sizes_on_a_dynamic_model(tmp_path, capsys):
    import onnx

    model = tmp_path / "linear.onnx"
    onnx.save(linear(), model)
    assert main(["bench", str(model), "--runs", "5", "--batch-size", "1,4", "--json"]) == 0
    assert [r["batch_size"] for r in json.loads(capsys.readouterr().out)] == [1, 4]


def test_bench_feeds_the_data_so_silero_vad_runs_its_16khz_branch(
    published_models, tmp_path, capsys
):
    from tests.realmodels.suite import MODELS_BY_NAME

    model = str(published_models / "silero_vad.onnx")
    data = tmp_path / "audio.npz"
    np.savez(data, **MODELS_BY_NAME["silero-vad"].data(2, 0))  # input, state, sr = 16000
    timing = ["--warmup", "0", "--runs", "2", "--threads", "1", "--json"]
    # made up, the sample rate is 1: the 8 kHz branch, which 512-sample audio does not fit
    shapes = ["--input-shape", "1x512", "--input-shape", "2x1x128"]
    assert main(["bench", model, *timing, *shapes]) == 2
    capsys.readouterr()
    assert main(["bench", model, *timing, "--data", str(data)]) == 0
    assert json.loads(capsys.readouterr().out)["latency"]["p50_ms"] > 0


def test_sweep_prints_every_runtime_sorted_with_fidelity(tmp_path, capsys):
    import onnx

    model = tmp_path / "linear.onnx"
    onnx.save(linear(), model)
    data = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.standard_normal((16, 64)).astype(np.float32), y=np.zeros(16, int))
    args = ["bench", str(model), "--sweep", "--runs", "10", "--threads", "1", "--data", str(data)]
    assert main([*args, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["runtime"], r["precision"]) for r in rows} >= {("ort", "fp32"), ("openvino", "fp32")}
    assert [r["latency"]["p50_ms"] for r in rows] == sorted(r["latency"]["p50_ms"] for r in rows)
    reference = next(r for r in rows if r["runtime"] == "ort")
    assert reference["cosine"] == 1.0 and reference["top1_agreement"] == 1.0
    assert all(r["cosine"] > 0.99 and "accuracy" in r for r in rows)
    assert main(args) == 0
    assert "top-1 agree" in capsys.readouterr().out


def test_unknown_target_exits_2_with_a_hint(conv_model, config_dir, capsys):
    assert main(["bench", str(conv_model), "--target", "nowhere"]) == 2
    assert "targets add" in capsys.readouterr().err


def test_targets_add_list_test_remove(sshd, config_dir, capsys):
    spec = sshd.spec()
    add = ["targets", "add", "box", f"{spec.user}@127.0.0.1:{sshd.port}", "--key", spec.key_file]
    assert main([*add, "--no-agent", "--python", spec.python]) == 0
    assert main(["targets", "list"]) == 0
    assert f"box  {spec.user}@127.0.0.1:{sshd.port}" in capsys.readouterr().out
    assert main(["targets", "test", "box"]) == 2
    assert f"--accept-host-key {sshd.fingerprint()}" in capsys.readouterr().err
    assert main(["targets", "test", "box", "--accept-host-key", sshd.fingerprint(), "--json"]) == 0
    assert "CPUExecutionProvider" in json.loads(capsys.readouterr().out)["providers"]
    assert main(["targets", "remove", "box"]) == 0
    assert json.loads((config_dir / "targets.json").read_text()) == {"targets": []}


def test_bench_on_a_saved_ssh_target(sshd, config_dir, trusting, conv_model, capsys):
    from compressor_gui.targets.store import save_target

    trusting(sshd)
    save_target(sshd.spec())
    assert main(["bench", str(conv_model), "--target", "box", "--runs", "10", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["target"] == "box" and data["machine"]["cores"] >= 1
