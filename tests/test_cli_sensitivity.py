"""`compressor-gui sensitivity` and `autoplan` from the command line, on the demo model."""

from __future__ import annotations

import json

import pytest

from compressor_gui.cli import main


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSOR_GUI_CACHE_DIR", str(tmp_path / "cache"))


def test_sensitivity_json_lists_every_layer_and_option(demo_onnx, capsys):
    args = [str(demo_onnx), "--samples", "16", "--options", "int8,int2", "--json"]
    assert main(["sensitivity", *args]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["metric"] == "top1" and payload["samples"] == 16
    assert len(payload["points"]) == 2 * len(payload["layers"]) == 24
    assert all(point["drop"] is not None for point in payload["points"])


def test_layers_cap_sweeps_the_layers_holding_the_most_weights(demo_onnx, capsys):
    from compressor_gui.core.inventory import build_inventory
    from compressor_gui.core.model import load_model

    args = [str(demo_onnx), "--samples", "4", "--options", "int8", "--layers", "2", "--json"]
    assert main(["sensitivity", *args]) == 0
    swept = {point["layer"] for point in json.loads(capsys.readouterr().out)["points"]}
    layers = build_inventory(load_model(demo_onnx).onnx_model).layers
    largest = sorted(layers, key=lambda layer: layer.params, reverse=True)[:2]
    assert swept == {layer.name for layer in largest}


def test_sensitivity_table_prints_drops(demo_onnx, capsys):
    assert main(["sensitivity", str(demo_onnx), "--samples", "8", "--options", "int8"]) == 0
    out = capsys.readouterr().out
    assert "baseline top-1 accuracy" in out and "/fc/Gemm" in out


def test_sensitivity_without_data_for_another_model_exits_2(tmp_path, capsys):
    import onnx

    from tests import modelgen

    path = tmp_path / "linear.onnx"
    onnx.save(modelgen.linear(), path)
    assert main(["sensitivity", str(path)]) == 2
    assert "--data" in capsys.readouterr().err


def test_autoplan_writes_a_recipe_and_prints_predicted_and_measured(demo_onnx, tmp_path, capsys):
    from compressor_gui.core.plan import load_recipe

    recipe = tmp_path / "plan.json"
    args = [str(demo_onnx), "--samples", "32", "--size-ratio", "5", "--verify", "simulated"]
    assert main(["autoplan", *args, "-o", str(recipe), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["chosen"]["predicted_ratio"] >= 5
    assert {"uniform INT8", "uniform INT4"} <= {c["label"] for c in payload["candidates"]}
    assert load_recipe(recipe).layers


def test_autoplan_without_a_budget_exits_2(demo_onnx, tmp_path, capsys):
    assert main(["autoplan", str(demo_onnx), "-o", str(tmp_path / "p.json")]) == 2
    assert "--size-ratio" in capsys.readouterr().err
