"""A graph specialised to the inputs that hold one value in all of the user's data.

silero-vad takes its sample rate as an input and picks a whole branch of its graph with it
(an `If`). Layers inside a branch cannot be observed: onnxruntime exposes only main-graph
values as outputs. When every sample feeds the same value (16000), that input becomes a
constant and onnxslim's bundled onnx-graphsurgeon folds the `If` into the branch it takes
(`fold_constants(flatten_subgraphs=True)`), so the branch's layers sit in the main graph under
the same names. Quantize/Dequantize nodes are never folded: a compressed model keeps its
stored codes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from compressor_gui.core.errors import CompressionError, error_text
from compressor_gui.core.graph import all_nodes, graphs, has_subgraphs, real_inputs
from compressor_gui.core.inventory import build_inventory
from compressor_gui.core.plan import QUANTIZABLE_KINDS
from compressor_gui.core.shapes import SampledInputs

# control inputs only: a sample rate, a flag, a mode; never a tensor of data
_MAX_CONTROL_VALUES = 16
_KEPT_QUANTIZATION = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}


def constant_inputs(
    model: onnx.ModelProto, inputs: Mapping[str, np.ndarray], forms: Mapping[str, str]
) -> dict[str, np.ndarray]:
    """Integer or boolean inputs of at most a few values that are the same in every sample of
    `inputs` (data arrays with samples along the first axis), as one sample's value."""
    found = {}
    for name, array in inputs.items():
        if array.dtype.kind not in "iub" or len(array) == 0:
            continue
        first = array[:1] if forms.get(name) == "batch" else array[0]
        if first.size > _MAX_CONTROL_VALUES or not np.all(array == array[:1]):
            continue
        found[name] = np.asarray(first)
    real = {value.name for value in real_inputs(model.graph)}
    return {name: value for name, value in found.items() if name in real}


def has_branches(model: onnx.ModelProto) -> bool:
    return any(has_subgraphs(node) for node in model.graph.node)


def specialized(model: onnx.ModelProto, values: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """`model` with `values` as constants and the branches they decide folded in. Raises
    CompressionError (the caller goes on with the model as it is) when folding fails."""
    import onnxslim.third_party.onnx_graphsurgeon as gs

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    kept = [i for i in copy.graph.input if i.name not in values]
    del copy.graph.input[:]
    copy.graph.input.extend(kept)
    for name, value in values.items():
        copy.graph.initializer.append(numpy_helper.from_array(value, name))
    try:
        graph = gs.import_onnx(copy)
        graph.fold_constants(
            flatten_subgraphs=True,
            should_exclude_node=lambda node: node.op in _KEPT_QUANTIZATION,
        ).cleanup()
        folded = gs.export_onnx(graph)
        _restore_names(folded.graph)
    except Exception as exc:  # graphsurgeon raises whatever its passes meet
        raise CompressionError(f"the graph could not be specialised: {error_text(exc)}") from exc
    return folded


# graphsurgeon makes inlined names unique with a counter that differs between two models
_INLINED_SUFFIX = re.compile(r"_subg_\d+_[^/]+$")


def _restore_names(graph: onnx.GraphProto) -> None:
    """Give inlined values their names in the branch back, where no other value has it, so
    the original and the compressed model name the same values alike."""
    names = {name for node in all_nodes(graph) for name in (*node.input, *node.output)}
    names |= {t.name for g in graphs(graph) for t in g.initializer}
    stripped: dict[str, list[str]] = {}
    for name in names:
        if _INLINED_SUFFIX.search(name):
            stripped.setdefault(_INLINED_SUFFIX.sub("", name), []).append(name)
    renamed = {
        olds[0]: new for new, olds in stripped.items() if len(olds) == 1 and new not in names
    }
    for g in graphs(graph):
        for node in g.node:
            node.input[:] = [renamed.get(n, n) for n in node.input]
            node.output[:] = [renamed.get(n, n) for n in node.output]
        for value in (*g.initializer, *g.value_info, *g.output):
            value.name = renamed.get(value.name, value.name)


def specialized_pair(
    reference: onnx.ModelProto, changed: onnx.ModelProto, data: SampledInputs
) -> tuple[onnx.ModelProto, onnx.ModelProto, frozenset[str], str | None]:
    """Both models of a comparison specialised alike where the original branches on inputs
    the data holds constant: (original, compressed, inputs no longer fed, a note). Models
    without branches, or whose folding fails, come back as they are, with the reason."""
    values = constant_inputs(reference, data.inputs, data.forms) if has_branches(reference) else {}
    if not values:
        return reference, changed, frozenset(), None
    fixed = ", ".join(f"{name} = {value.tolist()}" for name, value in values.items())
    try:
        pair = specialized(reference, values), specialized(changed, values)
    except CompressionError as exc:
        return reference, changed, frozenset(), f"branches not inlined ({fixed}): {exc}"
    untaken = len(_layer_names(reference) - _layer_names(pair[0]))
    note = (
        f"{fixed} in every sample: the branches it selects were inlined to observe their "
        f"layers; {untaken} layer(s) of the branches it does not select never run on this data"
    )
    return *pair, frozenset(values), note


def _layer_names(model: onnx.ModelProto) -> set[str]:
    return {
        layer.name for layer in build_inventory(model).layers if layer.kind in QUANTIZABLE_KINDS
    }
