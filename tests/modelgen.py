"""Small ONNX models built with onnx.helper, whose costs can be computed by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _weight(name: str, shape, seed: int = 0, zero_fraction: float = 0.0) -> onnx.TensorProto:
    array = _rng(seed).standard_normal(shape).astype(np.float32)
    if zero_fraction:
        flat = array.reshape(-1)
        flat[: int(round(flat.size * zero_fraction))] = 0.0
    return numpy_helper.from_array(array, name)


def _model(nodes, inputs, outputs, initializers, name="generated") -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=OPSET)
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def linear(in_features=64, out_features=10, batch="batch", zero_fraction=0.0) -> onnx.ModelProto:
    """Gemm y = x W^T + b with W of shape (out, in)."""
    return _model(
        [helper.make_node("Gemm", ["x", "W", "b"], ["y"], name="fc", transB=1)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, in_features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, out_features])],
        [
            _weight("W", (out_features, in_features), zero_fraction=zero_fraction),
            _weight("b", (out_features,), seed=1),
        ],
    )


def conv(channels_in=3, channels_out=16, kernel=3, size=32, group=1) -> onnx.ModelProto:
    """Conv with 'same' padding (output spatial == input spatial), then Relu."""
    pad = kernel // 2
    return _model(
        [
            helper.make_node(
                "Conv",
                ["x", "W", "B"],
                ["c"],
                name="conv",
                group=group,
                pads=[pad] * 4,
                kernel_shape=[kernel, kernel],
            ),
            helper.make_node("Relu", ["c"], ["y"], name="relu"),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels_in, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels_out, size, size])],
        [
            _weight("W", (channels_out, channels_in // group, kernel, kernel)),
            _weight("B", (channels_out,), seed=1),
        ],
    )


def conv_stack(depth=4, channels=8, size=8, classes=10) -> onnx.ModelProto:
    """depth-1 Conv 3x3 + Relu layers (He-initialized: activations neither vanish nor
    explode), global pooling and a Gemm classifier: a small many-layer model for sweeps."""
    nodes, weights, value = [], [], "x"
    for index in range(depth - 1):
        w = _rng(index).standard_normal((channels, channels, 3, 3)) * np.sqrt(2 / (channels * 9))
        weights.append(numpy_helper.from_array(w.astype(np.float32), f"w{index}"))
        nodes += [
            helper.make_node(
                "Conv", [value, f"w{index}"], [f"c{index}"], name=f"conv{index}", pads=[1] * 4
            ),
            helper.make_node("Relu", [f"c{index}"], [f"r{index}"], name=f"relu{index}"),
        ]
        value = f"r{index}"
    weights.append(_weight("fc_w", (classes, channels), seed=depth))
    nodes += [
        helper.make_node("GlobalAveragePool", [value], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w"], ["y"], name="fc", transB=1),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", classes])],
        weights,
    )


def depthwise(channels=8, size=16) -> onnx.ModelProto:
    return conv(channels, channels, 3, size, group=channels)


def lstm(seq=5, batch=2, input_size=8, hidden=16) -> onnx.ModelProto:
    """LSTM with W (1, 4H, I), R (1, 4H, H), B (1, 8H)."""
    return _model(
        [helper.make_node("LSTM", ["x", "W", "R", "B"], ["y"], name="lstm", hidden_size=hidden)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [seq, batch, input_size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [seq, 1, batch, hidden])],
        [
            _weight("W", (1, 4 * hidden, input_size)),
            _weight("R", (1, 4 * hidden, hidden), 1),
            _weight("B", (1, 8 * hidden), 2),
        ],
    )


def attention_block(seq=16, dim=32) -> onnx.ModelProto:
    """Self-attention core: Q/K/V projections (MatMul with constant weights), QK^T, softmax,
    AV, output projection, LayerNorm: the MatMuls of activations have no weights."""
    nodes = [
        helper.make_node("MatMul", ["x", "Wq"], ["q"], name="q_proj"),
        helper.make_node("MatMul", ["x", "Wk"], ["k"], name="k_proj"),
        helper.make_node("MatMul", ["x", "Wv"], ["v"], name="v_proj"),
        helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"], name="scores"),
        helper.make_node("Softmax", ["scores"], ["attn"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["attn", "v"], ["ctx"], name="context"),
        helper.make_node("MatMul", ["ctx", "Wo"], ["o"], name="out_proj"),
        helper.make_node("Add", ["o", "x"], ["r"], name="residual"),
        helper.make_node(
            "LayerNormalization", ["r", "ln_scale", "ln_bias"], ["y"], name="ln", axis=-1
        ),
    ]
    weights = [_weight(n, (dim, dim), seed=i) for i, n in enumerate(("Wq", "Wk", "Wv", "Wo"))]
    weights += [
        numpy_helper.from_array(np.ones(dim, np.float32), "ln_scale"),
        numpy_helper.from_array(np.zeros(dim, np.float32), "ln_bias"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, seq, dim])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, seq, dim])],
        weights,
    )


def embedding(vocab=100, dim=16, tokens=7) -> onnx.ModelProto:
    return _model(
        [helper.make_node("Gather", ["E", "ids"], ["y"], name="embed")],
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, tokens])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, tokens, dim])],
        [_weight("E", (vocab, dim))],
    )


def constant_weight_conv() -> onnx.ModelProto:
    """Weights in a Constant node (as Paddle exports do) instead of an initializer."""
    weight = _weight("W", (4, 2, 3, 3))
    return _model(
        [
            helper.make_node("Constant", [], ["W"], name="w_const", value=weight),
            helper.make_node("Conv", ["x", "W"], ["y"], name="conv", pads=[1, 1, 1, 1]),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [],
    )


def as_constant_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same model with every initializer held in a `Constant` node instead, as Paddle
    exports keep their weights."""
    moved = onnx.ModelProto()
    moved.CopyFrom(model)
    constants = [
        helper.make_node("Constant", [], [t.name], name=f"{t.name}_const", value=t)
        for t in moved.graph.initializer
    ]
    nodes = constants + list(moved.graph.node)
    del moved.graph.initializer[:]
    del moved.graph.node[:]
    moved.graph.node.extend(nodes)
    onnx.checker.check_model(moved)
    return moved


def conv_in_if_branch(channels=4, size=8, outer_constants=False) -> onnx.ModelProto:
    """A Conv inside both branches of an `If` whose weights are initializers of the branch
    subgraphs, as exporters of data-dependent control flow write them (or, with
    `outer_constants`, Constant nodes of the main graph that the branches read)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, size, size])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, size, size])

    def branch(name: str, seed: int) -> onnx.GraphProto:
        conv = helper.make_node(
            "Conv", ["x", f"{name}_w"], [f"{name}_y"], name=f"{name}_conv", pads=[1] * 4
        )
        out = helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, None)
        weights[name] = _weight(f"{name}_w", (channels, channels, 3, 3), seed)
        inner = [] if outer_constants else [weights[name]]
        return helper.make_graph([conv], name, [], [out], inner)

    weights: dict[str, onnx.TensorProto] = {}
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["mean"], name="mean", keepdims=0),
        helper.make_node("Greater", ["mean", "zero"], ["positive"], name="positive"),
        helper.make_node(
            "If",
            ["positive"],
            ["y"],
            name="branch",
            then_branch=branch("then", 1),
            else_branch=branch("else", 2),
        ),
    ]
    if outer_constants:
        nodes[:0] = [
            helper.make_node("Constant", [], [w.name], name=f"{w.name}_const", value=w)
            for w in weights.values()
        ]
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    return _model(nodes, [x], [y], [zero])


def float16_weight_conv() -> onnx.ModelProto:
    """A Conv whose weight is stored float16 and reaches it through a Cast to float32."""
    weight = numpy_helper.from_array(
        _rng(3).standard_normal((8, 4, 3, 3)).astype(np.float16), "W16"
    )
    return _model(
        [
            helper.make_node("Cast", ["W16"], ["W"], name="w_cast", to=TensorProto.FLOAT),
            helper.make_node("Conv", ["x", "W"], ["y"], name="conv", pads=[1, 1, 1, 1]),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])],
        [weight],
    )


def custom_op() -> onnx.ModelProto:
    """A node in a custom domain that ONNX shape inference does not know."""
    graph = helper.make_graph(
        [helper.make_node("FancyDense", ["x", "W"], ["y"], name="fancy", domain="com.example")],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [_weight("W", (8, 4))],
    )
    model = helper.make_model(graph, opset_imports=OPSET + [helper.make_opsetid("com.example", 1)])
    model.ir_version = 8
    return model


def save_with_external_data(model: onnx.ModelProto, path: Path) -> Path:
    """Save so that every weight lives in `<name>.data` beside the .onnx file."""
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=f"{path.name}.data",
        size_threshold=0,
    )
    return path


def expand_to_input_shape(channels=16, size=8) -> onnx.ModelProto:
    """Conv + Relu whose output is broadcast by Expand to a shape given as a second input:
    onnxruntime's symbolic shape inference cannot finish it ("Incomplete symbolic shape
    inference") and then saves its partial model and weights into the working directory."""
    return _model(
        [
            helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["r"], name="relu"),
            helper.make_node("Expand", ["r", "shape"], ["y"], name="expand"),
        ],
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size]),
            helper.make_tensor_value_info("shape", TensorProto.INT64, [4]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])],
        [_weight("W", (channels, 3, 3, 3)), _weight("B", (channels,), seed=1)],
    )


def dynamic_detector(channels=8) -> onnx.ModelProto:
    """A YOLOv8-style neck on images of dynamic batch, height and width: three stride-2 convs,
    the deepest upsampled x2 and concatenated with the one before it, a 1x1 head. At H = W = 1
    the upsampled map is 2x2 but the lateral one 1x1, so the Concat fails: dynamic dims taken
    as 1 do not run, a real image size (a multiple of 8) does."""
    c1, c2, c3 = channels, 2 * channels, 2 * channels

    def conv(name, source, c_in, c_out, seed):
        return [
            helper.make_node(
                "Conv",
                [source, f"{name}.w", f"{name}.b"],
                [f"{name}.c"],
                name=name,
                strides=[2, 2],
                pads=[1, 1, 1, 1],
                kernel_shape=[3, 3],
            ),
            helper.make_node("Relu", [f"{name}.c"], [name], name=f"{name}.relu"),
        ], [_weight(f"{name}.w", (c_out, c_in, 3, 3), seed), _weight(f"{name}.b", (c_out,), seed)]

    nodes, weights = [], []
    for name, source, c_in, c_out, seed in (
        ("stem", "images", 3, c1, 1),
        ("down1", "stem", c1, c2, 2),
        ("down2", "down1", c2, c3, 3),
    ):
        more_nodes, more_weights = conv(name, source, c_in, c_out, seed)
        nodes += more_nodes
        weights += more_weights
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    head_w = _weight("head.w", (6, c2 + c3, 1, 1), 4)
    nodes += [
        helper.make_node("Resize", ["down2", "", "scales"], ["up"], name="up", mode="nearest"),
        helper.make_node("Concat", ["up", "down1"], ["cat"], name="cat", axis=1),
        helper.make_node("Conv", ["cat", "head.w"], ["head"], name="head", kernel_shape=[1, 1]),
        helper.make_node("Reshape", ["head", "boxes_shape"], ["output0"], name="boxes"),
    ]
    shape = numpy_helper.from_array(np.array([0, 6, -1], np.int64), "boxes_shape")
    return _model(
        nodes,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 6, "anchors"])],
        [*weights, scales, head_w, shape],
        name="detector",
    )


def rate_gated_conv_bn(channels=4, size=8, rate=16000) -> onnx.ModelProto:
    """Conv -> BatchNorm, then an `If` on an int64 `rate` input, as silero-vad picks its
    branch by sample rate: `rate` == 16000 applies Relu, any other rate reshapes to
    (rate + 2, -1), which for rate 1 cannot fit the tensor (channels * size**2 is not a
    multiple of 3). Random inputs (integers are ones) do not run; real data does."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, size, size])
    rate_input = helper.make_tensor_value_info("rate", TensorProto.INT64, [])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, size, size])

    def branch(name: str, node: onnx.NodeProto) -> onnx.GraphProto:
        out = helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None)
        return helper.make_graph([node], name, [], [out])

    params = {
        "bn.scale": _rng(2).uniform(0.5, 1.5, channels),
        "bn.bias": _rng(3).normal(0, 0.1, channels),
        "bn.mean": _rng(4).normal(0, 0.5, channels),
        "bn.var": _rng(5).uniform(0.5, 2.0, channels),
    }
    constants = {
        "expected_rate": np.array(rate, np.int64),
        "two": np.array(2, np.int64),
        "axes": np.array([0], np.int64),
        "rest": np.array([-1], np.int64),
    }
    return _model(
        [
            helper.make_node("Conv", ["x", "W"], ["c"], name="conv", pads=[1] * 4),
            helper.make_node("BatchNormalization", ["c", *params], ["b"], name="bn", epsilon=1e-3),
            helper.make_node("Equal", ["rate", "expected_rate"], ["known"], name="known_rate"),
            helper.make_node("Add", ["rate", "two"], ["rows"], name="rows"),
            helper.make_node("Unsqueeze", ["rows", "axes"], ["rows1"], name="rows1"),
            helper.make_node("Concat", ["rows1", "rest"], ["other_shape"], name="shape", axis=0),
            helper.make_node(
                "If",
                ["known"],
                ["y"],
                name="by_rate",
                then_branch=branch("known", helper.make_node("Relu", ["b"], ["relu_y"])),
                else_branch=branch(
                    "other", helper.make_node("Reshape", ["b", "other_shape"], ["other_y"])
                ),
            ),
        ],
        [x, rate_input],
        [y],
        [
            _weight("W", (channels, channels, 3, 3)),
            *(numpy_helper.from_array(v.astype(np.float32), k) for k, v in params.items()),
            *(numpy_helper.from_array(v, k) for k, v in constants.items()),
        ],
    )


def two_head_detector(channels=16, size=16, classes=4, batch=None) -> onnx.ModelProto:
    """A PicoDet-style dense detector: three 3x3 convs (the first of stride 2), then two
    heads on every cell of the 8x8 map, sigmoid class scores (batch, cells, classes) and raw
    box offsets (batch, cells, 4), He-scaled weights. `batch` 1 fixes the batch as PicoDet's
    export does: its Reshapes then hold 1 and fold any larger batch into the cells."""
    rng = _rng(7)

    def he(name, c_out, c_in, k):
        array = rng.standard_normal((c_out, c_in, k, k)) * np.sqrt(2.0 / (c_in * k * k))
        return numpy_helper.from_array(array.astype(np.float32), name)

    def conv(name, source, k, stride=1):
        pads = [k // 2] * 4
        return helper.make_node(
            "Conv",
            [source, f"{name}.w", f"{name}.b"],
            [name],
            name=name,
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=pads,
        )

    layers = (
        ("stem", 3, channels, 3, 2),
        ("body1", channels, channels, 3, 1),
        ("body2", channels, channels, 3, 1),
    )
    nodes, weights, source = [], [], "images"
    for name, c_in, c_out, k, stride in layers:
        nodes += [
            conv(name, source, k, stride),
            helper.make_node("Relu", [name], [f"{name}.relu"], name=f"{name}.relu"),
        ]
        weights += [
            he(f"{name}.w", c_out, c_in, k),
            numpy_helper.from_array(np.full(c_out, 0.1, np.float32), f"{name}.b"),
        ]
        source = f"{name}.relu"
    for head, width in (("cls", classes), ("box", 4)):
        weights += [
            he(f"{head}.w", width, channels, 1),
            numpy_helper.from_array(np.zeros(width, np.float32), f"{head}.b"),
            numpy_helper.from_array(np.array([batch or 0, width, -1], np.int64), f"{head}.shape"),
        ]
        nodes += [
            conv(head, source, 1),
            helper.make_node(
                "Reshape", [head, f"{head}.shape"], [f"{head}.cells"], name=f"{head}.reshape"
            ),
            helper.make_node(
                "Transpose",
                [f"{head}.cells"],
                [f"{head}.t"],
                name=f"{head}.transpose",
                perm=[0, 2, 1],
            ),
        ]
    nodes += [
        helper.make_node("Sigmoid", ["cls.t"], ["scores"], name="scores"),
        helper.make_node("Mul", ["box.t", "box.scale"], ["boxes"], name="boxes"),
    ]
    weights.append(numpy_helper.from_array(np.array(8.0, np.float32), "box.scale"))
    cells, n = (size // 2) ** 2, batch or "batch"
    return _model(
        nodes,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [n, 3, size, size])],
        [
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [n, cells, classes]),
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [n, cells, 4]),
        ],
        weights,
        name="two_head_detector",
    )
