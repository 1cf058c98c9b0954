"""The channel dependency graph of an ONNX model, for structured pruning.

Torch-Pruning's idea on ONNX: every activation tensor gets a `Layout`, the channel spaces laid
end to end along its channel axis (one space for a Conv output, several after a Concat) times
`inner` features per channel (after Flatten). Ops are handled per type through `HANDLERS`: a
Conv creates a space, BatchNorm and activations pass the layout on, a residual Add unites the
spaces of its inputs (they must keep the same channels), Concat lays spaces end to end, Flatten
multiplies `inner`. Which rule an op follows is a fact of the op table (`OpFacts.channels`);
the rules themselves live here. Handlers record which tensor axes follow which layout
(`slices`); unknown ops freeze every space they touch, so their channels are never cut.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from compressor_gui.core.graph import (
    graph_constants,
    has_subgraphs,
    names_read_in_subgraphs,
    node_attribute,
    real_inputs,
    set_stored_arrays,
)
from compressor_gui.core.ops import facts_for
from compressor_gui.core.shapes import value_shapes


@dataclass(frozen=True)
class Layout:
    """Channel axis of a tensor: these spaces end to end, each channel `inner` wide."""

    spaces: tuple[int, ...]
    inner: int = 1


@dataclass
class Space:
    """Channels that must be kept or cut together (union-find node)."""

    size: int
    parent: int
    producers: list[str] = field(default_factory=list)  # Conv/Gemm/MatMul nodes creating it
    frozen: list[str] = field(default_factory=list)  # why it must not be cut


@dataclass(frozen=True)
class AxisSlice:
    """Axis `axis` of stored tensor `tensor` runs along `layout`; `role` says what it is."""

    tensor: str
    axis: int
    layout: Layout
    role: str  # "out" (producer weight), "in" (consumer weight), "bn", "param"


class ChannelGraph:
    """The dependency graph of one model, built once; `keep` decides, `apply` cuts."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.graph = model.graph
        self.consts: dict[str, np.ndarray] = {
            name: numpy_helper.to_array(tensor)
            for name, tensor in graph_constants(self.graph).items()
        }
        self.uses = Counter(name for node in self.graph.node for name in node.input)
        self.shapes = value_shapes(model)
        self.shapes.update((t.name, tuple(t.dims)) for t in self.graph.initializer)
        self.spaces: list[Space] = []
        self.layouts: dict[str, Layout] = {}
        self.slices: list[AxisSlice] = []
        self.group_attrs: list[tuple[int, Layout]] = []  # depthwise `group`, by node position
        self.node_spaces: dict[str, tuple[int, ...]] = {}  # layer name -> spaces it cuts
        self.position = 0  # of the node being handled
        self.refused: dict[str, str] = {}  # node name -> why its outputs are frozen
        self._build()

    # --- building --------------------------------------------------------------------------

    def new_space(self, size: int, producer: str | None = None, frozen: str | None = None) -> int:
        index = len(self.spaces)
        self.spaces.append(Space(size=size, parent=index))
        if producer:
            self.spaces[index].producers.append(producer)
        if frozen:
            self.spaces[index].frozen.append(frozen)
        return index

    def find(self, index: int) -> int:
        while self.spaces[index].parent != index:
            self.spaces[index].parent = self.spaces[self.spaces[index].parent].parent
            index = self.spaces[index].parent
        return index

    def union(self, a: int, b: int, why: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        first, second = self.spaces[ra], self.spaces[rb]
        second.parent = ra
        first.producers += second.producers
        first.frozen += second.frozen
        if first.size != second.size:
            first.frozen.append(f"{why}: {first.size} vs {second.size} channels")

    def freeze(self, layout: Layout | None, why: str) -> None:
        if layout is not None:
            for space in layout.spaces:
                self.spaces[self.find(space)].frozen.append(why)

    def fresh(self, node: onnx.NodeProto, why: str) -> None:
        """Give each output of `node` a frozen space of its own (channels it decides)."""
        self.refused[node.name] = why
        for output in node.output:
            shape = self.shapes.get(output)
            size = shape[1] if shape and len(shape) > 1 and isinstance(shape[1], int) else -1
            self.layouts[output] = Layout((self.new_space(size, frozen=why),))

    def unify(self, layouts: list[Layout], why: str) -> Layout:
        """Make layouts keep the same channels (residual Add, Mul, Concat on other axes)."""
        first = layouts[0]
        for other in layouts[1:]:
            if len(other.spaces) != len(first.spaces) or other.inner != first.inner:
                for layout in layouts:
                    self.freeze(layout, f"{why} joins tensors laid out differently")
                return first
            for a, b in zip(first.spaces, other.spaces, strict=True):
                self.union(a, b, why)
        return first

    def _build(self) -> None:
        for value in real_inputs(self.graph):
            shape = self.shapes.get(value.name) or ()
            size = shape[1] if len(shape) > 1 and isinstance(shape[1], int) else -1
            space = self.new_space(size, frozen=f"graph input {value.name}")
            self.layouts[value.name] = Layout((space,))
        for position, node in enumerate(self.graph.node):
            self.position = position
            facts = facts_for(node)
            handler = HANDLERS.get(facts.channels) if facts and facts.channels else None
            if has_subgraphs(node):
                handler = _with_subgraphs
            (handler or _unknown)(self, node)
        for value in self.graph.output:
            self.freeze(self.layouts.get(value.name), f"reaches graph output {value.name}")

    def activation_inputs(self, node: onnx.NodeProto) -> list[str]:
        return [name for name in node.input if name and name in self.layouts]

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name) if name else None

    # --- deciding and cutting --------------------------------------------------------------

    def layers(self, root: int) -> tuple[str, ...]:
        """The layers creating a group's channels, in graph order."""
        order = {node.name: i for i, node in enumerate(self.graph.node)}
        return tuple(sorted(set(self.spaces[root].producers), key=order.__getitem__))

    def groups(self) -> dict[int, tuple[str, ...]]:
        """Root space -> layers (producers) that create it, for every space with producers."""
        roots = {self.find(index) for index in range(len(self.spaces))}
        return {root: self.layers(root) for root in sorted(roots) if self.spaces[root].producers}

    def scores(self, root: int, criterion: str) -> np.ndarray:
        """Per-channel importance of one group: the sum over every weight that runs along its
        channels (producers' filters, consumers' input slices), or over BN scales."""
        size = self.spaces[root].size
        total = np.zeros(size)
        roles = ("bn",) if criterion == "bn_scale" else ("out", "in")
        for item in self.slices:
            if item.role not in roles:
                continue
            array = self.consts[item.tensor]
            for start, space in self._segments(item.layout):
                if self.find(space) != root:
                    continue
                block = np.take(
                    array, range(start, start + size * item.layout.inner), axis=item.axis
                )
                block = np.moveaxis(block, item.axis, 0).reshape(size, -1).astype(np.float64)
                if criterion == "l2":
                    total += np.sqrt(np.sum(block**2, axis=1))
                else:
                    total += np.sum(np.abs(block), axis=1)
        return total

    def has_batch_norm(self, root: int) -> bool:
        return any(
            item.role == "bn" and any(self.find(s) == root for s in item.layout.spaces)
            for item in self.slices
        )

    def _segments(self, layout: Layout) -> list[tuple[int, int]]:
        """(first index along the axis, space) for each space of a layout."""
        out, start = [], 0
        for space in layout.spaces:
            out.append((start, space))
            start += self.spaces[self.find(space)].size * layout.inner
        return out

    def indices(self, layout: Layout, keep: Mapping[int, np.ndarray]) -> np.ndarray | None:
        """Indices to keep along an axis laid out as `layout`; None when nothing changes."""
        if not any(self.find(s) in keep for s in layout.spaces):
            return None
        parts = []
        for start, space in self._segments(layout):
            root = self.find(space)
            channels = keep.get(root, np.arange(self.spaces[root].size))
            inner = np.arange(layout.inner)
            parts.append(start + (channels[:, None] * layout.inner + inner[None, :]).reshape(-1))
        return np.concatenate(parts)

    def apply(self, keep: Mapping[int, np.ndarray]) -> onnx.ModelProto:
        """A copy of the model with the channels not in `keep[root]` cut out everywhere."""
        cuts: dict[str, dict[int, np.ndarray]] = {}
        for item in self.slices:
            index = self.indices(item.layout, keep)
            if index is not None:
                cuts.setdefault(item.tensor, {})[item.axis] = index
        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        new_arrays = {}
        for name, axes in cuts.items():
            array = self.consts[name]
            for axis, index in axes.items():
                array = np.take(array, index, axis=axis)
            new_arrays[name] = array
        set_stored_arrays(model.graph, new_arrays)
        for position, layout in self.group_attrs:
            index = self.indices(layout, keep)
            if index is not None:
                for attr in model.graph.node[position].attribute:
                    if attr.name == "group":
                        attr.i = len(index)
        del model.graph.value_info[:]
        return onnx.shape_inference.infer_shapes(model)


# --- per-op handlers -------------------------------------------------------------------------


def _unknown(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """An op the surgery does not know: channels it reads and writes stay as they are."""
    touched = [g.layouts[name] for name in g.activation_inputs(node)]
    if not touched:
        return  # pure constant or shape arithmetic
    op = f"{node.domain + '.' if node.domain else ''}{node.op_type}"
    why = f"goes through {op} {node.name!r}, which channel pruning does not handle"
    for layout in touched:
        g.freeze(layout, why)
    g.fresh(node, why)


def _with_subgraphs(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """If/Loop/Scan: values their bodies read from outside keep their channels too."""
    why = f"is read inside {node.op_type} {node.name!r}, whose subgraphs are not cut"
    for name in names_read_in_subgraphs(onnx.GraphProto(node=[node])):
        g.freeze(g.layouts.get(name), why)
    _unknown(g, node)


def _passthrough(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """Elementwise unary ops and pooling: channel i of the output is channel i of the input."""
    source = g.layouts.get(node.input[0])
    if source is None:
        return
    g.layouts[node.output[0]] = source
    for extra in g.activation_inputs(node)[1:]:
        if extra != node.input[0]:
            _unknown(g, node)
            return


def _weighted_layer(g: ChannelGraph, node: onnx.NodeProto, weight: np.ndarray | None) -> bool:
    """Refuse layers whose weights are computed, quantized or shared (cutting would break
    the other users); their channels are frozen instead."""
    reason = None
    if weight is None:
        reason = f"{node.op_type} {node.name!r} has no constant float weight"
    elif weight.dtype.kind != "f":
        reason = f"{node.op_type} {node.name!r} has {weight.dtype} (quantized) weights"
    elif g.uses.get(node.input[1], 0) > 1:
        reason = f"{node.op_type} {node.name!r} shares its weight with another node"
    if reason is None:
        return True
    for layout in (g.layouts[n] for n in g.activation_inputs(node)):
        g.freeze(layout, reason)
    g.fresh(node, reason)
    return False


def _bias(g: ChannelGraph, node: onnx.NodeProto, index: int, layout: Layout) -> bool:
    if len(node.input) <= index or not node.input[index]:
        return True
    bias = g.const(node.input[index])
    if bias is None or g.uses.get(node.input[index], 0) > 1:
        return False
    if bias.size > 1:
        g.slices.append(AxisSlice(node.input[index], bias.ndim - 1, layout, "param"))
    return True


def _mix_into_new_channels(
    g: ChannelGraph, node: onnx.NodeProto, in_axis: int, out_axis: int
) -> None:
    """Conv, ConvTranspose, Gemm, MatMul: every input channel feeds fresh output channels. The
    weight (input 1) is cut along `in_axis` with the input and along `out_axis` with the output."""
    weight = g.consts[node.input[1]]
    source = g.layouts.get(node.input[0])
    if source is not None:
        g.slices.append(AxisSlice(node.input[1], in_axis, source, "in"))
    space = g.new_space(weight.shape[out_axis], producer=node.name)
    out = Layout((space,))
    g.slices.append(AxisSlice(node.input[1], out_axis, out, "out"))
    if not _bias(g, node, 2, out):
        g.freeze(out, f"{node.op_type} {node.name!r} has a computed or shared bias")
    g.layouts[node.output[0]] = out
    g.node_spaces[node.name] = (space,)


def _conv(g: ChannelGraph, node: onnx.NodeProto) -> None:
    weight = g.const(node.input[1])
    if not _weighted_layer(g, node, weight):
        return
    groups = node_attribute(node, "group", 1)
    source = g.layouts.get(node.input[0])
    out_channels, in_per_group = weight.shape[0], weight.shape[1]
    if groups == 1:
        _mix_into_new_channels(g, node, in_axis=1, out_axis=0)
        return
    if source is not None and in_per_group == 1 and out_channels == groups:
        # Depthwise: output channel i is input channel i filtered; it follows its input.
        g.slices.append(AxisSlice(node.input[1], 0, source, "out"))
        if not _bias(g, node, 2, source):
            g.freeze(source, f"Conv {node.name!r} has a computed or shared bias")
        g.group_attrs.append((g.position, source))
        g.layouts[node.output[0]] = source
        g.node_spaces[node.name] = source.spaces
        return
    why = f"grouped Conv {node.name!r} (group={groups}) ties channels across groups"
    g.freeze(source, why)
    g.fresh(node, why)


def _conv_transpose(g: ChannelGraph, node: onnx.NodeProto) -> None:
    weight = g.const(node.input[1])
    if not _weighted_layer(g, node, weight):
        return
    if (
        node_attribute(node, "group", 1) != 1
        or node_attribute(node, "output_shape", None) is not None
    ):
        _unknown(g, node)
        return
    _mix_into_new_channels(g, node, in_axis=0, out_axis=1)


def _matrix(g: ChannelGraph, node: onnx.NodeProto, in_axis: int, out_axis: int) -> None:
    """Gemm / 2-D MatMul with a constant weight: input features in, output features out."""
    source = g.layouts.get(node.input[0])
    rank = len(g.shapes.get(node.input[0]) or ())
    if rank != 2:
        why = f"{node.op_type} {node.name!r} reads a rank-{rank} input (only 2-D is cut)"
        g.freeze(source, why)
        g.fresh(node, why)
        return
    _mix_into_new_channels(g, node, in_axis, out_axis)


def _gemm(g: ChannelGraph, node: onnx.NodeProto) -> None:
    weight = g.const(node.input[1])
    if not _weighted_layer(g, node, weight):
        return
    if weight.ndim != 2 or node_attribute(node, "transA", 0):
        _unknown(g, node)
        return
    if len(node.input) > 2 and node.input[2]:
        bias = g.const(node.input[2])
        if bias is not None and bias.ndim == 2 and bias.shape[0] > 1:
            _unknown(g, node)  # a full [M, N] C matrix is tied to the batch
            return
    trans_b = node_attribute(node, "transB", 0)
    _matrix(g, node, 1 if trans_b else 0, 0 if trans_b else 1)


def _matmul(g: ChannelGraph, node: onnx.NodeProto) -> None:
    weight = g.const(node.input[1])
    if weight is None or weight.ndim != 2:
        _unknown(g, node)
        return
    if _weighted_layer(g, node, weight):
        _matrix(g, node, 0, 1)


def _batch_norm(g: ChannelGraph, node: onnx.NodeProto) -> None:
    source = g.layouts.get(node.input[0])
    if source is None:
        return
    params = [g.const(name) for name in node.input[1:5]]
    shared = any(g.uses.get(name, 0) > 1 for name in node.input[1:5])
    if any(p is None for p in params) or shared:
        _unknown(g, node)
        return
    g.slices.append(AxisSlice(node.input[1], 0, source, "bn"))
    for name in node.input[2:5]:
        g.slices.append(AxisSlice(name, 0, source, "param"))
    g.layouts[node.output[0]] = source


def _elementwise(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """Add/Mul/...: activation inputs keep the same channels (a residual group); constants
    broadcast per channel are cut with them, scalar ones are left alone."""
    out_shape = g.shapes.get(node.output[0])
    active = g.activation_inputs(node)
    if not active:
        return
    if out_shape is None:
        _unknown(g, node)
        return
    rank = len(out_shape)
    channels = out_shape[1] if rank > 1 else None
    coupled = []
    for name in node.input:
        if not name:
            continue
        shape = g.shapes.get(name)
        if name in g.layouts:
            if shape is None or len(shape) != rank:
                _unknown(g, node)
                return
            if shape[1] != 1 or channels == 1:  # a single channel broadcast is not cut
                coupled.append(("act", name, 1))
            continue
        value = g.const(name)
        if shape is None and value is not None:
            shape = value.shape
        if shape is None:
            _unknown(g, node)
            return
        axis = 1 - (rank - len(shape))
        if axis < 0 or shape[axis] == 1:
            continue  # broadcast over channels (a scalar, or spatial only)
        if value is None or shape[axis] != channels:
            _unknown(g, node)
            return
        coupled.append(("const", name, axis))  # per-channel scale or shift: cut along
    layouts = [g.layouts[name] for kind, name, _ in coupled if kind == "act"]
    if not layouts:
        _unknown(g, node)
        return
    out = g.unify(layouts, f"{node.op_type} {node.name!r}")
    for kind, name, axis in coupled:
        if kind == "const":
            if g.uses.get(name, 0) > 1:
                g.freeze(out, f"{node.op_type} {node.name!r} shares a per-channel constant")
            g.slices.append(AxisSlice(name, axis, out, "param"))
    g.layouts[node.output[0]] = out


def _prelu(g: ChannelGraph, node: onnx.NodeProto) -> None:
    source = g.layouts.get(node.input[0])
    slope = g.const(node.input[1])
    if source is None:
        return
    if slope is None or g.uses.get(node.input[1], 0) > 1:
        _unknown(g, node)
        return
    if slope.size > 1:
        rank = len(g.shapes.get(node.input[0]) or (0, 0, 0, 0))
        g.slices.append(AxisSlice(node.input[1], 1 - (rank - slope.ndim), source, "param"))
    g.layouts[node.output[0]] = source


def _concat(g: ChannelGraph, node: onnx.NodeProto) -> None:
    active = g.activation_inputs(node)
    if not active:
        return
    rank = len(g.shapes.get(node.output[0]) or ())
    axis = node_attribute(node, "axis", 0) % rank if rank else None
    if len(active) != len([n for n in node.input if n]) or axis is None:
        _unknown(g, node)
        return
    layouts = [g.layouts[name] for name in active]
    if axis != 1:
        g.layouts[node.output[0]] = g.unify(layouts, f"Concat {node.name!r}")
        return
    sizes = [g.spaces[g.find(s)].size for layout in layouts for s in layout.spaces]
    if any(layout.inner != 1 for layout in layouts) or min(sizes) < 0:
        _unknown(g, node)  # offsets of later inputs need every earlier width
        return
    g.layouts[node.output[0]] = Layout(tuple(s for layout in layouts for s in layout.spaces))


def _flatten(g: ChannelGraph, node: onnx.NodeProto) -> None:
    source = g.layouts.get(node.input[0])
    if source is None:
        return
    shape = g.shapes.get(node.input[0])
    spatial = shape[2:] if shape else None
    if (
        node_attribute(node, "axis", 1) != 1
        or spatial is None
        or not all(isinstance(d, int) for d in spatial)
    ):
        _unknown(g, node)
        return
    g.layouts[node.output[0]] = Layout(source.spaces, source.inner * math.prod(spatial))


def _reshape(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """A Reshape to [batch, -1] is a Flatten; any other reshape freezes the channels."""
    source = g.layouts.get(node.input[0])
    if source is None:
        return
    target = g.const(node.input[1])
    shape, out = g.shapes.get(node.input[0]), g.shapes.get(node.output[0])
    flat = (
        target is not None
        and target.size == 2
        and int(target[1]) == -1
        and shape is not None
        and out is not None
        and len(out) == 2
        and all(isinstance(d, int) for d in shape[2:])
    )
    if not flat:
        _unknown(g, node)
        return
    g.layouts[node.output[0]] = Layout(source.spaces, source.inner * math.prod(shape[2:]))


def _resize(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """Resize by `scales` keeps channels; explicit `sizes` name the channel count: frozen."""
    if len(node.input) > 3 and node.input[3]:
        _unknown(g, node)
    else:
        _passthrough(g, node)


def _pad(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """Pad keeps channels unless it pads the channel axis (or its pads are computed)."""
    pads = g.const(node.input[1]) if len(node.input) > 1 else None
    axes = g.const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    rank = len(g.shapes.get(node.input[0]) or ())
    if pads is None or axes is not None or rank < 2 or pads[1] or pads[1 + rank]:
        _unknown(g, node)
    else:
        _passthrough(g, node)


def _shape(g: ChannelGraph, node: onnx.NodeProto) -> None:
    """Shape reads the tensor's size at run time, so it follows any cut by itself."""


# Channel rules by name; `ops.OPS` says which rule each op type follows.
HANDLERS: dict[str, Callable[[ChannelGraph, onnx.NodeProto], None]] = {
    "passthrough": _passthrough,
    "conv": _conv,
    "conv_transpose": _conv_transpose,
    "gemm": _gemm,
    "matmul": _matmul,
    "norm": _batch_norm,
    "elementwise": _elementwise,
    "prelu": _prelu,
    "concat": _concat,
    "flatten": _flatten,
    "reshape": _reshape,
    "shape": _shape,
    "resize": _resize,
    "pad": _pad,
}
