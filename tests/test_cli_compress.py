"""`compressor-gui compress`: the table, --json, and errors as exit code 2."""

from __future__ import annotations

import json

import onnx

from compressor_gui.cli import main


def test_int8_prints_a_before_after_table(demo_onnx, tmp_path, capsys):
    out = tmp_path / "demo_int8.onnx"
    assert main(["compress", str(demo_onnx), "--int8", "-o", str(out), "--no-latency"]) == 0
    text = capsys.readouterr().out
    assert "before" in text and "after" in text and "top-1" in text and "0.2" in text
    onnx.checker.check_model(onnx.load(str(out)))


def test_json_output_with_recipe_and_simulated_label(demo_onnx, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text('default: 32\nlayers:\n  "/block1/*": 1\n  /fc/Gemm: 16\nfuse: false\n')
    argv = ["compress", str(demo_onnx), "--recipe", str(recipe), "-o", str(tmp_path / "o.onnx")]
    assert main([*argv, "--json", "--no-latency"]) == 0
    data = json.loads(capsys.readouterr().out)
    methods = {a["name"]: a for a in data["actions"]}
    assert methods["/block1/conv1/Conv"]["simulated"] is True
    assert "FP16" in methods["/fc/Gemm"]["method"]
    assert data["simulated_label"] == "simulated: no runtime kernel"


def test_exclude_keeps_a_layer_float(demo_onnx, tmp_path, capsys):
    argv = ["compress", str(demo_onnx), "--int4", "--exclude", "/fc/Gemm", "--json"]
    assert main([*argv, "-o", str(tmp_path / "o.onnx"), "--no-latency"]) == 0
    actions = {a["name"]: a for a in json.loads(capsys.readouterr().out)["actions"]}
    assert actions["/fc/Gemm"]["bits"] == 32


def test_unknown_exclude_is_an_error_not_a_traceback(demo_onnx, tmp_path, capsys):
    argv = ["compress", str(demo_onnx), "--int8", "--exclude", "/nope", "-o", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "no layer named '/nope'" in capsys.readouterr().err


def test_no_action_given_is_an_error(demo_onnx, tmp_path, capsys):
    assert main(["compress", str(demo_onnx), "-o", str(tmp_path / "o.onnx")]) == 2
    assert "--int8" in capsys.readouterr().err


def _compress_json(demo_onnx, tmp_path, capsys, *flags: str) -> dict:
    argv = ["compress", str(demo_onnx), *flags, "-o", str(tmp_path / "o.onnx")]
    assert main([*argv, "--json", "--no-latency"]) == 0
    return json.loads(capsys.readouterr().out)


def test_global_pruning_zeroes_the_same_share_and_spares_sensitive_layers(
    demo_onnx, tmp_path, capsys
):
    uniform = _compress_json(demo_onnx, tmp_path, capsys, "--prune", "0.5")
    ranked = _compress_json(demo_onnx, tmp_path, capsys, "--prune", "0.5", "--global")
    for result in (uniform, ranked):
        assert "50.0% of their 324256 weights now zero" in result["steps"][0]
    # one threshold over all layers takes more from the big 3x3 convs and less from the
    # stem, depthwise and classifier: far less damage than 50% in every layer
    assert ranked["after"]["eval"]["top1"] >= 0.97
    assert ranked["after"]["eval"]["top1"] > uniform["after"]["eval"]["top1"] + 0.2


def test_global_pruning_needs_unstructured(demo_onnx, tmp_path, capsys):
    argv = ["compress", str(demo_onnx), "--prune", "0.5", "--pattern", "channel", "--global"]
    assert main([*argv, "-o", str(tmp_path / "o.onnx")]) == 2
    assert "--global needs --prune RATIO with --pattern unstructured" in capsys.readouterr().err
