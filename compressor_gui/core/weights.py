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

import numpy as np
import onnx
from onnx import numpy_helper

from compressor_gui.core.graph import (
    constant_value,
    drop_if_unused,
    graphs,
    is_constant_node,
    node_attribute,
)
from compressor_gui.core.ops import layer_facts

_STANDARD = ("", "ai.onnx")


def lift_weights(model: onnx.ModelProto, *, fold_casts: bool = True) -> onnx.ModelProto:
    """A copy whose layers' stored inputs (weights, biases, norm parameters) are initializers
    of the main graph (see module). `fold_casts=False` leaves float16 weights behind their
    Cast, for a file that must not grow."""
    lifted = onnx.ModelProto()
    lifted.CopyFrom(model)
    main = lifted.graph
    # Where each name is defined; subgraphs read names of enclosing graphs, and ONNX names
    # never shadow outer ones, so one map serves every scope.
    defined: dict[str, onnx.GraphProto] = {}
    for graph in graphs(main):
        defined.update((t.name, graph) for t in graph.initializer)
        defined.update((o, graph) for node in graph.node for o in node.output if o)
    for graph in list(graphs(main)):
        for node in list(graph.node):
            if layer_facts(node) is not None:
                for name in node.input:
                    owner = defined.get(name)
                    if owner is not None and _lift(main, owner, name, fold_casts):
                        defined[name] = main
    return lifted


def already_quantized(model: onnx.ModelProto) -> dict[str, str]:
    """Layers (by node name, `OpType_index` when unnamed, as the inventory names them) that
    compute on quantized weights already, and how: a QOperator or integer op (QLinearConv,
    ConvInteger, MatMulNBits...) or a weight coming from a DequantizeLinear (QDQ)."""
    found: dict[str, str] = {}
    for graph in graphs(model.graph):
        producers = {o: n for n in graph.node for o in n.output}
        for index, node in enumerate(graph.node):
            facts = layer_facts(node)
            name = node.name or f"{node.op_type}_{index}"
            producer = producers.get(facts.main_input(node) or "") if facts else None
            if facts is not None and facts.quantized:
                found[name] = f"already quantized ({node.op_type})"
            elif producer is not None and producer.op_type == "DequantizeLinear":
                found[name] = "already quantized (its weight comes from a DequantizeLinear)"
    return found


def _lift(main: onnx.GraphProto, graph: onnx.GraphProto, name: str, fold_casts: bool) -> bool:
    """Make the stored value `name`, defined in `graph`, an initializer of `main`; False when
    it already is one, or is computed."""
    if graph is main and any(t.name == name for t in main.initializer):
        return False
    for index, tensor in enumerate(graph.initializer):
        if tensor.name == name:
            main.initializer.append(tensor)
            del graph.initializer[index]
            return True
    producer = next((n for n in graph.node if name in n.output), None)
    if producer is None or producer.domain not in _STANDARD:
        return False
    if producer.op_type == "Cast" and not fold_casts:
        return False
    lifted = _stored_tensor(graph, producer, name)
    if lifted is None:
        return False
    graph.node.remove(producer)
    main.initializer.append(lifted)
    if producer.op_type == "Cast":
        drop_if_unused(graph, producer.input[0])
    return True


def _stored_tensor(
    graph: onnx.GraphProto, producer: onnx.NodeProto, name: str
) -> onnx.TensorProto | None:
    """The tensor (named `name`) a Constant node holds, or a Cast to float32 of a stored
    float tensor yields; None for anything computed."""
    if is_constant_node(producer):
        return _named(constant_value(producer), name)
    if producer.op_type != "Cast" or node_attribute(producer, "to", 0) != onnx.TensorProto.FLOAT:
        return None
    source = producer.input[0]
    tensor = next((t for t in graph.initializer if t.name == source), None)
    if tensor is None:
        constant = next((n for n in graph.node if source in n.output), None)
        tensor = constant_value(constant) if constant and is_constant_node(constant) else None
    array = numpy_helper.to_array(tensor) if tensor is not None and tensor.dims else None
    if array is None or array.dtype.kind != "f":
        return None
    return numpy_helper.from_array(array.astype(np.float32), name)


def _named(tensor: onnx.TensorProto | None, name: str) -> onnx.TensorProto | None:
    if tensor is None or not tensor.dims:
        return None
    copy = onnx.TensorProto()
    copy.CopyFrom(tensor)
    copy.name = name
    return copy
