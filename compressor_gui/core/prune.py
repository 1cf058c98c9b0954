"""Pruning, each kind per layer from the plan: unstructured magnitude, N:M semi-structured
(2:4 along the input dimension, as sparse tensor cores need) and structured channel pruning
that makes the graph smaller (dependency graph and per-op surgery in `prune_graph`).

Every function returns a new model and a `PruneReport`; the input model is never modified,
and every result has passed `onnx.checker` and run in onnxruntime with the original's
input and output names and shapes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import onnx
from onnx import numpy_helper

from compressor_gui.core.errors import CompressionError, PlanError
from compressor_gui.core.graph import check_same_interface, graphs
from compressor_gui.core.inventory import build_inventory
from compressor_gui.core.ops import layer_facts, weight_axes
from compressor_gui.core.plan import CompressionPlan
from compressor_gui.core.prune_graph import ChannelGraph
from compressor_gui.core.shapes import Shapes, random_feed
from compressor_gui.core.weights import lift_weights

IMPORTANCES = ("l1", "l2", "bn_scale")


@dataclass(frozen=True)
class LayerPrune:
    """One layer that was pruned: its weight's sparsity after, and channels for `channel`."""

    name: str
    pattern: str  # unstructured | 2:4 | channel
    requested_ratio: float
    sparsity: float
    channels_before: int | None = None
    channels_after: int | None = None
    weight_count: int = 0  # elements of the zeroed weight (unstructured, N:M)


@dataclass(frozen=True)
class SkippedLayer:
    name: str
    pattern: str
    reason: str


@dataclass(frozen=True)
class ChannelGroup:
    """Layers whose output channels were cut together (coupled by Add/Mul/Concat)."""

    layers: tuple[str, ...]
    channels_before: int
    channels_after: int
    importance: str


@dataclass(frozen=True)
class PruneReport:
    layers: tuple[LayerPrune, ...] = ()
    skipped: tuple[SkippedLayer, ...] = ()
    groups: tuple[ChannelGroup, ...] = ()
    params_before: int = 0
    params_after: int = 0
    macs_before: int = 0
    macs_after: int = 0
    n_m_weights: tuple[str, ...] = ()  # initializers now in N:M pattern (for sparse sizes)
    notes: tuple[str, ...] = field(default_factory=tuple)

    def merged(self, later: PruneReport) -> PruneReport:
        """This step followed by `later`: layers and skips of both, totals from first to last."""
        return PruneReport(
            layers=self.layers + later.layers,
            skipped=self.skipped + later.skipped,
            groups=self.groups + later.groups,
            params_before=self.params_before,
            params_after=later.params_after,
            macs_before=self.macs_before,
            macs_after=later.macs_after,
            n_m_weights=self.n_m_weights + later.n_m_weights,
            notes=self.notes + later.notes,
        )


# --- entry point from the plan -------------------------------------------------------------


def apply_pruning(
    model: onnx.ModelProto, plan: CompressionPlan, input_shapes: Shapes | None = None
) -> tuple[onnx.ModelProto, PruneReport]:
    """Prune every Conv/Gemm/MatMul layer whose plan setting has a ratio above 0: channels
    first (they change shapes), then 2:4, then unstructured; each result is checked to run
    on inputs of `input_shapes` (default: dynamic dims 1)."""
    inventory = build_inventory(model, input_shapes=input_shapes)
    prunable = {name for name, _ in _layers(model)}
    by_pattern: dict[str, dict[str, float]] = {"channel": {}, "2:4": {}, "unstructured": {}}
    for name, setting in plan.resolved(inventory).items():
        if name in prunable and setting.prune_ratio > 0:
            by_pattern[setting.prune_pattern][name] = setting.prune_ratio
    report = PruneReport(
        params_before=inventory.total_params,
        params_after=inventory.total_params,
        macs_before=inventory.total_macs,
        macs_after=inventory.total_macs,
    )
    result = model
    if by_pattern["channel"]:
        result, step = prune_channels(
            result, by_pattern["channel"], importance=plan.importance, input_shapes=input_shapes
        )
        report = report.merged(step)
    if by_pattern["2:4"]:
        result, step = prune_n_m(result, by_pattern["2:4"], input_shapes=input_shapes)
        report = report.merged(step)
    if by_pattern["unstructured"]:
        result, step = prune_unstructured(
            result, by_pattern["unstructured"], input_shapes=input_shapes
        )
        report = report.merged(step)
    return result, report


# --- unstructured ----------------------------------------------------------------------------


def prune_unstructured(
    model: onnx.ModelProto, ratios: Mapping[str, float], input_shapes: Shapes | None = None
) -> tuple[onnx.ModelProto, PruneReport]:
    """Zero the smallest-magnitude `ratio` of each named layer's weight (biases untouched)."""
    result = _named_copy(model)
    done, skipped = [], []
    for name, ratio in ratios.items():
        if not 0.0 <= ratio < 1.0:
            raise PlanError(f"{name}: unstructured ratio must be within 0..1, not {ratio}")
        weight_name, reason = _weight_name(result, name)
        if reason:
            skipped.append(SkippedLayer(name, "unstructured", reason))
            continue
        weight = _get_tensor(result, weight_name)
        count = int(round(weight.size * ratio))
        flat = weight.reshape(-1).copy()
        if count:
            flat[np.argpartition(np.abs(flat), count - 1)[:count]] = 0
        _set_tensor(result, weight_name, flat.reshape(weight.shape))
        done.append(
            LayerPrune(name, "unstructured", ratio, _sparsity(flat), weight_count=flat.size)
        )
    check_same_interface(model, result, "unstructured pruning", random_feed(model, input_shapes))
    report = PruneReport(layers=tuple(done), skipped=tuple(skipped))
    return result, _totals(report, model, result, input_shapes)


def global_unstructured_ratios(
    model: onnx.ModelProto,
    ratio: float,
    layers: Iterable[str] | None = None,
    caps: Mapping[str, float] | None = None,
    default_cap: float = 0.95,
) -> dict[str, float]:
    """Per-layer ratios from one global magnitude threshold that zeroes `ratio` of all the
    layers' weights, no layer beyond its cap (so small sensitive layers are not wiped out)."""
    names = list(layers) if layers is not None else [n for n, _ in _layers(model)]
    caps = caps or {}
    magnitudes, limits = {}, {}
    for name in names:
        weight_name, reason = _weight_name(model, name)
        if reason is None:
            magnitudes[name] = np.sort(np.abs(_get_tensor(model, weight_name)).reshape(-1))
            limits[name] = int(magnitudes[name].size * caps.get(name, default_cap))
    if not magnitudes:
        return {}
    total = sum(m.size for m in magnitudes.values())
    wanted = min(int(round(total * ratio)), sum(limits.values()))

    def zeroed(threshold: float) -> dict[str, int]:
        return {
            name: min(int(np.searchsorted(m, threshold, side="left")), limits[name])
            for name, m in magnitudes.items()
        }

    candidates = np.unique(np.concatenate(list(magnitudes.values())))
    low, high = 0, len(candidates)  # smallest threshold zeroing at least `wanted`
    while low < high:
        middle = (low + high) // 2
        if sum(zeroed(candidates[middle]).values()) >= wanted:
            high = middle
        else:
            low = middle + 1
    threshold = candidates[low] if low < len(candidates) else np.inf
    return {name: count / magnitudes[name].size for name, count in zeroed(threshold).items()}


def global_prune_ratios(
    model: onnx.ModelProto,
    ratio: float,
    layers: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
) -> dict[str, float]:
    """Unstructured ratios per layer from one global magnitude threshold over `layers`
    (default: every Conv/Gemm/MatMul), so that `ratio` of all their weights go; checked input
    for `CompressionPlan.with_prune_ratios`."""
    if not 0.0 <= ratio <= 0.95:
        raise PlanError(f"a global prune ratio must be between 0 and 0.95, not {ratio:g}")
    prunable = [name for name, _ in _layers(model)]
    wanted = set(prunable if layers is None else layers) - set(exclude)
    # a selection may hold BatchNorm or other rows: only Conv/Gemm/MatMul take part
    names = [name for name in prunable if name in wanted]
    ratios = global_unstructured_ratios(model, ratio, names) if names else {}
    if not ratios:
        raise PlanError("none of these layers has a constant weight to prune")
    return ratios


# --- N:M -------------------------------------------------------------------------------------


def verify_n_m(array: np.ndarray, n: int, m: int, axis: int = -1) -> bool:
    """True when every run of `m` consecutive values along `axis` has at most `n` non-zeros."""
    moved = np.moveaxis(np.asarray(array), axis, -1)
    if moved.shape[-1] % m:
        return False
    groups = moved.reshape(-1, m)
    return bool(np.all(np.count_nonzero(groups, axis=1) <= n))


def n_m_axis(model: onnx.ModelProto, layer: str, ndim: int = 2) -> int:
    """The input-dimension (reduction) axis of a layer's weight of rank `ndim` (from the op
    table), along which N:M groups run."""
    node = _node(model, layer)
    return weight_axes(node, 1, ndim)[1]


def prune_n_m(
    model: onnx.ModelProto,
    layers: Iterable[str],
    n: int = 2,
    m: int = 4,
    input_shapes: Shapes | None = None,
) -> tuple[onnx.ModelProto, PruneReport]:
    """Keep the `n` largest of every `m` consecutive weights along the input dimension."""
    if not 0 < n < m:
        raise PlanError(f"N:M pattern needs 0 < n < m, not {n}:{m}")
    result = _named_copy(model)
    done, skipped, sparse = [], [], []
    pattern = f"{n}:{m}"
    for name in layers:
        weight_name, reason = _weight_name(result, name)
        if reason:
            skipped.append(SkippedLayer(name, pattern, reason))
            continue
        weight = _get_tensor(result, weight_name)
        axis = n_m_axis(result, name, weight.ndim) if weight.ndim > 1 else 0
        if weight.ndim < 2 or weight.shape[axis] % m:
            skipped.append(
                SkippedLayer(
                    name,
                    pattern,
                    f"its input dimension ({weight.shape[axis] if weight.ndim > 1 else 1}) is "
                    f"not a multiple of {m}",
                )
            )
            continue
        moved = np.moveaxis(weight, axis, -1)
        groups = moved.reshape(-1, m).copy()
        smallest = np.argsort(np.abs(groups), axis=1, kind="stable")[:, : m - n]
        np.put_along_axis(groups, smallest, 0, axis=1)
        pruned = np.moveaxis(groups.reshape(moved.shape), -1, axis)
        if not verify_n_m(pruned, n, m, axis=axis):
            raise CompressionError(f"{name}: {pattern} pruning did not yield the pattern")
        _set_tensor(result, weight_name, pruned)
        sparse.append(weight_name)
        done.append(
            LayerPrune(name, pattern, 1 - n / m, _sparsity(pruned), weight_count=pruned.size)
        )
    check_same_interface(model, result, f"{pattern} pruning", random_feed(model, input_shapes))
    report = PruneReport(layers=tuple(done), skipped=tuple(skipped), n_m_weights=tuple(sparse))
    return result, _totals(report, model, result, input_shapes)


# --- structured channels ---------------------------------------------------------------------


def prune_channels(
    model: onnx.ModelProto,
    ratios: Mapping[str, float],
    importance: str = "l1",
    round_to: int = 1,
    input_shapes: Shapes | None = None,
) -> tuple[onnx.ModelProto, PruneReport]:
    """Remove the least important output channels of each named layer's coupled group (the
    largest ratio named in a group wins) and the matching inputs of every consumer; kept counts
    are rounded to a multiple of `round_to` (8 suits GPU kernels). Groups that cannot be cut
    safely are reported as skipped; if none can be cut, CompressionError."""
    if importance not in IMPORTANCES:
        raise PlanError(f"importance must be one of {IMPORTANCES}, not {importance!r}")
    source = _own_norm_parameters(_named_copy(model))
    graph = ChannelGraph(source)
    skipped: list[SkippedLayer] = []
    group_ratio: dict[int, float] = {}
    named: dict[int, list[str]] = {}
    for name, ratio in ratios.items():
        if not 0.0 <= ratio < 1.0:
            raise PlanError(f"{name}: channel ratio must be within 0..1, not {ratio}")
        spaces = graph.node_spaces.get(name)
        if spaces is None:
            why = graph.refused.get(name) or _why_not_layer(source, name)
            skipped.append(SkippedLayer(name, "channel", why))
            continue
        roots = {graph.find(s) for s in spaces}
        frozen = [why for root in roots for why in graph.spaces[root].frozen]
        if frozen:
            skipped.append(
                SkippedLayer(name, "channel", f"its channel group cannot be cut: {frozen[0]}")
            )
            continue
        for root in roots:
            group_ratio[root] = max(group_ratio.get(root, 0.0), ratio)
            named.setdefault(root, []).append(name)
    if ratios and not group_ratio and skipped:
        raise CompressionError(
            "channel pruning could not cut any requested layer: "
            + "; ".join(f"{s.name}: {s.reason}" for s in skipped[:5])
            + "; the model was left as it was"
        )
    keep, groups, notes = {}, [], []
    for root, ratio in group_ratio.items():
        size = graph.spaces[root].size
        kept = max(1, int(round(size * (1 - ratio))))
        if round_to > 1:
            kept = min(size, max(round_to, int(round(kept / round_to)) * round_to))
        if kept == size:
            continue
        criterion = importance
        if criterion == "bn_scale" and not graph.has_batch_norm(root):
            criterion = "l1"
            notes.append(f"group of {named[root][0]} has no BatchNorm: ranked by L1 instead")
        scores = graph.scores(root, criterion)
        keep[root] = np.sort(np.argsort(-scores, kind="stable")[:kept])
        groups.append(ChannelGroup(graph.layers(root), size, kept, criterion))
    result = graph.apply(keep)
    check_same_interface(model, result, "channel pruning", random_feed(model, input_shapes))
    done = []
    for root, names in named.items():
        size = graph.spaces[root].size
        after = len(keep[root]) if root in keep else size
        for name in names:
            done.append(LayerPrune(name, "channel", group_ratio[root], 0.0, size, after))
    report = PruneReport(
        layers=tuple(done), skipped=tuple(skipped), groups=tuple(groups), notes=tuple(notes)
    )
    return result, _totals(report, model, result, input_shapes)


def channel_groups(model: onnx.ModelProto) -> list[tuple[tuple[str, ...], int, str | None]]:
    """Every group of coupled layers: (layers, channels, why it cannot be cut or None); for the
    UI to show which layers move together before anything is cut."""
    graph = ChannelGraph(_own_norm_parameters(_named_copy(model)))
    found = []
    for root, layers in graph.groups().items():
        frozen = graph.spaces[root].frozen
        found.append((layers, graph.spaces[root].size, frozen[0] if frozen else None))
    return found


# --- helpers ---------------------------------------------------------------------------------


def _named_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy in which every node has a name (`Op_index`, as the inventory names them) and
    weights in Constant nodes or subgraphs are initializers of the main graph."""
    copy = lift_weights(model, fold_casts=False)
    for index, node in enumerate(copy.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{index}"
    return copy


def _own_norm_parameters(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every BatchNormalization its own initializer for each parameter it shares with
    other nodes or reads through an Identity (in place). The TorchScript exporter merges
    equal parameters, and in a trained ResNet the biases of the two BatchNorms feeding one
    residual Add are equal (same start, same gradients): one reads the other's through an
    Identity, which would freeze the whole residual group."""
    graph = model.graph
    tensors = {tensor.name: tensor for tensor in graph.initializer}
    aliases = {
        node.output[0]: node.input[0]
        for node in graph.node
        if node.op_type == "Identity" and node.input[0] in tensors
    }
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    for value in graph.output:
        uses[value.name] = uses.get(value.name, 0) + 1
    taken = set(tensors) | {name for node in graph.node for name in node.output}
    for node in graph.node:
        if node.op_type != "BatchNormalization":
            continue
        for position in range(1, 5):
            name = node.input[position]
            source = aliases.get(name, name)
            if source not in tensors or (name == source and uses[name] < 2):
                continue
            copy = onnx.TensorProto()
            copy.CopyFrom(tensors[source])
            copy.name = next(
                f"{source}.{n}" for n in range(1, 10**6) if f"{source}.{n}" not in taken
            )
            taken.add(copy.name)
            graph.initializer.append(copy)
            node.input[position] = copy.name
            uses[name] -= 1
    unused = [
        n
        for n in graph.node
        if n.op_type == "Identity" and n.output[0] in aliases and not uses[n.output[0]]
    ]
    for node in unused:
        graph.node.remove(node)
    return model


def _layers(model: onnx.ModelProto) -> list[tuple[str, onnx.NodeProto]]:
    """Every prunable layer, subgraphs included (their weights are pruned in place; channel
    pruning leaves them whole)."""
    return [
        (node.name or f"{node.op_type}_{index}", node)
        for graph in graphs(model.graph)
        for index, node in enumerate(graph.node)
        if (facts := layer_facts(node)) is not None and facts.prunable
    ]


def _node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    for layer, node in _layers(model):
        if layer == name:
            return node
    raise PlanError(f"no Conv/Gemm/MatMul layer named {name!r} in this model")


def _why_not_layer(model: onnx.ModelProto, name: str) -> str:
    if all(node.name != name for node in model.graph.node):
        return "it is inside a subgraph (If/Loop/Scan), whose channels are not cut"
    reason = _weight_name(model, name)[1]
    return reason or f"{_node(model, name).op_type} {name!r} output channels are not a group"


def _constants(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    found = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    found[node.output[0]] = attr.t
    return found


def _weight_name(model: onnx.ModelProto, name: str) -> tuple[str, str | None]:
    """The stored weight a layer's values can be edited in, or why there is none."""
    node = _node(model, name)
    weight_name = node.input[1] if len(node.input) > 1 else ""
    constants = _constants(model)
    producer = next((n for n in model.graph.node if weight_name in n.output), None)
    if producer is not None and producer.op_type == "Cast" and producer.input[0] in constants:
        weight_name = producer.input[0]  # a float16 weight: zeros survive the Cast to float32
    tensor = constants.get(weight_name)
    if tensor is None:
        if producer is not None and producer.op_type == "DequantizeLinear":
            return weight_name, "its weight is already quantized (DequantizeLinear)"
        return weight_name, "its weight is computed, not stored"
    if onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).kind != "f":
        return weight_name, "its weight is not floating point"
    return weight_name, None


def _get_tensor(model: onnx.ModelProto, name: str) -> np.ndarray:
    return numpy_helper.to_array(_constants(model)[name])


def _set_tensor(model: onnx.ModelProto, name: str, array: np.ndarray) -> None:
    _constants(model)[name].CopyFrom(numpy_helper.from_array(array, name))


def _sparsity(array: np.ndarray) -> float:
    return float(1.0 - np.count_nonzero(array) / array.size) if array.size else 0.0


def _totals(
    report: PruneReport,
    before: onnx.ModelProto,
    after: onnx.ModelProto,
    input_shapes: Shapes | None,
) -> PruneReport:
    """Params and MACs before and after, MACs counted at the job's input shapes."""
    first = build_inventory(before, input_shapes=input_shapes)
    last = build_inventory(after, input_shapes=input_shapes)
    return replace(
        report,
        params_before=first.total_params,
        params_after=last.total_params,
        macs_before=first.total_macs,
        macs_after=last.total_macs,
    )
