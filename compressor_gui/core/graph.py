"""One toolkit for ONNX graph work: walking subgraphs, topological order, attributes, stored
tensors wherever exports keep them, small rewrites every pass needs, and "does it still run".

Quantization, pruning, fusion, the inventory and the loader all walk graphs the same way;
they do it through these functions so that a rule (what a subgraph reads from outside, what
counts as a stored tensor) is written once.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import count
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from compressor_gui.core.errors import CompressionError, CompressorError, error_text

DEFAULT_THREADS = 2  # intra-op threads of a session that measures (checks use 1)
_GRAPH_ATTRS = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)

# --- walking -------------------------------------------------------------------------------


def named_subgraphs(node: onnx.NodeProto) -> Iterator[tuple[str, onnx.GraphProto]]:
    """(attribute label, body) of an If/Loop/Scan node: `then_branch`, `body`, `branches[0]`."""
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.name, attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            for index, sub in enumerate(attr.graphs):
                yield f"{attr.name}[{index}]", sub


def subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    """The bodies a node carries (none for ordinary ops)."""
    for _, sub in named_subgraphs(node):
        yield sub


def has_subgraphs(node: onnx.NodeProto) -> bool:
    return any(a.type in _GRAPH_ATTRS for a in node.attribute)


def graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """The graph and every subgraph inside it, outermost first."""
    yield graph
    for node in graph.node:
        for sub in subgraphs(node):
            yield from graphs(sub)


def all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of the graph and of its subgraphs, depth first, each after its parent."""
    for node in graph.node:
        yield node
        for sub in subgraphs(node):
            yield from all_nodes(sub)


def node_names(graph: onnx.GraphProto) -> list[str]:
    return [node.name for node in all_nodes(graph)]


def nodes_by_name(graph: onnx.GraphProto) -> dict[str, tuple[onnx.NodeProto, onnx.GraphProto]]:
    """Node name -> (node, the graph that holds it); a graph's own nodes before its bodies'."""
    found: dict[str, tuple[onnx.NodeProto, onnx.GraphProto]] = {}

    def visit(g: onnx.GraphProto) -> None:
        for node in g.node:
            found.setdefault(node.name, (node, g))
        for node in g.node:
            for sub in subgraphs(node):
                visit(sub)

    visit(graph)
    return found


def name_nodes(graph: onnx.GraphProto, prefix: str = "") -> None:
    """Give unnamed nodes the names the inventory shows for them (`OpType_index`) and make
    duplicates unique (`name#2`), in the inventory's order, so exclusion by name is exact."""
    seen: set[str] = set()

    def visit(g: onnx.GraphProto) -> None:
        for index, node in enumerate(g.node):
            if not node.name:
                node.name = f"{prefix}{node.op_type}_{index}"
            name, suffix = node.name, 1
            while name in seen:
                suffix += 1
                name = f"{node.name}#{suffix}"
            node.name = name
            seen.add(name)
        for node in g.node:
            for sub in subgraphs(node):
                visit(sub)

    visit(graph)


def names_read_in_subgraphs(graph: onnx.GraphProto) -> set[str]:
    """Values that If/Loop bodies of `graph`'s nodes read (outer values are read by name)."""
    names: set[str] = set()
    for node in graph.node:
        for sub in subgraphs(node):
            names.update(i for n in sub.node for i in n.input)
            names |= names_read_in_subgraphs(sub)
    return names


def free_names(node: onnx.NodeProto) -> set[str]:
    """Names a node's subgraphs read from the enclosing scope."""
    free: set[str] = set()
    for sub in subgraphs(node):
        local = {v.name for v in sub.input} | {t.name for t in sub.initializer}
        for inner in all_nodes(sub):
            local.update(inner.output)
        free |= {i for inner in all_nodes(sub) for i in inner.input if i and i not in local}
    return free


def toposort(graph: onnx.GraphProto, outer: frozenset[str] = frozenset()) -> None:
    """Reorder nodes so each comes after its producers (the FP16 converter appends its
    Casts at the end), keeping the original order wherever it is already valid."""
    ready = set(outer) | {v.name for v in graph.input} | {t.name for t in graph.initializer}
    ready.add("")
    pending = list(graph.node)
    needs = {id(node): set(node.input) | free_names(node) for node in pending}
    ordered: list[onnx.NodeProto] = []
    while pending:
        progress = [node for node in pending if needs[id(node)] <= ready]
        if not progress:
            ordered.extend(pending)  # a cycle or a missing input: leave it to the checker
            break
        for node in progress:
            ready.update(node.output)
        ordered.extend(progress)
        placed = {id(node) for node in progress}
        pending = [node for node in pending if id(node) not in placed]
    copies = [onnx.NodeProto() for _ in ordered]
    for copy, node in zip(copies, ordered, strict=True):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)
    for node in graph.node:
        for sub in subgraphs(node):
            toposort(sub, frozenset(ready))


def unique_initializer_names(graph: onnx.GraphProto) -> None:
    """Rename stored tensors of subgraphs whose name a tensor of another graph already has
    (onnxslim lifts each branch's constants under the same names), with the reads of them
    in that subgraph; onnxruntime's float16 converter asserts one name per tensor across
    the whole model. A new name is one no value of the model has."""
    taken = {name for node in all_nodes(graph) for name in node.output}
    seen: set[str] = set()

    def visit(g: onnx.GraphProto, outer: dict[str, str]) -> None:
        names = dict(outer)
        for tensor in g.initializer:
            if tensor.name in seen:
                fresh = next(
                    name
                    for name in (f"{tensor.name}_{i}" for i in count(2))
                    if name not in seen and name not in taken
                )
                names[tensor.name], tensor.name = fresh, fresh
            seen.add(tensor.name)
        for node in g.node:
            node.input[:] = [names.get(name, name) for name in node.input]
            for sub in subgraphs(node):
                visit(sub, names)

    visit(graph, {})


def real_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """The inputs data is fed to (old exports also list their initializers as inputs)."""
    initializers = {t.name for t in graph.initializer}
    return [value for value in graph.input if value.name not in initializers]


def node_attribute(node: onnx.NodeProto, name: str, default):
    """An attribute's value by name, or `default` when the node does not set it."""
    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


class UnsupportedOpError(CompressorError):
    """A node the torch conversion cannot run (unknown op, or a mode it does not cover)."""


@dataclass(frozen=True)
class NodeView:
    """What a builder may know about one node: its attributes, the values of its stored
    (initializer or Constant) inputs, and the model's opset."""

    node: onnx.NodeProto
    opset: int
    constants: Mapping[str, np.ndarray]

    def attr(self, name: str, default: Any = None) -> Any:
        value = node_attribute(self.node, name, default)
        return value.decode() if isinstance(value, bytes) else value

    def has_input(self, index: int) -> bool:
        return len(self.node.input) > index and bool(self.node.input[index])

    def constant(self, index: int) -> np.ndarray | None:
        """The stored value of input `index`, or None when it is computed or absent."""
        if not self.has_input(index):
            return None
        return self.constants.get(self.node.input[index])

    def unsupported(self, why: str) -> UnsupportedOpError:
        return UnsupportedOpError(
            f"node {self.node.name or '(unnamed)'} ({self.node.op_type}): {why}"
        )


def opset(model: onnx.ModelProto) -> int:
    """The default-domain opset the model imports (1 when it names none)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


# --- stored tensors --------------------------------------------------------------------------


def constant_value(node: onnx.NodeProto) -> onnx.TensorProto | None:
    """The tensor a `Constant` node produces (list-valued attributes become tensors)."""
    for attr in node.attribute:
        if attr.name == "value":
            return attr.t
        if attr.name in {"value_floats", "value_ints"}:
            values = list(attr.floats) if attr.name == "value_floats" else list(attr.ints)
            dtype = np.float32 if attr.name == "value_floats" else np.int64
            return numpy_helper.from_array(np.asarray(values, dtype=dtype), node.output[0])
        if attr.name in {"value_float", "value_int"}:
            value = attr.f if attr.name == "value_float" else attr.i
            dtype = np.float32 if attr.name == "value_float" else np.int64
            return numpy_helper.from_array(np.asarray(value, dtype=dtype), node.output[0])
    return None


def is_constant_node(node: onnx.NodeProto) -> bool:
    return node.op_type == "Constant" and node.domain in ("", "ai.onnx")


def graph_constants(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """Initializers and Constant-node tensors of one graph (not its subgraphs), by name."""
    found = {tensor.name: tensor for tensor in graph.initializer}
    for node in graph.node:
        value = constant_value(node) if is_constant_node(node) else None
        if value is not None:
            found[node.output[0]] = value
    return found


def set_stored_arrays(graph: onnx.GraphProto, arrays: Mapping[str, np.ndarray]) -> None:
    """Write new values (shapes may change) into this graph's initializers and Constant
    nodes by name, and the dims of the inputs old exports list initializers as."""
    for tensor in graph.initializer:
        if tensor.name in arrays:
            tensor.CopyFrom(numpy_helper.from_array(arrays[tensor.name], tensor.name))
    for value in graph.input:
        if value.name in arrays:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, arrays[value.name].shape, strict=True):
                dim.dim_value = size
    for node in graph.node:
        if is_constant_node(node) and node.output[0] in arrays:
            del node.attribute[:]
            node.attribute.append(
                helper.make_attribute("value", numpy_helper.from_array(arrays[node.output[0]]))
            )


def iter_named_tensors(graph: onnx.GraphProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    """(value name, tensor) of every initializer and Constant, in every subgraph."""
    for tensor in graph.initializer:
        yield tensor.name, tensor
    for node in graph.node:
        if is_constant_node(node):
            value = constant_value(node)
            if value is not None:
                yield node.output[0], value
        for sub in subgraphs(node):
            yield from iter_named_tensors(sub)


def tensor_nbytes(tensor: onnx.TensorProto) -> int:
    """Bytes of a tensor's values from its dims and type (4-bit types half a byte each)."""
    return int(math.ceil(math.prod(tensor.dims) * _itemsize(tensor.data_type)))


def _itemsize(data_type: int) -> float:
    if data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
        return 0.5
    if data_type == onnx.TensorProto.STRING:
        return 1.0
    return float(helper.tensor_dtype_to_np_dtype(data_type).itemsize)


def iter_all_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every TensorProto the file holds: initializers and tensor attributes, subgraphs too."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t
        for sub in subgraphs(node):
            yield from iter_all_tensors(sub)


def external_data_files(model: onnx.ModelProto) -> set[str]:
    """The weight files (locations relative to the model) its tensors point to."""
    files = set()
    for tensor in iter_all_tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location":
                    files.add(entry.value)
    return files


def find_stored(graph: onnx.GraphProto, name: str):
    """(graph, tensor, Constant node or None) of a stored tensor anywhere in the model."""
    for tensor in graph.initializer:
        if tensor.name == name:
            return graph, tensor, None
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            value = constant_value(node)
            return (graph, value, node) if value is not None else None
    for node in graph.node:
        for sub in subgraphs(node):
            found = find_stored(sub, name)
            if found is not None:
                return found
    return None


def stored_array(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    """The values of an initializer or Constant of this graph (not its subgraphs)."""
    for tensor in graph.initializer:
        if tensor.name == name:
            return numpy_helper.to_array(tensor)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            value = constant_value(node)
            return None if value is None else numpy_helper.to_array(value)
    return None


def drop_if_unused(graph: onnx.GraphProto, name: str) -> None:
    """Remove a stored tensor (initializer, Constant, listed input) no node reads any more."""
    if any(name in node.input for node in all_nodes(graph)) or any(
        o.name == name for o in graph.output
    ):
        return
    for index, tensor in enumerate(graph.initializer):
        if tensor.name == name:
            del graph.initializer[index]
            break
    for index, node in enumerate(graph.node):
        if node.op_type == "Constant" and node.output[0] == name:
            del graph.node[index]
            break
    for index, value in enumerate(graph.input):
        if value.name == name:
            del graph.input[index]
            break


def remove_unused_initializers(graph: onnx.GraphProto) -> None:
    """Drop initializers nothing reads (and their listing among old exports' inputs)."""
    used = {i for n in graph.node for i in n.input} | names_read_in_subgraphs(graph)
    used.update(o.name for o in graph.output)
    dropped = set()
    for tensor in list(graph.initializer):
        if tensor.name not in used:
            dropped.add(tensor.name)
            graph.initializer.remove(tensor)
    for value in list(graph.input):
        if value.name in dropped:
            graph.input.remove(value)


def remove_dead_nodes(graph: onnx.GraphProto) -> int:
    """Drop nodes none of whose outputs reach a graph output, then unused initializers."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(node.input)
            needed |= names_read_in_subgraphs(onnx.GraphProto(node=[node]))
    removed = len(graph.node) - len(keep)
    if removed:
        kept = list(reversed(keep))
        del graph.node[:]
        graph.node.extend(kept)
    remove_unused_initializers(graph)
    return removed


def constants_to_initializers(graph: onnx.GraphProto) -> int:
    """Main-graph Constant nodes holding tensors become initializers (onnxruntime's quantizer
    only quantizes initializer weights)."""
    moved = 0
    for node in list(graph.node):
        if not is_constant_node(node) or not any(a.name == "value" for a in node.attribute):
            continue
        value = constant_value(node)
        if value is None or not value.dims:
            continue
        tensor = onnx.TensorProto()
        tensor.CopyFrom(value)
        tensor.name = node.output[0]
        graph.initializer.append(tensor)
        graph.node.remove(node)
        moved += 1
    return moved


def gemm_as_matmul_ok(node: onnx.NodeProto, graph: onnx.GraphProto) -> bool:
    """A Gemm that is a plain MatMul (+ bias) with a stored weight, so it can become one."""
    if node.op_type != "Gemm":
        return False
    return (
        node_attribute(node, "transA", 0) == 0
        and node_attribute(node, "alpha", 1.0) == 1.0
        and node_attribute(node, "beta", 1.0) == 1.0
        and stored_array(graph, node.input[1]) is not None
    )


def gemm_to_matmul(graph: onnx.GraphProto, node: onnx.NodeProto) -> None:
    """Rewrite a Gemm as MatMul (keeping the Gemm's name) + Add for its bias."""
    weight = stored_array(graph, node.input[1])
    if node_attribute(node, "transB", 0):
        weight = weight.T
    weight_name = f"{node.input[1]}_matmul"
    graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight), weight_name))
    index = list(graph.node).index(node)
    output = node.output[0]
    has_bias = len(node.input) > 2 and node.input[2]
    matmul_out = f"{output}_matmul" if has_bias else output
    new_nodes = [helper.make_node("MatMul", [node.input[0], weight_name], [matmul_out], node.name)]
    if has_bias:
        new_nodes.append(
            helper.make_node("Add", [matmul_out, node.input[2]], [output], f"{node.name}_bias")
        )
    old_weight = node.input[1]
    graph.node.remove(node)
    for offset, new in enumerate(new_nodes):
        graph.node.insert(index + offset, new)
    drop_if_unused(graph, old_weight)


# --- does it still run -----------------------------------------------------------------------


def make_session(model: onnx.ModelProto | str | os.PathLike[str], threads: int = DEFAULT_THREADS):
    """An onnxruntime CPU session with fixed threads (intra-op), all graph optimizations."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 4  # failures surface as exceptions with their message
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise CompressorError(f"onnxruntime cannot load the model: {error_text(exc)}") from exc


def run_model(model: onnx.ModelProto, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Outputs of `model` on `feed` in onnxruntime (one thread: this is a check, not a bench)."""
    return make_session(model, threads=1).run(None, dict(feed))


def check_runs(model: onnx.ModelProto, feed: Mapping[str, np.ndarray] | None) -> None:
    """The model passes onnx.checker, loads in onnxruntime and runs `feed` (None: loads)."""
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise CompressionError(f"onnx.checker: {error_text(exc)}") from exc
    session = make_session(model, threads=1)
    if feed is None:
        return
    try:
        session.run(None, dict(feed))
    except Exception as exc:
        raise CompressionError(f"onnxruntime cannot run it: {error_text(exc)}") from exc


def check_same_interface(
    before: onnx.ModelProto,
    after: onnx.ModelProto,
    what: str,
    feed: Mapping[str, np.ndarray],
) -> None:
    """The rewritten model must pass the checker and run in onnxruntime on `feed` with the
    original's output names and shapes; otherwise CompressionError (the input is untouched)."""
    try:
        onnx.checker.check_model(after, full_check=True)
        old, new = run_model(before, feed), run_model(after, feed)
    except CompressionError:
        raise
    except Exception as exc:
        raise CompressionError(
            f"{what} produced a model that does not check or run ({error_text(exc)}); the "
            "input model was left as it was"
        ) from exc
    names = ([o.name for o in before.graph.output], [o.name for o in after.graph.output])
    if names[0] != names[1] or [a.shape for a in old] != [b.shape for b in new]:
        raise CompressionError(
            f"{what} changed the model's outputs ({names[0]} {[a.shape for a in old]} became "
            f"{names[1]} {[b.shape for b in new]}); the input model was left as it was"
        )


@contextlib.contextmanager
def contained() -> Iterator[None]:
    """Run onnxruntime's quantization tools quietly and inside a scratch folder of our own:
    they print and log freely, and symbolic shape inference saves `sym_shape_infer_temp.onnx`
    with UUID-named weight files into the working directory when it cannot finish. The
    folder goes on every exit path. (The working directory is per process: quantization runs
    in the CLI or a job's child process, never beside other threads of the GUI.)"""
    import logging

    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    sink = io.StringIO()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="compressor-gui-") as scratch,
            contextlib.chdir(scratch),
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
        ):
            yield
    finally:
        logger.setLevel(level)
