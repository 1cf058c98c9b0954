"""Per-layer sensitivity: how much each single change to each single layer costs.

Two passes. The fast pass needs no inference: for every (layer, option) it simulates the change
on the layer's main weight and reports the weight SQNR and a proxy for the output noise. The
measured pass runs the model on real data once per point, with only that layer's weight
replaced, and reports the drop in top-1 accuracy (labels given) or in top-1 agreement with the
original model (no labels), plus the SQNR of the outputs.

Speed comes from never rebuilding the graph: the model is copied once with every swept weight
initializer also declared as a graph input, so onnxruntime lets a feed override it; one point is
one `session.run` with one replaced tensor. Points run on worker processes with one thread
each, or on a Dask cluster (core/executors.py). Results are cached on disk by model hash + data
hash + layer + option.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import onnx
from onnx import numpy_helper

from compressor_gui.core.data import Dataset
from compressor_gui.core.errors import CompressorError
from compressor_gui.core.evaluate import sqnr_db
from compressor_gui.core.executors import ClusterConfig, Placement, RunningBehind, run_all
from compressor_gui.core.graph import graphs, make_session
from compressor_gui.core.hardware import MachineInfo, local_machine
from compressor_gui.core.int8_points import RUNTIME_HOW, runtime_int8_points
from compressor_gui.core.inventory import build_inventory
from compressor_gui.core.jobs import CancelToken, Job, Progress
from compressor_gui.core.model import ModelSource
from compressor_gui.core.ops import layer_facts, weight_axes
from compressor_gui.core.plan import LayerSetting, Misfit, skipped_summary
from compressor_gui.core.quant_ops import CODECS, dequantized
from compressor_gui.core.sweep_cache import SweepCache, point_key
from compressor_gui.core.weights import already_quantized, lift_weights

_BATCH = 256  # samples per run: one run per point for typical sweeps


@dataclass(frozen=True)
class SensitivityOption:
    """One single change to one layer: quantize to `bits` or prune `prune_ratio` by a pattern."""

    name: str
    bits: int = 32
    prune_ratio: float = 0.0
    prune_pattern: str = "unstructured"

    @property
    def setting(self) -> LayerSetting:
        return LayerSetting(
            bits=self.bits, prune_ratio=self.prune_ratio, prune_pattern=self.prune_pattern
        )


OPTIONS = (
    SensitivityOption("int8", bits=8),
    SensitivityOption("int4", bits=4),
    SensitivityOption("int2", bits=2),
    SensitivityOption("int1", bits=1),
    SensitivityOption("prune25", prune_ratio=0.25),
    SensitivityOption("prune50", prune_ratio=0.50),
    SensitivityOption("prune75", prune_ratio=0.75),
    SensitivityOption("prune90", prune_ratio=0.90),
    SensitivityOption("2:4", prune_ratio=0.5, prune_pattern="2:4"),
    SensitivityOption("channel25", prune_ratio=0.25, prune_pattern="channel"),
    SensitivityOption("channel50", prune_ratio=0.50, prune_pattern="channel"),
)
OPTIONS_BY_NAME = {option.name: option for option in OPTIONS}


def options_named(names: Iterable[str]) -> tuple[SensitivityOption, ...]:
    """Options from their names (as the CLI takes them), or a PlanError-like message."""
    chosen = []
    for name in names:
        if name not in OPTIONS_BY_NAME:
            raise CompressorError(
                f"unknown sensitivity option {name!r}; choose from {', '.join(OPTIONS_BY_NAME)}"
            )
        chosen.append(OPTIONS_BY_NAME[name])
    return tuple(chosen)


@dataclass(frozen=True)
class SweptLayer:
    """A layer whose main weight can be overridden: its initializer and weight axes."""

    name: str
    op_type: str
    weight_name: str
    shape: tuple[int, ...]
    out_axis: int
    in_axis: int


@dataclass(frozen=True)
class SensitivityPoint:
    """One (layer, option). Fast-pass fields are always set; the measured ones (`value`, `drop`
    in percentage points, `output_sqnr_db`) are None until the point has been run."""

    layer: str
    option: str
    weight_sqnr_db: float
    proxy_noise: float  # estimated output noise / signal energy of this layer (no inference)
    metric: str | None = None  # "top1" (labels) | "agreement" (fidelity to the original)
    value: float | None = None
    drop: float | None = None
    output_sqnr_db: float | None = None
    how: str = "simulated"  # "simulated" (weights in float) | "onnxruntime INT8 <form>"

    @property
    def measured(self) -> bool:
        return self.drop is not None


@dataclass(frozen=True)
class SensitivityTable:
    """All points of a sweep plus the baseline they are measured against."""

    model_sha256: str
    data_sha256: str
    metric: str  # "top1" | "agreement"
    baseline: float  # top-1 of the original model (1.0 for agreement)
    layers: tuple[str, ...]
    options: tuple[str, ...]
    points: tuple[SensitivityPoint, ...]
    int8_form: str = ""  # the INT8 form the INT8 points ran in ("" when simulated)
    notes: tuple[str, ...] = ()  # how INT8 points were measured, on which machine
    skipped: str = ""  # the asked-for layers a sweep cannot measure, in one line

    def point(self, layer: str, option: str) -> SensitivityPoint | None:
        for point in self.points:
            if point.layer == layer and point.option == option:
                return point
        return None

    def curve(self, layer: str) -> tuple[SensitivityPoint, ...]:
        """One layer's points in option order (what the GUI plots as one line)."""
        order = {name: index for index, name in enumerate(self.options)}
        return tuple(
            sorted((p for p in self.points if p.layer == layer), key=lambda p: order[p.option])
        )

    @property
    def complete(self) -> bool:
        return all(point.measured for point in self.points)

    def to_dict(self) -> dict:
        return {**asdict(self), "points": [asdict(p) for p in self.points]}


# --- which layers, and the simulated change ------------------------------------------------


def swept_layers(model: onnx.ModelProto, names: Sequence[str] | None = None) -> list[SweptLayer]:
    """Layers whose main weight is a float initializer of the main graph with known axes.
    Weights in Constant nodes, subgraphs or behind a Cast are reached through `lift_weights`
    (sweep the lifted model); others (already quantized, RNNs) are skipped. CompressorError
    only when layers were named and none of them can be swept."""
    return sweepable(model, names)[0]


def largest_layers(model: onnx.ModelProto, count: int) -> list[str] | None:
    """The `count` sweepable layers holding the most weights (None when none can be swept):
    a capped sweep of a large model measures where most of its bytes are."""
    found = sorted(swept_layers(model), key=lambda layer: math.prod(layer.shape), reverse=True)
    return [layer.name for layer in found[:count]] or None


def sweepable(
    model: onnx.ModelProto, names: Sequence[str] | None = None
) -> tuple[list[SweptLayer], list[Misfit]]:
    """The layers a sweep can measure (of `names`, or of the whole model) and why the named
    others cannot be (for one "skipped" line)."""
    quantized = already_quantized(model)
    model = lift_weights(model)
    inventory = build_inventory(model)
    nodes = {node.name: node for graph in graphs(model.graph) for node in graph.node}
    initializers = {t.name: t for t in model.graph.initializer}
    wanted = set(names) if names is not None else None
    found: list[SweptLayer] = []
    skipped: list[Misfit] = []
    for layer in inventory.layers:
        if wanted is not None and layer.name not in wanted:
            continue
        swept, reason = _swept_layer(layer, nodes, initializers)
        if layer.name in quantized:
            reason = f"cannot be swept ({quantized[layer.name]})"
        if swept is not None:
            found.append(swept)
        elif wanted is not None:
            skipped.append(Misfit(layer.name, layer.op_type, reason, f"{layer.name} {reason}"))
    if wanted is not None and (missing := wanted - {layer.name for layer in inventory.layers}):
        raise CompressorError(f"no layer named {', '.join(sorted(missing))} in the model")
    if wanted is not None and not found:
        raise CompressorError(f"nothing to sweep: {skipped_summary(skipped)}")
    return found, skipped


def _swept_layer(layer, nodes, initializers) -> tuple[SweptLayer | None, str]:
    """The layer as a sweep sees it, or why it cannot be swept."""
    node = nodes.get(layer.name)
    facts = layer_facts(node) if node is not None else None
    if facts is None or not facts.prunable:
        return None, "cannot be swept (no Conv/Gemm/MatMul weight)"
    weight_name = layer.weight_names[0] if layer.weight_names else ""
    tensor = initializers.get(weight_name)
    if tensor is None:
        return None, "cannot be swept (weight computed, not stored)"
    if tensor.data_type != onnx.TensorProto.FLOAT:
        return None, "cannot be swept (weight not float32)"
    position = list(node.input).index(weight_name) if weight_name in node.input else -1
    axes = weight_axes(node, position, len(tensor.dims)) if len(tensor.dims) > 1 else None
    if axes is None or axes[1] is None:
        return None, "cannot be swept (weight used in an unknown way)"
    return SweptLayer(layer.name, layer.op_type, weight_name, tuple(tensor.dims), *axes), ""


def _to_rows(weight: np.ndarray, out_axis: int, in_axis: int) -> tuple[np.ndarray, list[int]]:
    """The weight as (output channels, rest) with the input axis innermost (for 2:4 groups)."""
    others = [a for a in range(weight.ndim) if a not in (out_axis, in_axis)]
    perm = [out_axis, *others, in_axis]
    moved = weight.transpose(perm)
    return moved.reshape(moved.shape[0], -1).astype(np.float32, copy=True), perm


def _from_rows(rows: np.ndarray, perm: list[int], shape: tuple[int, ...]) -> np.ndarray:
    moved_shape = tuple(shape[a] for a in perm)
    return np.ascontiguousarray(rows.reshape(moved_shape).transpose(np.argsort(perm)))


def simulate(weight: np.ndarray, layer: SweptLayer, setting: LayerSetting) -> np.ndarray:
    """The weight after `setting` (prune first, then quantize), in float32.

    Bit widths go through the quantizer's own codecs (`quant_ops.CODECS`, per output
    channel), so the weights are those the writer stores; pruning mirrors the pruner:
    magnitude unstructured pruning over the whole tensor; 2:4 keeps the 2 largest of each 4
    consecutive input weights; channel pruning zeroes the lowest-L1 output channels. A channel
    pruned for real also loses its bias and BatchNorm shift, which stay here as a constant, so
    the simulated channel drop is close to, not exactly, the real one. Per-channel symmetric
    scales commute with a following BatchNorm, so folding BN later changes nothing here.
    """
    changed = weight.astype(np.float32)
    if setting.prune_ratio > 0:
        rows, perm = _to_rows(weight, layer.out_axis, layer.in_axis)
        rows = _prune(rows, setting.prune_ratio, setting.prune_pattern)
        changed = _from_rows(rows, perm, weight.shape)
    if setting.bits < 32:
        changed = dequantized(*CODECS[setting.bits](changed, layer.out_axis, True), layer.out_axis)
    return changed


def _prune(rows: np.ndarray, ratio: float, pattern: str) -> np.ndarray:
    if pattern == "channel":
        count = int(round(ratio * rows.shape[0]))
        if count:
            rows[np.argsort(np.abs(rows).sum(axis=1), kind="stable")[:count]] = 0.0
        return rows
    if pattern == "2:4":
        width = rows.shape[1]
        padded = np.zeros((rows.shape[0], -(-width // 4) * 4), np.float32)
        padded[:, :width] = rows
        groups = padded.reshape(rows.shape[0], -1, 4)
        smallest = np.argsort(np.abs(groups), axis=2, kind="stable")[:, :, :2]
        np.put_along_axis(groups, smallest, 0.0, axis=2)
        return groups.reshape(rows.shape[0], -1)[:, :width]
    flat = rows.reshape(-1)
    count = int(round(ratio * flat.size))
    if count:
        flat[np.argpartition(np.abs(flat), count - 1)[:count]] = 0.0
    return rows


def fast_point(
    weight: np.ndarray, layer: SweptLayer, option: SensitivityOption
) -> SensitivityPoint:
    """The inference-free estimate for one point.

    `proxy_noise` is ||dW||^2 / ||W||^2. The layer-wise output error of y = W x is
    dW (X X^T) dW^T, whose Hessian X X^T needs data (OBS/GPTQ use it); with no data and no
    gradients we take the inputs as white (X X^T ~ I), under which the relative output noise
    energy of the layer equals the relative weight error energy exactly.
    """
    changed = simulate(weight, layer, option.setting)
    db = sqnr_db(weight, changed)
    return SensitivityPoint(layer.name, option.name, db, 10 ** (-db / 10))


# --- running with overridden weights ------------------------------------------------------


def override_model(model: onnx.ModelProto, weight_names: Iterable[str]) -> onnx.ModelProto:
    """A copy where the named initializers are also graph inputs, so a feed can replace them."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.ir_version = max(copy.ir_version, 4)
    declared = {value.name for value in copy.graph.input}
    by_name = {tensor.name: tensor for tensor in copy.graph.initializer}
    for name in weight_names:
        if name not in declared:
            tensor = by_name[name]
            copy.graph.input.append(
                onnx.helper.make_tensor_value_info(name, tensor.data_type, list(tensor.dims))
            )
    return copy


class OverrideSession:
    """One onnxruntime session whose swept weights can be replaced per run (no rebuild)."""

    def __init__(self, model: onnx.ModelProto, layers: Sequence[SweptLayer], threads: int) -> None:
        model = lift_weights(model)
        serialized = override_model(model, [layer.weight_name for layer in layers])
        self.session = make_session(serialized, threads)
        self.layers = {layer.name: layer for layer in layers}
        initializers = {t.name: t for t in model.graph.initializer}
        self.weights = {
            layer.name: numpy_helper.to_array(initializers[layer.weight_name]) for layer in layers
        }
        self.output_name = self.session.get_outputs()[0].name

    def run(self, batches: Sequence[dict], overrides: Mapping[str, np.ndarray]) -> np.ndarray:
        """The first output over all batches, with weights replaced by layer name."""
        extra = {self.layers[name].weight_name: value for name, value in overrides.items()}
        outputs = []
        for feed in batches:
            output = self.session.run([self.output_name], {**feed, **extra})[0]
            batched = all(np.ndim(v) and len(v) == len(output) for v in feed.values())
            outputs.append(output if batched else output[None])
        return np.concatenate(outputs)

    def simulated(self, settings: Mapping[str, LayerSetting]) -> dict[str, np.ndarray]:
        """Simulated weights for the layers whose setting changes anything."""
        return {
            name: simulate(self.weights[name], self.layers[name], setting)
            for name, setting in settings.items()
            if name in self.layers and (setting.bits < 32 or setting.prune_ratio > 0)
        }


@dataclass(frozen=True)
class Reference:
    """What a changed model is compared with: the original outputs, predictions and labels."""

    outputs: np.ndarray
    labels: np.ndarray | None

    @property
    def metric(self) -> str:
        return "top1" if self.labels is not None else "agreement"

    @property
    def baseline(self) -> float:
        return self.score(self.outputs)[0]

    def score(self, outputs: np.ndarray) -> tuple[float, float]:
        """(metric value, output SQNR in dB) of outputs from a changed model."""
        predicted = outputs.argmax(axis=-1)
        target = self.labels if self.labels is not None else self.outputs.argmax(axis=-1)
        return float(np.mean(predicted == target)), sqnr_db(self.outputs, outputs)


def measure(
    session: OverrideSession,
    batches: Sequence[dict],
    reference: Reference,
    settings: Mapping[str, LayerSetting],
) -> tuple[float, float, float]:
    """(metric value, drop in points, output SQNR dB) of the model with `settings` simulated."""
    value, out_db = reference.score(session.run(batches, session.simulated(settings)))
    return value, 100.0 * (reference.baseline - value), out_db


# --- the job -------------------------------------------------------------------------------


def sensitivity_source_job(
    source: ModelSource, dataset: Dataset, cancel: CancelToken | None = None, **options
) -> Job[SensitivityTable]:
    """`sensitivity_job` on a model opened from `source`: what a child process runs."""
    model = source.open().onnx_model
    if model is None:
        raise CompressorError(f"{source.path.name} has no ONNX graph to measure")
    return (yield from sensitivity_job(model, dataset, cancel=cancel, **options))


def sensitivity_job(
    model: onnx.ModelProto,
    dataset: Dataset,
    *,
    options: Sequence[SensitivityOption] = OPTIONS,
    layers: Sequence[str] | None = None,
    workers: int = 2,
    cluster: ClusterConfig | None = None,
    use_cache: bool = True,
    machine: MachineInfo | None = None,
    cancel: CancelToken | None = None,
) -> Job[SensitivityTable]:
    """Fast pass, then the measured sweep on `workers` local processes or on `cluster`. The
    first Progress carries the fast-pass table; each later one carries one measured
    SensitivityPoint. Returns the complete table. INT8 points run as onnxruntime runs INT8
    on this machine when `machine` (the target; None: this one) is of this machine's CPU
    family; otherwise they are simulated and the table says so."""
    cancel = cancel or CancelToken()
    model = lift_weights(model)
    batches = list(dataset.batches(_BATCH))
    targets, skipped, fast = _fast_pass(model, layers, options)
    total = len(fast)
    here = local_machine()
    int8_mode = _int8_mode(options, here, machine or here)
    cache = SweepCache(model, dataset, here, use_cache)
    metric = "top1" if dataset.labels is not None else "agreement"
    notes = [int8_mode.note] if int8_mode.note else []

    def table(points: dict, baseline: float) -> SensitivityTable:
        return SensitivityTable(
            cache.model_hash,
            cache.data_hash,
            metric,
            baseline,
            tuple(t.name for t in targets),
            tuple(o.name for o in options),
            tuple(points[key] for key in fast),
            cache.int8_form,
            tuple(notes) or cache.int8_note(here),
            skipped_summary(skipped),
        )

    points = _with_cached_points(fast, cache, int8_mode, metric)
    baseline = cache.points.get("__baseline__", {}).get("value")
    todo = [key for key, point in points.items() if not point.measured]
    first = "fast pass" + (f" ({skipped_summary(skipped)})" if skipped else "")
    yield Progress(total - len(todo), total, first, table(points, baseline or 0.0))
    if not todo:
        return table(points, baseline)

    cancel.raise_if_cancelled()
    local = OverrideSession(model, targets, threads=1)
    reference = Reference(local.run(batches, {}), dataset.labels)
    cache.points["__baseline__"] = {"value": reference.baseline}

    def record(layer: str, option: str, value, drop, out_db, how="simulated") -> Progress:
        found = {"metric": metric, "value": value, "drop": drop, "output_sqnr_db": out_db}
        points[(layer, option)] = point = replace(points[(layer, option)], **found, how=how)
        cache.points[point_key(layer, option)] = {**found, "how": how}
        cache.save_now_and_then()
        done = sum(p.measured for p in points.values())
        return Progress(done, total, f"{layer} {option}: drop {drop:.2f} pts", point)

    runtime_todo = [key for key in todo if key[1] in int8_mode.options]
    placement = Placement(workers, cluster)
    measured = _Measured(model, targets, batches, reference, options, placement, cancel)
    try:
        if runtime_todo:
            yield Progress(total - len(todo), total, "INT8 as onnxruntime runs it: calibrating")
            runtime = runtime_int8_points(
                model, dataset, batches, reference, runtime_todo, here, cache, notes, cancel
            )
            rest = [key for key in todo if key not in set(runtime_todo)]
            for layer, option, result in measured.beside(runtime, rest):
                yield record(layer, option, *result)
        # what is left: every point without INT8 in the runtime, and layers it could not take
        todo = [key for key in todo if not points[key].measured]
        for layer, option, result in measured.all(todo):
            yield record(layer, option, *result)
    finally:
        cache.save()
    return table(points, reference.baseline)


def _fast_pass(model: onnx.ModelProto, layers: Sequence[str] | None, options):
    """(layers swept, layers skipped, fast-pass point per (layer, option)): the estimate from
    the weights alone, before anything runs."""
    targets, skipped = sweepable(model, layers)
    if not targets:
        raise CompressorError("the model has no layer whose weight can be swept")
    weights = {t.name: numpy_helper.to_array(_initializer(model, t.weight_name)) for t in targets}
    fast = {(t.name, o.name): fast_point(weights[t.name], t, o) for t in targets for o in options}
    return targets, skipped, fast


def _with_cached_points(fast: dict, cache: SweepCache, int8_mode: _Int8Mode, metric: str) -> dict:
    """The fast-pass points, each replaced by its measured point from the cache where that
    was measured the same way (same metric; INT8 run as wanted now)."""
    points = dict(fast)
    for (layer, option), point in fast.items():
        hit = cache.points.get(point_key(layer, option))
        wanted_how = int8_mode.how if option in int8_mode.options else "simulated"
        if hit is not None and hit.get("metric") == metric and _how(hit, wanted_how):
            points[(layer, option)] = replace(point, **hit)
    return points


@dataclass(frozen=True)
class _Int8Mode:
    options: frozenset[str]  # INT8 options measured in onnxruntime (empty: all simulated)
    how: str  # the `how` those points carry ("" until the form is known)
    note: str


def _int8_mode(options, here: MachineInfo, target: MachineInfo) -> _Int8Mode:
    """Which INT8 options run for real: only when the target is of this machine's family."""
    int8 = frozenset(o.name for o in options if o.bits == 8 and o.prune_ratio == 0)
    if not int8:
        return _Int8Mode(frozenset(), "", "")
    if (target.isa_class, target.arch) != (here.isa_class, here.arch):
        return _Int8Mode(
            frozenset(),
            "",
            f"INT8 points simulated (weights only): the target is {target.cpu_model} "
            f"({target.isa_class}), this machine {here.isa_class}; measure on the target",
        )
    return _Int8Mode(int8, RUNTIME_HOW, "")


def _how(hit: dict, wanted: str) -> bool:
    return hit.get("how", "simulated").startswith(wanted)


class _Measured:
    """Points measured with simulated settings where `placement` says (core/executors.py),
    each worker building its own single-threaded session once."""

    def __init__(self, model, targets, batches, reference, options, placement, cancel) -> None:
        settings = {option.name: option.setting for option in options}
        self._work = _PointWork(
            model.SerializeToString(), tuple(targets), tuple(batches), reference, settings
        )
        self._placement, self._cancel = placement, cancel

    def all(self, todo: list) -> Iterator[tuple[str, str, tuple]]:
        for index, result in run_all(
            self._placement, _point_session, self._work, _measure_point, todo, self._cancel
        ):
            yield *todo[index], result

    def beside(self, here: Iterator[tuple], todo: list) -> Iterator[tuple[str, str, tuple]]:
        """`here`'s points (work that stays in this process) while `todo` runs on the pool
        or cluster, merged as they arrive; in one process, `here` first, then `todo`."""
        if not self._placement.elsewhere:
            yield from here
            yield from self.all(todo)
            return
        args = (self._placement, _point_session, self._work, _measure_point, todo)
        with RunningBehind(*args, self._cancel) as behind:
            for point in here:
                yield point
                for index, result in behind.finished_so_far():
                    yield *todo[index], result
            for index, result in behind.the_rest():
                yield *todo[index], result


@dataclass(frozen=True)
class _PointWork:
    """What a worker needs to measure points: sent to each worker once."""

    model_bytes: bytes
    targets: tuple[SweptLayer, ...]
    batches: tuple[dict, ...]
    reference: Reference
    settings: Mapping[str, LayerSetting]


def _point_session(work: _PointWork) -> tuple[OverrideSession, _PointWork]:
    return OverrideSession(onnx.load_from_string(work.model_bytes), work.targets, 1), work


def _measure_point(state: tuple[OverrideSession, _PointWork], layer: str, option: str):
    session, work = state
    return measure(session, work.batches, work.reference, {layer: work.settings[option]})


def _initializer(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    for tensor in model.graph.initializer:
        if tensor.name == name:
            return tensor
    raise KeyError(name)
