"""An ONNX graph as a trainable torch module, and its trained weights back into that graph.

`GraphModule` runs the graph's nodes in topological order with the op table's torch builders
(`ops.OPS`). Stored float tensors at a node's trainable inputs become `nn.Parameter`s keyed
by their initializer names; every other stored tensor is a buffer (BatchNorm running
statistics among them, updated in training mode). `write_weights` puts the trained values
back into a copy of the SAME graph, so the existing writers (fusion, the quantizer) turn it
into the file the plan describes. We convert ourselves because onnx2torch and onnx2pytorch
import torchvision, which does not load beside the pinned CPU torch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from compressor_gui.core.errors import CompressorError, error_text
from compressor_gui.core.graph import NodeView, UnsupportedOpError, constant_value, has_subgraphs
from compressor_gui.core.ops import OPS, facts_for, is_trainable_input


def tensor_key(name: str) -> str:
    """A torch-safe key for an ONNX tensor name (module keys may not contain dots)."""
    return "t_" + re.sub(r"[^0-9A-Za-z_]", "_", name)


class GraphModule(nn.Module):
    """The graph of `model` as a torch module: `forward(*inputs)` takes the graph's inputs
    in order and returns its outputs; `run` also returns any intermediate tensor by name.

    `weight_transforms[tensor_key(name)]` (a module) is applied to a stored tensor each time
    it is read (fake quantization for QAT); `value_transforms[tensor_key(name)]` to a computed
    tensor when it is produced (fake-quantized activations)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        super().__init__()
        graph = model.graph
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        stored = _stored_tensors(graph)
        self.input_names = [v.name for v in graph.input if v.name not in stored]
        self.output_names = [v.name for v in graph.output]
        self.nodes = _ordered(graph, set(stored) | set(self.input_names))
        self.weights = nn.ParameterDict()
        self.keys: dict[str, str] = {}  # ONNX tensor name -> key in weights or buffers
        trainable = {
            node.input[i]
            for node in self.nodes
            for i in range(len(node.input))
            if node.input[i] in stored and is_trainable_input(node, i, stored[node.input[i]])
        }
        for name, array in stored.items():
            key = tensor_key(name)
            self.keys[name] = key
            tensor = torch.from_numpy(np.array(array, copy=True))
            if name in trainable:
                self.weights[key] = nn.Parameter(tensor)
            else:
                self.register_buffer(key, tensor)
        self.ops = nn.ModuleList(_build(node, NodeView(node, opset, stored)) for node in self.nodes)
        self.weight_transforms = nn.ModuleDict()
        self.value_transforms = nn.ModuleDict()

    def parameter_names(self) -> list[str]:
        """ONNX names of the tensors that are trained."""
        return [name for name, key in self.keys.items() if key in self.weights]

    def stored(self, name: str) -> torch.Tensor:
        """The current value of a stored tensor (Parameter or buffer), by its ONNX name."""
        key = self.keys[name]
        return self.weights[key] if key in self.weights else getattr(self, key)

    def forward(self, *inputs: torch.Tensor):
        values = self.run(dict(zip(self.input_names, inputs, strict=True)))
        outputs = tuple(values[name] for name in self.output_names)
        return outputs[0] if len(outputs) == 1 else outputs

    def run(
        self, feeds: Mapping[str, torch.Tensor], wanted: Sequence[str] = ()
    ) -> dict[str, torch.Tensor]:
        """The graph outputs and the `wanted` intermediate tensors, by ONNX name."""
        values: dict[str, torch.Tensor] = {}
        for name, value in feeds.items():
            values[name] = self._transformed_value(name, value)
        for node, op in zip(self.nodes, self.ops, strict=True):
            args = [self._read(name, values) if name else None for name in node.input]
            try:
                result = op(*args)
            except UnsupportedOpError:
                raise
            except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                raise CompressorError(
                    f"node {node.name} ({node.op_type}) failed in torch: {error_text(exc, 200)}"
                ) from exc
            results = result if isinstance(result, tuple) else (result,)
            for name, value in zip(node.output, results, strict=False):
                if name:
                    values[name] = self._transformed_value(name, value)
        missing = [n for n in wanted if n not in values]
        if missing:
            raise CompressorError(f"no tensor named {', '.join(missing)} in the graph")
        return {n: values[n] for n in (*self.output_names, *wanted)}

    def _read(self, name: str, values: dict[str, torch.Tensor]) -> torch.Tensor:
        if name in values:
            return values[name]
        key = self.keys[name]
        tensor = self.weights[key] if key in self.weights else getattr(self, key)
        if key in self.weight_transforms:
            tensor = self.weight_transforms[key](tensor)
        return tensor

    def _transformed_value(self, name: str, value: torch.Tensor) -> torch.Tensor:
        key = tensor_key(name)
        return self.value_transforms[key](value) if key in self.value_transforms else value


def to_torch(model: onnx.ModelProto) -> GraphModule:
    """The model as a trainable torch module (float32 weights stay float32)."""
    return GraphModule(model)


def write_weights(model: onnx.ModelProto, module: GraphModule) -> onnx.ModelProto:
    """A copy of `model` whose stored tensors hold the module's current values (only tensors
    that changed are rewritten, in their own dtype; the graph is otherwise the same)."""
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    current = {name: module.stored(name).detach().cpu().numpy() for name in module.keys}
    for index, tensor in enumerate(graph.initializer):
        new = _changed(numpy_helper.to_array(tensor), current.get(tensor.name))
        if new is not None:
            graph.initializer[index].CopyFrom(numpy_helper.from_array(new, tensor.name))
    for node in graph.node:
        if node.op_type != "Constant" or node.output[0] not in current:
            continue
        old = constant_value(node)
        new = _changed(numpy_helper.to_array(old), current[node.output[0]])
        if new is not None:
            del node.attribute[:]
            node.attribute.append(
                onnx.helper.make_attribute("value", numpy_helper.from_array(new, node.output[0]))
            )
    return result


def _changed(old: np.ndarray, new: np.ndarray | None) -> np.ndarray | None:
    if new is None or old.dtype.kind != "f" or np.array_equal(old, new):
        return None
    return new.astype(old.dtype).reshape(old.shape)


def _stored_tensors(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Initializers and main-graph Constant tensors (Paddle exports keep weights there)."""
    stored = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            value = constant_value(node)
            if value is None:
                raise UnsupportedOpError(
                    f"node {node.name} (Constant): only tensor-valued constants are supported"
                )
            stored[node.output[0]] = numpy_helper.to_array(value)
    return stored


def _ordered(graph: onnx.GraphProto, ready: set[str]) -> list[onnx.NodeProto]:
    """The computing nodes (Constant ones are stored tensors) so that each comes after its
    producers, keeping the file's order where it is already valid."""
    pending = [n for n in graph.node if n.op_type != "Constant"]
    known = set(ready) | {""}
    ordered: list[onnx.NodeProto] = []
    while pending:
        runnable = [n for n in pending if set(n.input) <= known]
        if not runnable:
            node = pending[0]
            lacking = sorted(set(node.input) - known)
            raise CompressorError(
                f"node {node.name} ({node.op_type}) reads {', '.join(lacking)}, which nothing "
                "in the graph produces (a cycle or a subgraph reference)"
            )
        for node in runnable:
            known.update(node.output)
        ordered.extend(runnable)
        done = {id(n) for n in runnable}
        pending = [n for n in pending if id(n) not in done]
    return ordered


# The op types the table can run in torch.
TRAINABLE_OPS = tuple(sorted(op for op, facts in OPS.items() if facts.torch is not None))


def _build(node: onnx.NodeProto, view: NodeView) -> nn.Module:
    facts = facts_for(node)
    if facts is None or facts.torch is None:
        where = f" of domain {node.domain}" if node.domain not in ("", "ai.onnx") else ""
        raise UnsupportedOpError(
            f"node {node.name or '(unnamed)'} ({node.op_type}{where}): no torch conversion for "
            f"this op, so it cannot be trained; supported: {', '.join(TRAINABLE_OPS)}"
        )
    if has_subgraphs(node):
        raise view.unsupported("ops with subgraphs cannot be trained")
    return facts.torch(view)
