"""Default static INT8 keeps float the layers whose INT8 costs the model's OUTPUT most, which
are not always those that add the most error locally."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compressor_gui.core import int8_keep_float, quant_passes
from compressor_gui.core.data import Dataset
from compressor_gui.core.plan import CompressionPlan, LayerSetting
from compressor_gui.core.quant_passes import was_quantized
from compressor_gui.core.quantize import quantize_model

CHANNELS = 8


def _cancelling_model() -> onnx.ModelProto:
    """`near_identity` (weights I + a little) minus its own input: the small difference is the
    output, so its INT8 error, small next to its own output, is most of the output's. Beside
    it a louder branch (`loud` -> `after_loud` -> `last`, one channel 50x) that adds more
    error locally but reaches the output scaled by 1e-6."""
    rng = np.random.default_rng(0)
    near = (
        np.eye(CHANNELS)[:, :, None, None]
        + 0.01 * rng.standard_normal((CHANNELS, CHANNELS))[:, :, None, None]
    )
    loud, after_loud, last = (rng.standard_normal((CHANNELS, CHANNELS, 3, 3)) * 0.3 for _ in "abc")
    loud[0] *= 50
    last[:, 1] *= 30
    weights = [
        numpy_helper.from_array(array.astype(np.float32), name)
        for array, name in (
            (near, "w_near"),
            (loud, "w_loud"),
            (after_loud, "w_after"),
            (last, "w_last"),
        )
    ]
    weights.append(numpy_helper.from_array(np.array(1e-6, np.float32), "small"))
    pads = {"pads": [1] * 4}
    nodes = [
        helper.make_node("Conv", ["x", "w_near"], ["near"], name="near_identity"),
        helper.make_node("Sub", ["near", "skip"], ["difference"], name="difference"),
        helper.make_node("Conv", ["x", "w_loud"], ["loud"], name="loud", **pads),
        helper.make_node("Conv", ["loud", "w_after"], ["after"], name="after_loud", **pads),
        helper.make_node("Conv", ["after", "w_last"], ["last"], name="last", **pads),
        helper.make_node("Mul", ["last", "small"], ["scaled"], name="scale"),
        helper.make_node("Add", ["difference", "scaled"], ["y"], name="out"),
    ]
    shape = ["n", CHANNELS, 8, 8]
    graph = helper.make_graph(
        nodes,
        "cancelling",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("x", "skip")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_the_layer_that_costs_the_output_most_is_kept_float_not_the_locally_worst(monkeypatch):
    x = np.random.default_rng(1).uniform(-1, 1, (64, CHANNELS, 8, 8)).astype(np.float32)
    data = Dataset({"x": x, "skip": x}, {"x": "batch", "skip": "batch"}, source="noise")
    rankings: dict[str, list[str]] = {}

    def recorded(function, key):
        def wrapper(*arguments):
            rankings[key] = function(*arguments)
            return rankings[key]

        return wrapper

    for name, key in (("worst_locally", "local"), ("rank_by_output", "output")):
        monkeypatch.setattr(int8_keep_float, name, recorded(getattr(int8_keep_float, name), key))
    result = quantize_model(
        _cancelling_model(), CompressionPlan(default=LayerSetting(bits=8)), data
    )

    assert "near_identity" not in rankings["local"][: quant_passes.FLOAT_PER_ROUND]
    assert rankings["output"][0] == "near_identity"
    assert not was_quantized(result.model, "near_identity")
    assert any("near_identity" in warning for warning in result.warnings)
