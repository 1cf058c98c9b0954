"""Weights wherever real exports keep them, brought to one place before a pass works on them.

The inventory finds a layer's weight in an initializer, a `Constant` node (Paddle exports), an
`If`/`Loop` subgraph, or behind a `Cast` from float16. Passes that replace a weight per run
(sensitivity sweeps, automatic plans) need it as a float32 initializer of the main graph, which
a feed can override. `lift_weights` makes that copy without changing what the model computes:
Constant values become initializers, subgraph weights move to the main graph (subgraphs read
names of the enclosing graph), and a Cast of a stored float tensor to float32 is folded into
the float32 tensor it yields. A weight behind a DequantizeLinear is already quantized and
stays where it is (`already_quantized` says so per layer).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx
from onnx import numpy_helper

from compressor_gui.core.ops import layer_facts, node_attribute

_STANDARD = ("", "ai.onnx")


def lift_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose layer weights are float32 initializers of the main graph (see module)."""
    lifted = onnx.ModelProto()
    lifted.CopyFrom(model)
    main = lifted.graph
    taken = {t.name for t in main.initializer} | {v.name for v in main.input}
    for graph in list(_graphs(main)):
        for node in list(graph.node):
            facts = layer_facts(node)
            if facts is None:
                continue
            for position in {facts.weight_input, *facts.axes}:
                if position < len(node.input) and node.input[position]:
                    _lift(main, graph, node.input[position], taken)
    return lifted


def already_quantized(model: onnx.ModelProto) -> dict[str, str]:
    """Layers (by node name) that compute on quantized weights already, and how: a QOperator
    or integer op (QLinearConv, ConvInteger, MatMulNBits...) or a weight coming from a
    DequantizeLinear (QDQ)."""
    found: dict[str, str] = {}
    for graph in _graphs(model.graph):
        producers = {o: n for n in graph.node for o in n.output}
        for node in graph.node:
            facts = layer_facts(node)
            if facts is None:
                continue
            if facts.quantized:
                found[node.name] = f"already quantized ({node.op_type})"
                continue
            weight = facts.main_input(node)
            producer = producers.get(weight or "")
            if producer is not None and producer.op_type == "DequantizeLinear":
                found[node.name] = "already quantized (its weight comes from a DequantizeLinear)"
    return found


def _lift(main: onnx.GraphProto, graph: onnx.GraphProto, name: str, taken: set[str]) -> None:
    """Make the stored value `name` (read in `graph`) a float32 initializer of `main`."""
    if graph is main and any(t.name == name for t in main.initializer):
        return
    for index, tensor in enumerate(graph.initializer):
        if tensor.name == name and graph is not main and name not in taken:
            main.initializer.append(tensor)
            del graph.initializer[index]
            taken.add(name)
            return
    producer = next((n for n in graph.node if name in n.output), None)
    if producer is None or producer.domain not in _STANDARD or name in taken:
        return
    value = _stored_value(graph, producer)
    if value is None or value.dtype.kind != "f":
        return
    if value.dtype != np.float32 and producer.op_type == "Constant":
        return  # a float16 weight stays float16; only a Cast to float32 is folded
    graph.node.remove(producer)
    main.initializer.append(numpy_helper.from_array(value, name))
    taken.add(name)
    if producer.op_type == "Cast":
        _drop_unused(graph, producer.input[0])


def _stored_value(graph: onnx.GraphProto, producer: onnx.NodeProto) -> np.ndarray | None:
    """The value of a Constant node, or of a Cast to float32 of a stored float tensor."""
    if producer.op_type == "Constant":
        tensor = next((a.t for a in producer.attribute if a.name == "value"), None)
        return numpy_helper.to_array(tensor) if tensor is not None and tensor.dims else None
    if producer.op_type != "Cast" or node_attribute(producer, "to", 0) != onnx.TensorProto.FLOAT:
        return None
    source = producer.input[0]
    tensor = next((t for t in graph.initializer if t.name == source), None)
    if tensor is None:
        constant = next(
            (n for n in graph.node if n.op_type == "Constant" and source in n.output), None
        )
        tensor = (
            next((a.t for a in constant.attribute if a.name == "value"), None) if constant else None
        )
    if tensor is None or not tensor.dims:
        return None
    array = numpy_helper.to_array(tensor)
    return array.astype(np.float32) if array.dtype.kind == "f" else None


def _drop_unused(graph: onnx.GraphProto, name: str) -> None:
    """Remove the initializer or Constant node `name` when nothing in `graph` reads it."""
    if any(name in node.input for node in _nodes(graph)) or any(
        o.name == name for o in graph.output
    ):
        return
    for tensor in graph.initializer:
        if tensor.name == name:
            graph.initializer.remove(tensor)
            return
    for node in graph.node:
        if node.op_type == "Constant" and name in node.output:
            graph.node.remove(node)
            return


def _subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """The graph and every subgraph inside it, outermost first."""
    yield graph
    for node in graph.node:
        for sub in _subgraphs(node):
            yield from _graphs(sub)


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for inner in _graphs(graph):
        yield from inner.node
