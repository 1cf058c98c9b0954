"""Where the accuracy went: the error of a compressed model's activations, layer by layer.

Both models run on the same data in onnxruntime; the output of every weight-bearing layer is
compared with the original's tensor of the same name (rewrites keep names: a folded Conv
writes its BatchNorm's output, a QDQ Conv its removed Relu's; a bias Add or Cast after a
renamed node is followed to a name both models share). Per layer: SQNR and relative error of
its output, and how much of that error the layer adds itself (its output's relative error
minus its input's), so the layer that breaks the model ranks first, not the last one.

QDQ models are observed at their QuantizeLinear outputs only: exposing the float tensors
around a Conv would stop onnxruntime fusing it into its integer kernel, and on CPUs without
VNNI that kernel is where the error is (demo u8s8 on AVX2: 88.4 % top-1 fused, 99.8 % with
the QDQ computed in float). onnxruntime's own `qdq_loss_debug` computes that float QDQ
(optimizations off) beside it, so each QDQ layer also shows what quantization alone costs.
Error sums are gathered batch by batch; no activation outlives its batch.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from compressor_gui.core.data import RANDOM_SOURCE, Dataset, random_dataset
from compressor_gui.core.errors import CompressorError, error_text
from compressor_gui.core.evaluate import make_session, sqnr_db_from_energy
from compressor_gui.core.graph import node_attribute, real_inputs
from compressor_gui.core.hardware import MachineInfo, local_machine
from compressor_gui.core.inventory import build_inventory
from compressor_gui.core.jobs import CancelToken, Job, Progress
from compressor_gui.core.model import load_model
from compressor_gui.core.plan import QUANTIZABLE_KINDS
from compressor_gui.core.specialize import specialized_pair

# What "keep this layer float" means in a plan: not quantized and not pruned.
KEEP_FLOAT = {"bits": 32, "prune_ratio": 0.0}
DEFAULT_BATCH = 32
# Ops after a layer that keep its meaning (norm, activation, bias, cast, reshape): a renamed
# layer output is followed through them to a name the original also has.
_FOLLOWERS = {
    "BatchNormalization",
    "Relu",
    "Clip",
    "LeakyRelu",
    "HardSigmoid",
    "HardSwish",
    "Sigmoid",
    "Tanh",
    "Add",
    "Mul",
    "Cast",
    "Identity",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "QuantizeLinear",  # a QDQ pair after a layer carries its value on
    "DequantizeLinear",
}
_CONSTANT_CHAIN = {"Constant", "DequantizeLinear", "Cast", "Transpose", "Identity", "Reshape"}
_MAX_STEPS = 4
OUTPUTS_KEY = "__outputs__"  # the sums of all float model outputs together
_EXPOSED_TOLERANCE = 1e-2  # of the largest output value: rounding flips in a Q are smaller


@dataclass(frozen=True)
class LayerError:
    """One layer's output compared with the original's; `None` figures where no tensor of
    the compressed model could be matched (`note` says why)."""

    name: str  # the layer in the original model: what a recipe names
    op_type: str
    tensor: str = ""  # the tensor compared (the same name in both models)
    sqnr_db: float | None = None
    relative_error: float | None = None  # ||compressed - original|| / ||original||
    input_relative_error: float | None = None
    added_error: float | None = None  # relative_error - input_relative_error
    simulated_sqnr_db: float | None = None  # QDQ computed in float (qdq_loss_debug)
    compressed_name: str = ""  # the node in the compressed model, when it was renamed
    note: str = ""

    @property
    def compared(self) -> bool:
        return self.relative_error is not None

    @property
    def rank_error(self) -> float:
        """What ranks layers: the error a layer adds, else its output's, else nothing."""
        if self.added_error is not None:
            return self.added_error
        return -1.0 if self.relative_error is None else self.relative_error


@dataclass(frozen=True)
class CompareResult:
    """Every layer's error, worst first (layers that could not be compared last)."""

    original_path: str
    compressed_path: str
    samples: int
    data_source: str
    fidelity_only: bool  # random inputs: how far the outputs drifted, no accuracy
    qdq: bool  # the compressed model has quantized activations (QuantizeLinear)
    layers: tuple[LayerError, ...]
    output_sqnr_db: float
    agreement_top1: float | None = None
    top1_original: float | None = None
    top1_compressed: float | None = None
    notes: tuple[str, ...] = ()
    measured_on: MachineInfo | None = None

    def worst(self, count: int) -> tuple[str, ...]:
        """The `count` layers that add the most error (only layers that add any)."""
        ranked = [e for e in self.layers if e.compared and e.rank_error > 0]
        return tuple(e.name for e in ranked[:count])

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["measured_on"] = self.measured_on.to_dict() if self.measured_on else None
        return data


def compare_job(
    original: str | os.PathLike[str],
    compressed: str | os.PathLike[str],
    dataset: Dataset | None = None,
    cancel: CancelToken | None = None,
    *,
    batch_size: int = DEFAULT_BATCH,
) -> Job[CompareResult]:
    """Run both models over `dataset` (None: random inputs, fidelity only) and measure every
    weight-bearing layer's output error; a generator yielding Progress per batch."""
    cancel = cancel or CancelToken()
    yield Progress(0, 1, "opening both models")
    reference = _onnx_model(original)
    changed = _onnx_model(compressed)
    _check_same_interface(reference, changed, Path(original).name, Path(compressed).name)
    fidelity_only = dataset is None or dataset.source == RANDOM_SOURCE
    dataset = dataset or random_dataset(reference)
    reference, changed, fixed, inlined = specialized_pair(reference, changed, dataset)
    yield Progress(0, 1, "matching layers by tensor name")
    plan = _match_layers(reference, changed)
    notes = [*([inlined] if inlined else []), *plan.notes]
    sim = _QdqSimulation(reference, changed, plan, notes) if plan.qdq else None
    sums = _Sums()
    pairs = plan.pairs()
    ref_session = make_session(_exposed(reference, pairs))
    new_session = make_session(_exposed(changed, (o.name for o in pairs.values())))
    outputs = [o.name for o in changed.graph.output]
    total = len(dataset)
    done = 0
    try:
        for batch in dataset.batches(batch_size):
            cancel.raise_if_cancelled()
            feed = {name: value for name, value in batch.items() if name not in fixed}
            ref_values = dict(zip(_names(ref_session), ref_session.run(None, feed), strict=True))
            new_values = dict(zip(_names(new_session), new_session.run(None, feed), strict=True))
            if done == 0:
                _check_exposure(changed, feed, outputs, new_values, notes)
            for tensor, observed in pairs.items():
                sums.add(tensor, ref_values[tensor], observed.value(new_values))
            count = _batch_count(feed, dataset)
            labels = None if dataset.labels is None else dataset.labels[done : done + count]
            sums.add_outputs(outputs, ref_values, new_values, labels, count)
            if sim is not None:
                sim.add_batch(feed, ref_values, sums)
            done += count
            yield Progress(done, total, f"compared {done}/{total} samples")
    finally:
        if sim is not None:
            sim.close()
    layers = sorted(
        (sums.layer_error(link) for link in plan.links), key=lambda e: -e.rank_error
    ) + [LayerError(name, op, note=why) for name, op, why in plan.unmatched]
    return CompareResult(
        original_path=str(original),
        compressed_path=str(compressed),
        samples=done,
        data_source=dataset.source or "data",
        fidelity_only=fidelity_only,
        qdq=plan.qdq,
        layers=tuple(layers),
        output_sqnr_db=sqnr_db_from_energy(*sums.energy[OUTPUTS_KEY]),
        agreement_top1=sums.fraction("agree"),
        top1_original=sums.fraction("top1_ref", labelled=dataset.labels is not None),
        top1_compressed=sums.fraction("top1_new", labelled=dataset.labels is not None),
        notes=tuple(dict.fromkeys(notes)),
        measured_on=local_machine(),
    )


# --- matching ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Observed:
    """A tensor read from the compressed model: a float tensor, or a QuantizeLinear output
    turned back into float with its scale and zero point."""

    name: str
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    axis: int = 1

    def value(self, values: dict[str, np.ndarray]) -> np.ndarray:
        raw = np.asarray(values[self.name])
        if self.scale is None:
            return raw.astype(np.float64)
        shape = [1] * raw.ndim
        if self.scale.size > 1:
            shape[self.axis % raw.ndim] = self.scale.size
        scale = self.scale.astype(np.float64).reshape(shape)
        zero = self.zero_point.astype(np.float64).reshape(shape)
        return (raw.astype(np.float64) - zero) * scale


@dataclass(frozen=True)
class _Link:
    """One layer: its output (and activation input) in both models."""

    name: str
    op_type: str
    compressed_name: str
    tensor: str
    output: _Observed
    input_tensor: str | None
    input: _Observed | None


@dataclass
class _MatchPlan:
    links: list[_Link] = field(default_factory=list)
    unmatched: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    qdq: bool = False

    def pairs(self) -> dict[str, _Observed]:
        """Every tensor compared (layer outputs and inputs, once each) and how it is read."""
        found = {link.tensor: link.output for link in self.links}
        for link in self.links:
            if link.input_tensor is not None and link.input is not None:
                found.setdefault(link.input_tensor, link.input)
        return found


class _Graph:
    """Producers, consumers and constants of a model's main graph."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.initializers = {t.name: t for t in graph.initializer}
        self.nodes = {n.name: n for n in graph.node if n.name}
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.tensors = set(self.producer) | {v.name for v in graph.input}
        self._constant: dict[str, bool] = {}

    def is_constant(self, name: str) -> bool:
        if name not in self._constant:
            node = self.producer.get(name)
            self._constant[name] = name in self.initializers or (
                node is not None
                and node.op_type in _CONSTANT_CHAIN
                and all(self.is_constant(i) for i in node.input if i)
            )
        return self._constant[name]

    def activation_input(self, node: onnx.NodeProto) -> str | None:
        return next((i for i in node.input if i and not self.is_constant(i)), None)

    def forward(self, name: str) -> Iterator[str]:
        """`name`, then the outputs of the single follower ops after it."""
        yield name
        for _ in range(_MAX_STEPS):
            users = self.consumers.get(name, [])
            if len(users) != 1 or users[0].op_type not in _FOLLOWERS:
                return
            node = users[0]
            others = [i for i in node.input if i and i != name]
            if not all(self.is_constant(i) for i in others):
                return  # a residual Add mixes in another branch: no longer this layer
            name = node.output[0]
            yield name

    def backward(self, name: str) -> Iterator[str]:
        """`name`, then through DequantizeLinear/QuantizeLinear/Cast to where it came from."""
        yield name
        for _ in range(_MAX_STEPS):
            node = self.producer.get(name)
            if node is None or node.op_type not in ("DequantizeLinear", "QuantizeLinear", "Cast"):
                return
            name = node.input[0]
            yield name

    def observed(self, name: str) -> _Observed:
        """How the runtime's value of float tensor `name` can be read without changing what
        it computes: through the QuantizeLinear that consumes it, if there is one."""
        quantize = next((n for n in self.consumers.get(name, []) if _is_q(n, self)), None)
        if quantize is None:
            return _Observed(name)
        scale = numpy_helper.to_array(self.initializers[quantize.input[1]])
        zero = (
            numpy_helper.to_array(self.initializers[quantize.input[2]])
            if len(quantize.input) > 2 and quantize.input[2]
            else np.zeros_like(scale)
        )
        return _Observed(quantize.output[0], scale, zero, node_attribute(quantize, "axis", 1))


def _is_q(node: onnx.NodeProto, graph: _Graph) -> bool:
    return (
        node.op_type == "QuantizeLinear"
        and node.input[1] in graph.initializers
        and (len(node.input) < 3 or not node.input[2] or node.input[2] in graph.initializers)
    )


def _match_layers(reference: onnx.ModelProto, changed: onnx.ModelProto) -> _MatchPlan:
    """Pair each weight-bearing layer of the compressed model with the original's tensor of
    the same name after it; say per layer when there is none."""
    ref_graph, new_graph = _Graph(reference), _Graph(changed)
    ref_layers = [x for x in build_inventory(reference).layers if x.kind in QUANTIZABLE_KINDS]
    owner: dict[str, str] = {}  # original tensor -> the layer whose output it carries
    for layer in ref_layers:
        node = ref_graph.nodes.get(layer.name)
        if node is not None and not layer.graph:
            for name in ref_graph.forward(node.output[0]):
                owner.setdefault(name, layer.name)
    plan = _MatchPlan()
    plan.qdq = any(
        _is_q(n, new_graph) and not new_graph.is_constant(n.input[0]) for n in changed.graph.node
    )
    matched: set[str] = set()
    for layer in build_inventory(changed).layers:
        if layer.kind not in QUANTIZABLE_KINDS:  # norms and leftovers: no plan setting
            continue
        node = new_graph.nodes.get(layer.name)
        if layer.graph or node is None:
            plan.unmatched.append((layer.name, layer.op_type, "inside a subgraph: not observed"))
            continue
        tensor = next(
            (t for t in new_graph.forward(node.output[0]) if t in ref_graph.tensors), None
        )
        if tensor is None:
            plan.unmatched.append(
                (layer.name, layer.op_type, "no tensor of the original carries its output")
            )
            continue
        name = owner.get(tensor, layer.name)
        matched.add(name)
        source = new_graph.activation_input(node)
        input_tensor = None
        if source is not None:
            input_tensor = next(
                (t for t in new_graph.backward(source) if t in ref_graph.tensors), None
            )
        plan.links.append(
            _Link(
                name=name,
                op_type=layer.op_type,
                compressed_name="" if name == layer.name else layer.name,
                tensor=tensor,
                output=new_graph.observed(tensor),
                input_tensor=input_tensor,
                input=None if input_tensor is None else new_graph.observed(input_tensor),
            )
        )
    listed = matched | {name for name, _, _ in plan.unmatched}
    plan.unmatched.extend(
        (layer.name, layer.op_type, "not found in the compressed model (removed?)")
        for layer in ref_layers
        if layer.name not in listed
    )
    return plan


# --- measuring ---------------------------------------------------------------------------


class _Sums:
    """Summed squares of reference and difference per tensor pair, gathered per batch."""

    def __init__(self) -> None:
        self.energy: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        self.counts: dict[str, int] = defaultdict(int)
        self.mismatch: dict[str, str] = {}

    def add(self, key: str, reference: np.ndarray, changed: np.ndarray) -> None:
        if key in self.mismatch:
            return
        reference = np.asarray(reference, dtype=np.float64).reshape(-1)
        if reference.size != changed.size:
            self.mismatch[key] = f"shapes differ ({reference.size} vs {changed.size} values)"
            return
        difference = reference - changed.reshape(-1)
        pair = self.energy[key]
        # einsum, not np.dot: BLAS threads spin against onnxruntime's on a busy CPU
        pair[0] += float(np.einsum("i,i->", reference, reference))
        pair[1] += float(np.einsum("i,i->", difference, difference))

    def add_outputs(
        self, names: list[str], ref: dict, new: dict, labels: np.ndarray | None, count: int
    ) -> None:
        """Output error of all float outputs; top-1 agreement (and accuracy, with labels) of
        the first when it holds one score row per sample."""
        for name in names:
            if np.asarray(ref[name]).dtype.kind == "f":
                self.add(OUTPUTS_KEY, ref[name], np.asarray(new[name], dtype=np.float64))
        first_ref, first_new = np.asarray(ref[names[0]]), np.asarray(new[names[0]])
        if first_ref.dtype.kind != "f" or first_ref.size != count * first_ref.shape[-1]:
            return
        if first_ref.shape[-1] < 2:
            return
        ref_top = first_ref.reshape(count, -1).argmax(1)
        new_top = first_new.reshape(count, -1).argmax(1)
        self.counts["rows"] += count
        self.counts["agree"] += int(np.sum(ref_top == new_top))
        if labels is not None:
            self.counts["top1_ref"] += int(np.sum(ref_top == labels))
            self.counts["top1_new"] += int(np.sum(new_top == labels))

    def fraction(self, key: str, labelled: bool = False) -> float | None:
        rows = self.counts.get("rows", 0)
        if not rows or (key != "agree" and not labelled):
            return None
        return self.counts[key] / rows

    def relative(self, key: str | None) -> float | None:
        if key is None or key in self.mismatch or key not in self.energy:
            return None
        signal, noise = self.energy[key]
        if signal == 0.0:
            return 0.0 if noise == 0.0 else None
        return math.sqrt(noise / signal)

    def layer_error(self, link: _Link) -> LayerError:
        out = self.relative(link.tensor)
        into = self.relative(link.input_tensor)
        note = self.mismatch.get(link.tensor, "")
        if link.input_tensor in self.mismatch:
            note = note or f"input {self.mismatch[link.input_tensor]}: error not split"
        sim = self.energy.get(f"sim:{link.tensor}")
        return LayerError(
            name=link.name,
            op_type=link.op_type,
            tensor=link.tensor,
            sqnr_db=None if out is None else sqnr_db_from_energy(*self.energy[link.tensor]),
            relative_error=out,
            input_relative_error=into,
            added_error=None if out is None or into is None else out - into,
            simulated_sqnr_db=None if sim is None else sqnr_db_from_energy(*sim),
            compressed_name=link.compressed_name,
            note=note,
        )


class _QdqSimulation:
    """onnxruntime's qdq_loss_debug on the QDQ model: every activation's Quantize/Dequantize
    computed in float with optimizations off, matched to the original's float activation."""

    def __init__(self, reference, changed, plan: _MatchPlan, notes: list[str]) -> None:
        from onnxruntime.quantization import qdq_loss_debug as debug

        self._debug = debug
        self._tmp = tempfile.TemporaryDirectory(prefix="compressor-compare-")
        self.session = None
        self.tensors = sorted({link.tensor for link in plan.links})
        try:
            plain = Path(self._tmp.name) / "qdq.onnx"
            augmented = Path(self._tmp.name) / "qdq_saved.onnx"
            onnx.save(_debugger_names(changed), str(plain))
            debug.modify_model_output_intermediate_tensors(str(plain), str(augmented))
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            options.log_severity_level = 4
            self.session = ort.InferenceSession(
                str(augmented), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # the float simulation is extra: its failure is a note
            notes.append(f"QDQ-in-float column unavailable: {error_text(exc, 160)}")
            self.close()

    def add_batch(self, feed: dict, reference: dict[str, np.ndarray], sums: _Sums) -> None:
        if self.session is None:
            return
        saved = self._debug._TENSOR_SAVE_POSTFIX
        names = [o.name for o in self.session.get_outputs() if o.name.endswith(saved)]
        values = self.session.run(names, feed)
        qdq = {name[: -len(saved)]: [value] for name, value in zip(names, values, strict=True)}
        floats = {t: [np.asarray(reference[t]).reshape(-1)] for t in self.tensors}
        matching = self._debug.create_activation_matching(qdq, floats)
        for tensor in self.tensors:
            match = matching.get(tensor)
            if match is not None and "float" in match:
                post = np.asarray(match["post_qdq"][0], dtype=np.float64)
                sums.add(f"sim:{tensor}", match["float"][0], post)

    def close(self) -> None:
        self.session = None
        self._tmp.cleanup()


# --- helpers -----------------------------------------------------------------------------


def _debugger_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose activation DequantizeLinear outputs carry the names onnxruntime's QDQ
    debugger pairs by (X_DequantizeLinear_Output for a Q/DQ pair on X): the quantizer writes
    them, but a compressed file keeps short names (they cost PP-OCR cls 0.02x of its size)."""
    from onnxruntime.quantization.quant_utils import DEQUANT_OUTPUT_SUFFIX

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    quantized_from = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    kept = {v.name for v in graph.output}
    renamed: dict[str, str] = {}
    for node in graph.node:
        source = quantized_from.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if source is not None and node.output[0] not in kept:
            renamed[node.output[0]] = f"{source}{DEQUANT_OUTPUT_SUFFIX}"
            node.output[0] = renamed[node.output[0]]
    for node in graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
    return copy


def _onnx_model(path: str | os.PathLike[str]) -> onnx.ModelProto:
    loaded = load_model(path)
    if loaded.onnx_model is None:
        raise CompressorError(f"{Path(path).name} has no ONNX graph ({'; '.join(loaded.notes)})")
    return loaded.onnx_model


def _check_same_interface(reference, changed, ref_name: str, new_name: str) -> None:
    """Both models must take and give the same named tensors, or nothing can be compared."""
    for what, ref_values, new_values in (
        (
            "inputs",
            [v.name for v in real_inputs(reference.graph)],
            [v.name for v in real_inputs(changed.graph)],
        ),
        (
            "outputs",
            [v.name for v in reference.graph.output],
            [v.name for v in changed.graph.output],
        ),
    ):
        if ref_values != new_values:
            raise CompressorError(
                f"{new_name} is not a compressed {ref_name}: its {what} {new_values} differ "
                f"from {ref_values}"
            )


def _exposed(model: onnx.ModelProto, names: Iterable[str]) -> onnx.ModelProto:
    """A copy of `model` that also outputs `names` (untyped outputs: onnxruntime infers)."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    present = {o.name for o in exposed.graph.output}
    for name in sorted(set(names) - present):
        value = exposed.graph.output.add()
        value.name = name
    return exposed


def _check_exposure(model, feed, outputs: list[str], exposed: dict, notes: list[str]) -> None:
    """The exposed model must compute the same outputs as the model itself."""
    plain = make_session(model).run(outputs, feed)
    for name, value in zip(outputs, plain, strict=True):
        value = np.asarray(value, dtype=np.float64)
        diff = float(np.max(np.abs(value - np.asarray(exposed[name], dtype=np.float64)), initial=0))
        if diff > _EXPOSED_TOLERANCE * max(float(np.max(np.abs(value), initial=0)), 1.0):
            notes.append(
                f"observing the layers changed output {name} by {diff:.2g}: onnxruntime fused "
                "differently, per-layer figures are approximate"
            )


def _names(session) -> list[str]:
    return [o.name for o in session.get_outputs()]


def _batch_count(feed: dict, dataset: Dataset) -> int:
    batched = all(form == "batch" for form in dataset.forms.values())
    return len(next(iter(feed.values()))) if batched else 1
