"""`compressor-gui distill` and `compress --distill`: the progressive pipeline from the
command line, its training table, and errors as exit code 2."""

from __future__ import annotations

import json

import onnx
import pytest

from compressor_gui.cli import main


@pytest.fixture(scope="module")
def pruned_demo(demo_onnx, tmp_path_factory):
    """The demo with half of its channels cut, BatchNorm kept (what the student starts as)."""
    out = tmp_path_factory.mktemp("student") / "demo_half.onnx"
    argv = ["compress", str(demo_onnx), "--prune", "0.5", "--pattern", "channel", "--no-fuse"]
    assert main([*argv, "-o", str(out), "--no-latency", "--json"]) == 0
    return out


def test_compress_distill_recovers_a_pruned_int8_demo(demo_onnx, tmp_path, capsys):
    argv = ["compress", str(demo_onnx), "--prune", "0.5", "--pattern", "channel", "--int8"]
    argv += ["--distill", "2", "--qat", "--threads", "1", "-o", str(tmp_path / "o.onnx")]
    assert main([*argv, "--json", "--no-latency"]) == 0
    data = json.loads(capsys.readouterr().out)
    history = data["distill"]["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert history[0]["val_top1"] < 0.3  # pruned, before any training
    assert data["after"]["eval"]["top1"] > 0.6  # held-out eval split, never trained on
    assert data["size_ratio"] < 0.15
    assert all(a["bits"] == 8 for a in data["actions"])
    assert any("the one QAT trained for" in step for step in data["steps"])
    # retrained logits differ from the original's in scale: top-1 judges, not the cosine
    assert data["after"]["eval"]["cosine"] < 0.99
    assert not any("cosine" in warning for warning in data["warnings"])


def test_distill_prints_the_training_table(demo_onnx, pruned_demo, tmp_path, capsys):
    argv = ["distill", str(demo_onnx), str(pruned_demo), "--epochs", "1", "--threads", "1"]
    assert main([*argv, "-o", str(tmp_path / "o.onnx"), "--no-latency"]) == 0
    text = capsys.readouterr().out
    assert "before: the teacher demo.onnx" in text
    assert "epoch  train loss  val loss  val top-1  agreement" in text
    onnx.checker.check_model(onnx.load(str(tmp_path / "o.onnx")))


def test_student_with_an_op_torch_cannot_run_is_named(demo_onnx, tmp_path, capsys):
    student = onnx.load(str(demo_onnx))
    relu = next(n for n in student.graph.node if n.op_type == "Relu")
    relu.op_type = "Celu"
    path = tmp_path / "celu.onnx"
    onnx.save(student, str(path))
    argv = ["distill", str(demo_onnx), str(path), "--epochs", "1", "-o", str(tmp_path / "o")]
    assert main(argv) == 2
    assert f"node {relu.name} (Celu): no torch conversion" in capsys.readouterr().err


def test_distillation_without_training_data_is_an_error(pruned_demo, tmp_path, capsys):
    argv = ["distill", str(pruned_demo), str(pruned_demo), "-o", str(tmp_path / "o.onnx")]
    assert main(argv) == 2
    assert "distillation needs training data: give --data D" in capsys.readouterr().err
