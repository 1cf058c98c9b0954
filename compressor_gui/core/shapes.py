"""Input shapes: one policy for every job, and the made-up feeds built under it.

A model's inputs may declare dynamic dims (a symbol, `?`, or -1). Every job that runs the
model (calibration, evaluation, sensitivity, benchmark) needs concrete ones, and they must be
the same everywhere. `resolve_input_shapes` decides them once, in this order: the user's
`--input-shape` (or GUI field), the data's own arrays, the model's fixed dims and metadata,
then 1 for each dynamic dim if the model runs that way. It asks instead (`InputShapeNeeded`,
before any work is done or any file written) when the model does not run that way (a
detector whose upsampled and lateral features no longer line up at 1x1), or when the height
or width of an image input would be 1: it may run, but calibration, MACs and latency at a
1x1 image mean nothing. The GUI asks in a dialog, the CLI exits 2 naming the flag.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import onnx

from compressor_gui.core.errors import CompressionError, CompressorError, error_text
from compressor_gui.core.graph import make_session, real_inputs, subgraphs, tensor_nbytes


class SampledInputs(Protocol):
    """What the shape policy reads of a dataset (core.data.Dataset has it; data imports
    this module for its feeds, so the dependency runs that way only)."""

    inputs: Mapping[str, np.ndarray]
    forms: Mapping[str, str]


Shapes = dict[str, tuple[int, ...]]
MAX_FEED_BYTES = 1 << 30  # made-up inputs (no data given) larger than this are refused
# element types numpy can hold and onnxruntime can be fed (not strings, not 4/8-bit floats)
_NUMERIC_TYPES = frozenset(range(1, 17)) - {onnx.TensorProto.STRING}
# Ultralytics exports record their image size here (e.g. "[640, 640]"): the H, W of NCHW.
_IMAGE_SIZE_KEYS = ("imgsz",)


class InputShapeNeeded(CompressorError):
    """The model's dynamic dims cannot be chosen without the user: `reason` says why in
    words either door can show, `inputs` names them, `suggested` offers a shape per real
    input; the message adds the command line's flag."""

    def __init__(
        self,
        reason: str,
        inputs: tuple[str, ...],
        suggested: Mapping[str, tuple[int, ...]],
        runs_as_assumed: bool,
    ) -> None:
        shapes = list(suggested.values())
        while shapes and not shapes[-1]:
            shapes.pop()  # a trailing scalar input needs no flag
        flags = " ".join(f"--input-shape {dims_text(shape)}" for shape in shapes)
        super().__init__(
            f"{reason} Give the size it takes: {flags} (one per input, in order), or data "
            "whose arrays have it"
        )
        self.reason = reason
        self.inputs = inputs
        self.suggested = dict(suggested)
        self.runs_as_assumed = runs_as_assumed

    def __reduce__(self):  # a job in a child process sends it back pickled, fields and all
        return type(self), (self.reason, self.inputs, self.suggested, self.runs_as_assumed)


@dataclass(frozen=True)
class InputSpec:
    """A model input as data must match it: fixed dims are ints, dynamic ones None."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype


def input_specs(model: onnx.ModelProto) -> tuple[InputSpec, ...]:
    """The model's real inputs (initializers listed as inputs are not data); a dim declared
    as a symbol, unknown, 0 or negative is dynamic (None)."""
    specs = []
    for value in real_inputs(model.graph):
        tensor_type = value.type.tensor_type
        shape = tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in tensor_type.shape.dim
        )
        if not value.type.HasField("tensor_type") or tensor_type.elem_type not in _NUMERIC_TYPES:
            raise CompressorError(
                f"the model's input {value.name!r} is {_type_text(value.type)}: only numeric "
                "tensors can be fed"
            )
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
        specs.append(InputSpec(value.name, shape, dtype))
    return tuple(specs)


def _type_text(value_type: onnx.TypeProto) -> str:
    kind = value_type.WhichOneof("value")
    if kind != "tensor_type":
        return kind.replace("_type", "") if kind else "of no type"
    elem = value_type.tensor_type.elem_type
    names = onnx.TensorProto.DataType
    return f"a {names.Name(elem).lower()} tensor" if elem in names.values() else "of no type"


def parse_shape(text: str) -> tuple[int, ...]:
    """`1x3x224x224` (or `1,3,224,224`) as a tuple of positive ints; `scalar` as ()."""
    if text.strip().lower() == "scalar":
        return ()
    try:
        dims = tuple(int(part) for part in text.lower().replace(",", "x").split("x"))
    except ValueError:
        dims = ()
    if not dims or any(d <= 0 for d in dims):
        raise CompressorError(
            f"an input shape is positive dims like 1x3x224x224, not {text!r} (--input-shape)"
        )
    return dims


def shape_text(shape: Sequence[int | None]) -> str:
    """A declared shape as `[?, 3, 224, 224]`."""
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def dims_text(shape: Sequence[int]) -> str:
    """A concrete shape as the flag takes it: `1x3x224x224`, `scalar` for ()."""
    return "x".join(str(d) for d in shape) or "scalar"


def resolve_input_shapes(
    model: onnx.ModelProto,
    user_shapes: Sequence[Sequence[int]] | Mapping[str, Sequence[int]] | None = None,
    data: SampledInputs | None = None,
    *,
    probe: bool = True,
) -> Shapes:
    """One concrete shape per real input (batch 1 unless the user or the model says
    otherwise). `user_shapes` are in input order or by name; `data` gives each sample's
    shape. With `probe`, dims set to 1 for want of anything better are checked first:
    InputShapeNeeded when the model cannot run that way or an image's side would be 1."""
    specs = input_specs(model)
    named = _named(specs, user_shapes)
    given: Shapes = {}
    for spec in specs:
        if spec.name in named:
            given[spec.name] = _checked(spec, named[spec.name])
        elif data is not None and spec.name in data.inputs:
            given[spec.name] = _data_shape(spec, data)
    shapes, assumed = declared_input_shapes(model, given)
    open_dims = [a for a in assumed if a.dim > 0 and a.source == "assumed"]
    if probe and open_dims:
        _ask_unless_it_runs(model, shapes, open_dims)
    return {spec.name: shapes[spec.name] for spec in specs}


@dataclass(frozen=True)
class ShapeQuestion:
    """Dynamic input dims a user should size before any job runs: why, whether the model
    runs with them taken as 1 anyway, and a shape per real input to offer."""

    reason: str
    runs_as_assumed: bool
    suggested: Shapes


IMAGE_SIDE = 640  # offered for an image input's dynamic height and width


def shape_question(
    model: onnx.ModelProto,
    given: Sequence[Sequence[int]] | None = None,
    data: SampledInputs | None = None,
) -> ShapeQuestion | None:
    """What the GUI asks before the first job, or None: the question every job would raise
    as InputShapeNeeded (resolve_input_shapes' rule). Batch dims and inputs the user, the
    data or the model's metadata sized are not asked about."""
    try:
        resolve_input_shapes(model, given, data)
    except InputShapeNeeded as exc:
        return ShapeQuestion(exc.reason, exc.runs_as_assumed, exc.suggested)
    return None


@dataclass(frozen=True)
class AssumedDim:
    """A dynamic input dim the policy filled in: which, what it was called, the size chosen
    and where it came from ("assumed" 1, or a metadata key)."""

    input: str
    dim: int
    label: str
    size: int
    source: str = "assumed"

    def __str__(self) -> str:
        why = "assumed" if self.source == "assumed" else f"from the model's {self.source}:"
        return f"input '{self.input}' dim {self.dim} ({self.label}) is dynamic: {why} {self.size}"


def declared_input_shapes(
    model: onnx.ModelProto, given: Mapping[str, Sequence[int]] | None = None
) -> tuple[Shapes, list[AssumedDim]]:
    """Every real tensor input's shape without running anything: `given` where it has the
    input's rank, else the declared dims with each dynamic one filled (the H and W of an
    image input from the model's metadata, anything else 1), and what was filled."""
    given = given or {}
    image_size = _metadata_image_size(model)
    shapes: Shapes = {}
    assumed: list[AssumedDim] = []
    for value in real_inputs(model.graph):
        if not value.type.HasField("tensor_type"):
            continue
        dims = value.type.tensor_type.shape.dim
        wanted = tuple(int(d) for d in given.get(value.name, ()))
        if wanted and len(wanted) == len(dims):
            shapes[value.name] = wanted
            continue
        shape = []
        for index, dim in enumerate(dims):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                shape.append(dim.dim_value)
                continue
            size, source = 1, "assumed"
            if image_size and len(dims) == 4 and index in (2, 3):
                size, source = image_size[index - 2], _IMAGE_SIZE_KEYS[0]
            shape.append(size)
            assumed.append(AssumedDim(value.name, index, dim.dim_param or "?", size, source))
        shapes[value.name] = tuple(shape)
    return shapes, assumed


def random_feed(
    model: onnx.ModelProto,
    shapes: Mapping[str, Sequence[int]] | None = None,
    *,
    count: int | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """A made-up feed for every real input in `shapes` (default: dynamic dims 1): floats
    standard-normal, integers and booleans ones (a valid index, length and mask for any
    model); with `count`, that many samples stacked on a new axis 0. Refused in words when
    it would not fit in memory."""
    rng = np.random.default_rng(seed)
    shapes = shapes or resolve_input_shapes(model, probe=False)
    feed = {}
    for spec in input_specs(model):
        shape = tuple(shapes[spec.name])
        if count is not None:
            shape = (count, *shape)
        size_bytes = math.prod(shape) * spec.dtype.itemsize
        if size_bytes > MAX_FEED_BYTES:
            raise CompressorError(
                f"the model's input {spec.name!r} declares shape {shape_text(spec.shape)}: one "
                f"made-up input would take {size_bytes / 2**30:.3g} GiB; give data or the "
                "input shape it really takes (--input-shape)"
            )
        if spec.dtype.kind == "f":
            feed[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        else:
            feed[spec.name] = np.ones(shape, spec.dtype)
    return feed


def with_input_shapes(
    model: onnx.ModelProto, shapes: Mapping[str, Sequence[int]]
) -> onnx.ModelProto:
    """A copy whose graph inputs declare `shapes` (for tools that need static shapes), with
    the inferred intermediate shapes dropped (they may name the old dynamic dims)."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        wanted = shapes.get(value.name)
        dims = value.type.tensor_type.shape.dim
        if wanted is None or len(wanted) != len(dims):
            continue
        for dim, size in zip(dims, wanted, strict=True):
            dim.Clear()
            dim.dim_value = int(size)
    del fixed.graph.value_info[:]
    return fixed


def restore_io(result: onnx.ModelProto, original: onnx.ModelProto) -> None:
    """Put the original (dynamic) input/output shapes back after a fixed-shape rewrite."""
    inputs = {v.name: v for v in original.graph.input}
    outputs = {v.name: v for v in original.graph.output}
    for value in result.graph.input:
        if value.name in inputs:
            value.CopyFrom(inputs[value.name])
    for value in result.graph.output:
        if value.name in outputs:
            value.CopyFrom(outputs[value.name])
    del result.graph.value_info[:]


def value_shapes(
    model: onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    *,
    data_prop: bool = False,
) -> dict[str, tuple[int | str | None, ...]]:
    """The shape of every value (subgraphs too) by ONNX shape inference on a weight-free
    copy of the model, with `input_shapes` written into its inputs first; dims are ints,
    symbols or None. Raises CompressionError when inference fails."""
    skeleton = _skeleton(model)
    if input_shapes:
        skeleton = with_input_shapes(skeleton, input_shapes)
    try:
        inferred = onnx.shape_inference.infer_shapes(skeleton, data_prop=data_prop)
    except Exception as exc:  # an op's inference function can raise on odd graphs
        raise CompressionError(f"shape inference failed on this model: {error_text(exc)}") from exc
    shapes: dict[str, tuple[int | str | None, ...]] = {}
    for value in _value_infos(inferred.graph):
        tensor_type = value.type.tensor_type
        if tensor_type.HasField("shape"):
            shapes[value.name] = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in tensor_type.shape.dim
            )
    return shapes


def _value_infos(graph: onnx.GraphProto) -> Iterator[onnx.ValueInfoProto]:
    yield from graph.input
    yield from graph.output
    yield from graph.value_info
    for node in graph.node:
        for sub in subgraphs(node):
            yield from _value_infos(sub)


_SMALL_TENSOR_BYTES = 4096  # kept in the shape-inference skeleton (shape-like constants)


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the model without large tensor payloads: enough for shape inference, so a
    500 MB model costs no extra copy."""
    skeleton = onnx.ModelProto()
    skeleton.ir_version = model.ir_version
    skeleton.opset_import.extend(model.opset_import)
    skeleton.graph.CopyFrom(_strip_graph(model.graph))
    return skeleton


def _strip_graph(graph: onnx.GraphProto) -> onnx.GraphProto:
    stripped = onnx.GraphProto(name=graph.name)
    stripped.input.extend(graph.input)
    stripped.output.extend(graph.output)
    stripped.value_info.extend(graph.value_info)
    for tensor in graph.initializer:
        stripped.initializer.append(_strip_tensor(tensor))
    for node in graph.node:
        copy = stripped.node.add()
        copy.op_type, copy.domain, copy.name = node.op_type, node.domain, node.name
        copy.input.extend(node.input)
        copy.output.extend(node.output)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                new_attr = copy.attribute.add()
                new_attr.name, new_attr.type = attr.name, attr.type
                new_attr.g.CopyFrom(_strip_graph(attr.g))
            elif attr.type == onnx.AttributeProto.TENSOR:
                new_attr = copy.attribute.add()
                new_attr.name, new_attr.type = attr.name, attr.type
                new_attr.t.CopyFrom(_strip_tensor(attr.t))
            else:
                copy.attribute.append(attr)
    return stripped


def _strip_tensor(tensor: onnx.TensorProto) -> onnx.TensorProto:
    if tensor_nbytes(tensor) <= _SMALL_TENSOR_BYTES and tensor.data_location != 1:
        return tensor
    # Shape inference needs an initializer's dims and type, not its values.
    return onnx.TensorProto(name=tensor.name, dims=tensor.dims, data_type=tensor.data_type)


# --- the steps of the policy ----------------------------------------------------------------


def _named(
    specs: tuple[InputSpec, ...],
    user_shapes: Sequence[Sequence[int]] | Mapping[str, Sequence[int]] | None,
) -> dict[str, tuple[int, ...]]:
    if not user_shapes:
        return {}
    if isinstance(user_shapes, Mapping):
        unknown = sorted(set(user_shapes) - {s.name for s in specs})
        if unknown:
            raise CompressorError(
                f"input shape given for {', '.join(unknown)}, which the model does not take "
                f"(its inputs: {', '.join(s.name for s in specs)})"
            )
        return {name: tuple(int(d) for d in dims) for name, dims in user_shapes.items()}
    if len(user_shapes) > len(specs):
        raise CompressorError(
            f"{len(user_shapes)} input shapes given, but the model takes {len(specs)} input(s): "
            f"{', '.join(s.name for s in specs)} (one --input-shape per input, in that order)"
        )
    return {
        spec.name: tuple(int(d) for d in dims)
        for spec, dims in zip(specs, user_shapes, strict=False)
    }


def _checked(spec: InputSpec, shape: tuple[int, ...]) -> tuple[int, ...]:
    declared = f"{spec.name!r} is declared {shape_text(spec.shape)}"
    if len(shape) != len(spec.shape):
        raise CompressorError(
            f"input shape {dims_text(shape)} has {len(shape)} dims, but the model's {declared}"
        )
    for got, want in zip(shape, spec.shape, strict=True):
        if got <= 0 or (want is not None and got != want):
            raise CompressorError(f"input shape {dims_text(shape)} does not fit: {declared}")
    return shape


def _data_shape(spec: InputSpec, data: SampledInputs) -> tuple[int, ...]:
    array = data.inputs[spec.name]
    if data.forms.get(spec.name) == "batch":
        return (1, *array.shape[1:])
    return tuple(array.shape[1:])


def _metadata_image_size(model: onnx.ModelProto) -> tuple[int, int] | None:
    """(H, W) an exporter recorded in the model's metadata, if any."""
    for prop in model.metadata_props:
        if prop.key in _IMAGE_SIZE_KEYS:
            try:
                value = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            sizes = [value, value] if isinstance(value, int) else list(value)
            if len(sizes) == 2 and all(isinstance(s, int) and s > 0 for s in sizes):
                return sizes[0], sizes[1]
    return None


def _ask_unless_it_runs(
    model: onnx.ModelProto, shapes: Shapes, open_dims: list[AssumedDim]
) -> None:
    """Run the model once with its open dims as 1; InputShapeNeeded when it fails there, or
    when it runs but an image input's height or width is among them. A model onnxruntime
    cannot even load is not a shape question (the job itself will say what is wrong)."""
    declared = {spec.name: spec.shape for spec in input_specs(model)}
    inputs = tuple(sorted({a.input for a in open_dims}))
    named = "; ".join(f"{name} {shape_text(declared[name])}" for name in inputs)
    image_sides = [a for a in open_dims if len(shapes[a.input]) == 4 and a.dim in (2, 3)]
    session = _session_or_none(model)
    failure = _run_failure(session, model, shapes)
    if failure is not None:
        reason = (
            f"The model's inputs have dynamic dims ({named}) and it does not run with them "
            f"set to 1 (onnxruntime: {error_text(failure, 200)})."
        )
        offered = (image_sides and _offered(shapes, image_sides)) or _one_dim_that_runs(
            session, model, shapes, open_dims
        )
        raise InputShapeNeeded(reason, inputs, offered, False) from failure
    if image_sides:
        reason = (
            f"The model's inputs have dynamic dims ({named}). It runs with them set to 1, but "
            "a 1x1 image makes calibration, MACs and latency meaningless."
        )
        raise InputShapeNeeded(reason, inputs, _offered(shapes, image_sides), True)


def _session_or_none(model: onnx.ModelProto):
    """A session to try shapes on; None for a model onnxruntime cannot load (not a shape
    question: the job itself will say what is wrong)."""
    try:
        return make_session(model, threads=1)
    except CompressorError:
        return None


def _run_failure(session, model: onnx.ModelProto, shapes: Shapes) -> Exception | None:
    if session is None:
        return None
    try:
        session.run(None, random_feed(model, shapes))
    except Exception as exc:  # onnxruntime raises its own types for shape errors
        return exc
    return None


# sizes tried for one open dim that is no image side (a sequence or audio length, a state)
_TRIED_SIZES = (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def _one_dim_that_runs(
    session, model: onnx.ModelProto, shapes: Shapes, dims: list[AssumedDim]
) -> Shapes:
    """The shapes to offer where no image side is open: one open dim at the smallest size
    that makes the model run, the others kept at 1 (silero-vad runs on 256 samples with
    its state's batch at 1; every open dim at one size would not run at all). When no
    single dim does, every open dim at IMAGE_SIDE, as before."""
    for dim in dims:
        for size in _TRIED_SIZES:
            tried = {name: list(shape) for name, shape in shapes.items()}
            tried[dim.input][dim.dim] = size
            offered = {name: tuple(shape) for name, shape in tried.items()}
            if _run_failure(session, model, offered) is None:
                return offered
    return _offered(shapes, dims)


def _offered(shapes: Shapes, dims: list[AssumedDim]) -> Shapes:
    """The shapes to offer: `dims` (image sides, or every open dim but the batch) at
    IMAGE_SIDE, everything else as resolved."""
    offered = {name: list(shape) for name, shape in shapes.items()}
    for dim in dims:
        if dim.dim > 0:
            offered[dim.input][dim.dim] = IMAGE_SIDE
    return {name: tuple(shape) for name, shape in offered.items()}
