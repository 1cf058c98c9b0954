"""Apply a plan's bit widths to an ONNX model: one model, mixed precision.

Each layer is routed to the best path that really exists for its op (see `quant_ops`):
- 8 bits: onnxruntime static QDQ INT8 with calibration data; dynamic INT8 for MatMul/LSTM
  without data; else weights stored INT8 behind a DequantizeLinear (weight-only).
- 16 bits: FP16 with onnxruntime's converter, IO kept float32 and other nodes blocked.
- 4 bits: MatMulNBits for MatMul (and Gemm, rewritten as MatMul + Add); INT4 DequantizeLinear
  (opset 21) elsewhere.
- 2/1 bits: ternary / binary codes behind a DequantizeLinear, so accuracy is real but no
  kernel is faster: "simulated: no runtime kernel".
Every pass is checked by loading and running the result in onnxruntime; a pass that breaks
the model is undone and its layers stay float, with a warning saying why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compressor_gui.core.data import Dataset, calibration_reader
from compressor_gui.core.errors import CompressionError, CompressorError
from compressor_gui.core.evaluate import fidelity, make_session, run_outputs, sample_feed
from compressor_gui.core.hardware import MachineInfo, local_machine
from compressor_gui.core.inventory import _constant_value, build_inventory
from compressor_gui.core.ops import weight_axes
from compressor_gui.core.plan import INT4_BLOCK_SIZE, CompressionPlan, LayerSetting
from compressor_gui.core.quant_ops import CODECS, int4_blocks, rule_for

SIMULATED = "simulated: no runtime kernel"
CALIBRATION_SAMPLES = 256
FORM_CHECK_SAMPLES = 64  # calibration samples each INT8 form candidate is scored on
INT4_OPSET = 21
PER_CHANNEL_OPSET = 13  # DequantizeLinear takes an `axis` (per-channel scales) from opset 13
_AXIS_ROUTES = ("static_int8", "dynamic_int8", "weight_only", "int4_dq")


@dataclass(frozen=True)
class LayerAction:
    """What was done to one layer, in words for the CLI/UI, and whether it is simulated."""

    name: str
    op_type: str
    bits: int
    method: str
    simulated: bool = False


@dataclass(frozen=True)
class Int8Options:
    """Runtime choices for static INT8 that change speed, not the plan: QDQ or QOperator,
    u8 or s8 activations, per-channel or per-tensor weights (None: from the plan), which
    op types get quantized (None: every op with a kernel), and the machine that will run the
    model (None: this one), whose CPU family decides the INT8 form."""

    quant_format: str = "qdq"  # qdq | qoperator
    activations: str = "u8"  # u8 | s8
    per_channel: bool | None = None
    op_types: tuple[str, ...] | None = None
    machine: MachineInfo | None = None


@dataclass(frozen=True)
class QuantizeResult:
    model: onnx.ModelProto
    actions: tuple[LayerAction, ...]
    warnings: tuple[str, ...]
    int8_form: str = ""  # which INT8 form was used and why ("" when nothing went INT8)
    int8_form_name: str = ""  # the static INT8 form's key in int8_forms.FORMS, if any


@dataclass
class _Layer:
    name: str
    op_type: str
    setting: LayerSetting
    node: onnx.NodeProto
    graph: onnx.GraphProto
    main_graph: bool
    weights: tuple[str, ...]  # stored tensors the inventory traced to this layer, main first
    shares: str  # the inventory's note when its main weight belongs to an earlier layer


def quantize_model(
    model: onnx.ModelProto,
    plan: CompressionPlan,
    dataset: Dataset | None = None,
    *,
    options: Int8Options | None = None,
) -> QuantizeResult:
    """Quantize a copy of `model` as `plan` says; the result passes onnx.checker and runs."""
    options = options or Int8Options()
    work = onnx.ModelProto()
    work.CopyFrom(model)
    warnings: list[str] = []
    _name_nodes(work.graph)
    moved = _constants_to_initializers(work.graph)
    if moved:
        warnings.append(
            f"{moved} Constant tensors of the main graph became initializers "
            "(onnxruntime's quantizer only quantizes initializer weights)"
        )
    inventory = build_inventory(work)
    settings = plan.resolved(inventory)
    layers = _layers(work, settings, inventory)
    routes = _route(layers, dataset is not None, work)
    if dataset is None:
        lacking = [n for n in routes.get("weight_only", []) if layers[n].setting.bits == 8]
        lacking = [n for n in lacking if _can(layers[n].node, "static_int8")]
        if lacking:
            warnings.append(
                f"no calibration data: {len(lacking)} layer(s) stored INT8 weight-only (float "
                "compute, smaller file, no speed-up); give data for static INT8"
            )
    feed = _usable_feed(work, dataset, warnings)
    if any(routes.get(m) for m in _AXIS_ROUTES) and _opset(work) < PER_CHANNEL_OPSET:
        work, options = _per_channel_opset(work, feed, options, layers, warnings)
    if routes.get("int4_dq") and _opset(work) < INT4_OPSET:
        words = "INT4 weights are stored as int8 codes"
        work = _upgrade_opset(work, feed, INT4_OPSET, warnings, words)
    node_names = frozenset(_node_names(work.graph))
    context = _Context(
        plan, dataset, options, warnings, layers, node_names, node_names & frozenset(settings), []
    )
    actions: dict[str, LayerAction] = {}
    for method, handler in _HANDLERS.items():
        names = routes.get(method, [])
        if not names and not (method == "fp16" and plan.default.bits == 16):
            continue
        candidate = onnx.ModelProto()
        candidate.CopyFrom(work)
        try:
            candidate, done = handler(candidate, names, context)
            _check_runs(candidate, feed)
        except CompressorError as exc:
            warnings.append(f"{_LABELS[method]} failed, {len(names)} layer(s) left float: {exc}")
            continue
        work = candidate
        actions.update(done)
    op_types = {layer.name: layer.op_type for layer in inventory.layers}
    ordered = [n for n in settings if n in context.layer_nodes]
    for name in ordered:
        if name not in actions:
            actions[name] = LayerAction(name, op_types[name], 32, "float32 (kept)")
    _finish(work)
    return QuantizeResult(
        work,
        tuple(actions[n] for n in ordered),
        tuple(warnings),
        "; ".join(why for _, why in context.forms),
        next((name for name, why in context.forms if not why.startswith("dynamic")), ""),
    )


# --- routing -----------------------------------------------------------------------------


def _can(node: onnx.NodeProto, path: str) -> bool:
    """Whether the op table gives this node's op a kernel for `path` (e.g. "static_int8")."""
    rule = rule_for(node)
    return rule is not None and getattr(rule, path)


@dataclass(frozen=True)
class _Context:
    plan: CompressionPlan
    dataset: Dataset | None
    options: Int8Options
    warnings: list[str]
    layers: dict[str, _Layer]
    original_nodes: frozenset[str]  # node names before any pass added nodes
    layer_nodes: frozenset[str]  # every weight-bearing node, 32-bit ones included
    forms: list[tuple[str, str]]  # (form name, why) of each INT8 pass


_LABELS = {
    "static_int8": "static INT8 (QDQ)",
    "dynamic_int8": "dynamic INT8",
    "nbits": "INT4 MatMulNBits",
    "int4_dq": "INT4 weight-only",
    "weight_only": "weight-only quantization",
    "fp16": "FP16 conversion",
}


def _route(layers: dict[str, _Layer], has_data: bool, model: onnx.ModelProto) -> dict:
    """Which path each layer takes, from its bits and its op's rule."""
    routes: dict[str, list[str]] = {}
    for name, layer in layers.items():
        bits, rule = layer.setting.bits, rule_for(layer.node)
        method = None
        if bits == 16:
            method = "fp16"
        elif bits == 8 and rule is not None:
            if layer.main_graph and rule.static_int8 and has_data and _has_init_weight(layer):
                method = "static_int8"
            elif layer.main_graph and rule.dynamic_int8 and not has_data:
                method = "dynamic_int8" if _has_init_weight(layer) else "weight_only"
            else:
                method = "weight_only"
        elif bits == 4 and rule is not None:
            nbits_ok = layer.main_graph and _has_init_weight(layer)
            if nbits_ok and (rule.nbits or _gemm_as_matmul_ok(layer.node, model.graph)):
                method = "nbits"
            else:
                method = "int4_dq"
        elif bits in (2, 1) and rule is not None:
            method = "weight_only"
        if method is not None:
            routes.setdefault(method, []).append(name)
    return routes


def _has_init_weight(layer: _Layer) -> bool:
    rule = rule_for(layer.node)
    if rule is None or len(layer.node.input) <= rule.weight_input:
        return False
    wanted = layer.node.input[rule.weight_input]
    return any(t.name == wanted for t in layer.graph.initializer)


# --- passes --------------------------------------------------------------------------------


def _static_int8(model, names, ctx: _Context):
    """Static INT8 in the form the plan names, or (auto) the form that measures best on the
    target machine's family (see `int8_forms`); the result says which form and why."""
    from compressor_gui.core.int8_forms import FORMS, FormScore, choose_form

    if ctx.plan.int8_form != "auto":
        form = FORMS[ctx.plan.int8_form]
        ctx.forms.append((form.name, f"{form.name} as the plan says"))
        return _static_int8_as(model, names, ctx, form, ctx.warnings)
    built: dict[str, tuple] = {}
    calib = ctx.dataset.subset(FORM_CHECK_SAMPLES)
    reference = None

    def score(form) -> FormScore | None:
        nonlocal reference
        warnings: list[str] = []
        try:
            built[form.name] = (*_static_int8_as(model, names, ctx, form, warnings), warnings)
            if reference is None:
                reference = run_outputs(make_session(model), calib)
            outputs = run_outputs(make_session(built[form.name][0]), calib)
        except CompressorError:
            built.pop(form.name, None)
            return None
        agreement, cosine, _ = fidelity(reference, outputs)
        return FormScore(form.name, agreement, cosine)

    target = ctx.options.machine or local_machine()
    choice = choose_form(target, score, measured_here=_same_family(target))
    if choice.form.name not in built:
        built[choice.form.name] = (
            *_static_int8_as(model, names, ctx, choice.form, warnings := []),
            warnings,
        )
    result, done, warnings = built[choice.form.name]
    ctx.warnings.extend(warnings)
    ctx.forms.append((choice.form.name, choice.reason))
    return result, done


def _same_family(target: MachineInfo) -> bool:
    here = local_machine()
    return target.isa_class == here.isa_class and target.arch == here.arch


def _static_int8_as(model, names, ctx: _Context, form, warnings: list[str]):
    """onnxruntime quantize_static in one INT8 form, with fallbacks when shape inference or
    the result fails: symbolic shape inference -> ONNX shape inference only -> fixed input
    shapes -> without the nodes the error names."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[ctx.plan.calibration]
    chosen = [ctx.layers[n] for n in names]
    per_channel = ctx.options.per_channel
    if per_channel is None:
        per_channel = all(layer.setting.per_channel for layer in chosen)
        if len({layer.setting.per_channel for layer in chosen}) > 1:
            warnings.append("INT8 layers mix per-channel and per-tensor: all quantized per-tensor")
    symmetric = all(layer.setting.symmetric for layer in chosen)
    whole = ctx.plan.default.bits == 8
    others = sorted(ctx.layer_nodes - set(names))
    s8 = ctx.options.activations == "s8"
    fmt = QuantFormat.QOperator if ctx.options.quant_format == "qoperator" else QuantFormat.QDQ
    extra = {"WeightSymmetric": symmetric, "ActivationSymmetric": s8}
    weight_type = QuantType.QUInt8 if form.weight_type == "u8" else QuantType.QInt8
    if method == CalibrationMethod.Percentile:
        extra["CalibPercentile"] = 99.99
    excluded: list[str] = []
    attempts = ["pre_process", "onnx_shapes", "fixed_shapes", "exclude"]
    last_error = ""
    with tempfile.TemporaryDirectory(prefix="compressor-gui-") as tmp:
        for attempt in attempts:
            source = Path(tmp) / f"{attempt}_in.onnx"
            target = Path(tmp) / f"{attempt}_out.onnx"
            candidate = _fixed_input_shapes(model) if attempt == "fixed_shapes" else model
            onnx.save(candidate, str(source))
            try:
                if attempt == "pre_process":
                    prepared = Path(tmp) / "pre.onnx"
                    with contained():
                        quant_pre_process(str(source), str(prepared), skip_optimization=True)
                    source = prepared
                if attempt == "exclude":
                    excluded = [n for n in _node_names(model.graph) if n in last_error]
                    if not excluded:
                        break
                batch = 1 if attempt == "fixed_shapes" else 16
                with contained():
                    quantize_static(
                        str(source),
                        str(target),
                        calibration_reader(ctx.dataset, CALIBRATION_SAMPLES, batch),
                        quant_format=fmt,
                        op_types_to_quantize=list(ctx.options.op_types)
                        if ctx.options.op_types
                        else None,
                        per_channel=per_channel,
                        activation_type=QuantType.QInt8 if s8 else QuantType.QUInt8,
                        weight_type=weight_type,
                        reduce_range=form.reduce_range,
                        nodes_to_quantize=None
                        if whole
                        else [n for n in names if n not in excluded],
                        nodes_to_exclude=others + excluded,
                        calibrate_method=method,
                        extra_options=extra,
                    )
                result = onnx.load(str(target))
                _check_runs(result, sample_feed(result, ctx.dataset))
            except Exception as exc:  # quantizer internals raise anything; we fall back
                last_error = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
                continue
            if attempt != "pre_process":
                warnings.append(
                    f"static INT8: onnxruntime's recommended path failed ({last_error}); "
                    f"quantized with {_FALLBACK_WORDS[attempt]}"
                    + (f" (left float: {', '.join(excluded)})" if excluded else "")
                )
            if attempt == "fixed_shapes":
                _restore_io(result, model)
            done = _actions_for(
                ctx,
                [n for n in names if n not in excluded and _was_quantized(result, n)],
                8,
                f"INT8 static {'QOperator' if fmt == QuantFormat.QOperator else 'QDQ'} "
                f"({'per-channel' if per_channel else 'per-tensor'}, "
                f"{ctx.plan.calibration} calibration, {'s8' if s8 else 'u8'} activations, "
                f"{form.weight_type} weights{', reduce_range' if form.reduce_range else ''})",
            )
            return result, done
    raise CompressionError(last_error or "no quantized model came out")


_FALLBACK_WORDS = {
    "onnx_shapes": "ONNX shape inference only",
    "fixed_shapes": "input shapes fixed (dynamic dims = 1)",
    "exclude": "the failing nodes excluded",
}


def _dynamic_int8(model, names, ctx: _Context):
    """onnxruntime quantize_dynamic in the form the plan names, or the target's rule form
    (without data there is nothing to measure candidates on)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from compressor_gui.core.int8_forms import FORMS, rule_form

    target = ctx.options.machine or local_machine()
    if ctx.plan.int8_form != "auto":
        form = FORMS[ctx.plan.int8_form]
        ctx.forms.append((form.name, f"dynamic INT8 {form.name} as the plan says"))
    else:
        form = rule_form(target)
        ctx.forms.append(
            (
                form.name,
                f"dynamic INT8 {form.name} by rule for {target.cpu_model} "
                f"({target.isa_class}); no data to measure forms on",
            )
        )
    per_channel = all(ctx.layers[n].setting.per_channel for n in names)
    with tempfile.TemporaryDirectory(prefix="compressor-gui-") as tmp:
        source, target = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        onnx.save(model, str(source))
        try:
            with contained():
                quantize_dynamic(
                    str(source),
                    str(target),
                    nodes_to_quantize=list(names),
                    per_channel=per_channel,
                    weight_type=QuantType.QUInt8 if form.weight_type == "u8" else QuantType.QInt8,
                    reduce_range=form.reduce_range,
                )
        except Exception as exc:
            raise CompressionError(str(exc).splitlines()[0][:300]) from exc
        result = onnx.load(str(target))
    done = [n for n in names if _was_quantized(result, n)]
    words = f"{form.weight_type} weights" + (", reduce_range" if form.reduce_range else "")
    return result, _actions_for(ctx, done, 8, f"INT8 dynamic ({words}, activations at run)")


def _nbits(model, names, ctx: _Context):
    """MatMulNBits: INT4 blocks of 32 with a real onnxruntime kernel; Gemm is first split
    into MatMul + Add (keeping the layer's name on the MatMul)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    by_name = _nodes_by_name(model.graph)
    for name in names:
        node, graph = by_name[name]
        if node.op_type == "Gemm":
            _gemm_to_matmul(graph, node)
    symmetric = all(ctx.layers[n].setting.symmetric for n in names)
    try:
        with contained():
            quantizer = MatMulNBitsQuantizer(
                model,
                bits=4,
                block_size=INT4_BLOCK_SIZE,
                is_symmetric=symmetric,
                nodes_to_include=list(names),
            )
            quantizer.process()
    except Exception as exc:
        raise CompressionError(str(exc).splitlines()[0][:300]) from exc
    result = quantizer.model.model
    done = [n for n in names if not any(node.name == n for node in result.graph.node)]
    return result, _actions_for(ctx, done, 4, f"INT4 MatMulNBits (blocks of {INT4_BLOCK_SIZE})")


def _weight_only(model, names, ctx: _Context):
    """Weights as integer codes + per-channel scales behind a DequantizeLinear that takes the
    stored tensor's place (wherever it lives: initializer, Constant, subgraph), so the file
    shrinks and accuracy is real; the op itself still computes in float."""
    int4_storage = _opset(model) >= INT4_OPSET
    by_name = _nodes_by_name(model.graph)
    done: dict[str, LayerAction] = {}
    for name in names:
        layer = ctx.layers[name]
        node, _ = by_name[name]
        bits = layer.setting.bits
        stored = 0
        for weight in layer.weights:
            stored += _encode_stored(
                model.graph, weight, bits, layer.setting.per_channel, node, int4_storage
            )
        if not stored and layer.shares:
            method = f"weights quantized with the layer that owns them ({layer.shares})"
            done[name] = LayerAction(name, layer.op_type, bits, method, simulated=bits in (2, 1))
            continue
        if not stored:
            ctx.warnings.append(f"{name}: no float weight of 2+ dims found: left float")
            continue
        if bits in (2, 1):
            word = "ternary (TWN)" if bits == 2 else "binary (XNOR-Net)"
            per_byte = 4 if bits == 2 else 8
            method = f"{word} weights, packed {per_byte} per byte, unpacked at load; {SIMULATED}"
        else:
            store = "int4 blocks of 32" if bits == 4 and int4_storage else "int8 per channel"
            method = f"INT{bits} weight-only ({store} + DequantizeLinear, float compute)"
        done[name] = LayerAction(name, layer.op_type, bits, method, simulated=bits in (2, 1))
    return model, done


def _fp16(model, names, ctx: _Context):
    """onnxruntime's float16 converter with every node outside the FP16 layers blocked
    (or, when the default is 16 bits, only the layers at other widths and added nodes)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    allowed = set(names)
    if ctx.plan.default.bits == 16:
        layer_names = set(ctx.layer_nodes)
        allowed |= {n for n in ctx.original_nodes if n not in layer_names}
    _name_nodes(model.graph, prefix="node_")
    block = [n for n in _node_names(model.graph) if n not in allowed]
    try:
        with contained():
            result = convert_float_to_float16(model, keep_io_types=True, node_block_list=block)
    except Exception as exc:
        raise CompressionError(str(exc).splitlines()[0][:300]) from exc
    _toposort(result.graph)
    return result, _actions_for(ctx, names, 16, "FP16 (IO kept float32)")


_HANDLERS: dict[str, Callable] = {
    "static_int8": _static_int8,
    "dynamic_int8": _dynamic_int8,
    "nbits": _nbits,
    "int4_dq": _weight_only,
    "weight_only": _weight_only,
    "fp16": _fp16,
}


# --- weight codes -------------------------------------------------------------------------


def _encode_stored(
    root: onnx.GraphProto,
    weight: str,
    bits: int,
    per_channel: bool,
    node: onnx.NodeProto,
    int4_storage: bool,
) -> int:
    """Replace one stored float tensor by codes + scale + DequantizeLinear producing the same
    name in the same graph. Scales run along the output channels when `node` consumes the
    tensor as is at a weight input the op table knows, else along axis 0 (a tensor reaching
    it through reshapes). Returns 1 if done, 0 if the tensor is not a float of 2+ dims."""
    found = _find_stored(root, weight)
    if found is None:
        return 0
    graph, tensor, constant = found
    array = numpy_helper.to_array(tensor)
    if array.dtype.kind != "f" or array.ndim < 2:
        return 0
    axis, block_axis = _stored_axes(node, weight, array.ndim)
    blocked = (
        bits == 4
        and int4_storage
        and block_axis is not None
        and array.shape[block_axis] >= INT4_BLOCK_SIZE
    )
    if blocked:
        axis = block_axis
        codes, scale = int4_blocks(array.astype(np.float32), axis, INT4_BLOCK_SIZE)
    else:
        codes, scale = CODECS[bits](array.astype(np.float32), axis, per_channel)
        if not per_channel:
            scale = scale[:1].reshape(())
    base = f"{weight}_w{bits}".replace("/", "_")
    if bits in (2, 1):
        tensors, new_nodes = _packed_decoder(
            base, weight, bits, codes, scale.astype(array.dtype), axis
        )
    else:
        if int4_storage and bits == 4:
            quantized = _int4_tensor(f"{base}_q", codes)
        else:
            quantized = numpy_helper.from_array(codes, f"{base}_q")
        scale_tensor = numpy_helper.from_array(scale.astype(array.dtype), f"{base}_scale")
        attrs = {"axis": axis} if per_channel or blocked else {}
        if blocked:
            attrs["block_size"] = INT4_BLOCK_SIZE
        tensors = [quantized, scale_tensor]
        new_nodes = [
            helper.make_node(
                "DequantizeLinear",
                [quantized.name, scale_tensor.name],
                [weight],
                name=f"{base}_DequantizeLinear",
                **attrs,
            )
        ]
    if constant is not None:
        graph.node.remove(constant)
        new_nodes[:0] = [
            helper.make_node("Constant", [], [t.name], name=f"{t.name}_Constant", value=t)
            for t in tensors
        ]
    else:
        graph.initializer.remove(tensor)
        graph.initializer.extend(tensors)
    for offset, new in enumerate(new_nodes):
        graph.node.insert(offset, new)
    return 1


def _stored_axes(node: onnx.NodeProto, weight: str, ndim: int) -> tuple[int, int | None]:
    """(scale axis, INT4 block axis or None) of a stored weight as `node` consumes it."""
    for position, name in enumerate(node.input):
        axes = weight_axes(node, position, ndim) if name == weight else None
        if axes is not None:
            return axes
    return 0, None


def _packed_decoder(
    base: str, weight: str, bits: int, codes: np.ndarray, scale: np.ndarray, axis: int
) -> tuple[list[onnx.TensorProto], list[onnx.NodeProto]]:
    """Ternary/binary codes packed 4 (2-bit) or 8 (1-bit) per byte, and the standard-op chain
    that unpacks them into the float weight `weight`. ONNX has no 2/1-bit type or kernel, so
    this is how the file gets the packed size; every input of the chain is a constant, so
    onnxruntime folds it once when the session is created (compute stays float)."""
    width = bits
    per_byte = 8 // width
    # ternary {-1, 0, 1} -> {0, 1, 2} (2 bits); binary {-1, 1} -> {0, 1} (1 bit)
    unsigned = ((codes.reshape(-1).astype(np.int16) + 1) // (3 - width)).astype(np.uint8)
    count = unsigned.size
    padded = np.zeros(-(-count // per_byte) * per_byte, np.uint8)
    padded[:count] = unsigned
    fields = padded.reshape(-1, per_byte).astype(np.uint16)
    packed = (fields << (width * np.arange(per_byte, dtype=np.uint16))).sum(axis=1)
    # field j sits at bits [width*j, width*j + width): shift it to the top, then to the bottom
    up = (8 - width * (np.arange(per_byte) + 1)).astype(np.uint8)
    down = np.full(per_byte, 8 - width, np.uint8)
    step, offset = (1.0, 1.0) if width == 2 else (2.0, 1.0)
    broadcast = [1] * codes.ndim
    broadcast[axis] = -1
    float_type = helper.np_dtype_to_tensor_dtype(scale.dtype)
    tensors = [
        numpy_helper.from_array(packed.astype(np.uint8), f"{base}_packed"),
        numpy_helper.from_array(np.array([1], np.int64), f"{base}_axis1"),
        numpy_helper.from_array(up, f"{base}_up"),
        numpy_helper.from_array(down, f"{base}_down"),
        numpy_helper.from_array(np.array([-1], np.int64), f"{base}_flat"),
        numpy_helper.from_array(np.array([0], np.int64), f"{base}_start"),
        numpy_helper.from_array(np.array([count], np.int64), f"{base}_end"),
        numpy_helper.from_array(np.array(step, scale.dtype), f"{base}_step"),
        numpy_helper.from_array(np.array(offset, scale.dtype), f"{base}_offset"),
        numpy_helper.from_array(np.array(codes.shape, np.int64), f"{base}_shape"),
        numpy_helper.from_array(scale.reshape(broadcast if scale.ndim else ()), f"{base}_scale"),
    ]
    chain = [
        ("Unsqueeze", ["packed", "axis1"], {}),
        ("BitShift", ["0", "up"], {"direction": "LEFT"}),
        ("BitShift", ["1", "down"], {"direction": "RIGHT"}),
        ("Reshape", ["2", "flat"], {}),
        ("Slice", ["3", "start", "end"], {}),
        ("Cast", ["4"], {"to": float_type}),
        ("Mul", ["5", "step"], {}),
        ("Sub", ["6", "offset"], {}),
        ("Reshape", ["7", "shape"], {}),
        ("Mul", ["8", "scale"], {}),
    ]
    nodes = []
    for index, (op, inputs, attrs) in enumerate(chain):
        names = [f"{base}_{i}" if not i.isdigit() else f"{base}_unpack{i}" for i in inputs]
        output = weight if index == len(chain) - 1 else f"{base}_unpack{index}"
        nodes.append(
            helper.make_node(op, names, [output], name=f"{base}_unpack_{op}{index}", **attrs)
        )
    return tensors, nodes


def _int4_tensor(name: str, codes: np.ndarray) -> onnx.TensorProto:
    """INT4 codes packed two per byte, low nibble first, as raw data (the list form of
    make_tensor stores them as varints, about 40% larger)."""
    flat = codes.reshape(-1).astype(np.uint8) & 0xF
    if flat.size % 2:
        flat = np.append(flat, np.uint8(0))
    packed = flat[0::2] | (flat[1::2] << 4)
    return helper.make_tensor(name, TensorProto.INT4, codes.shape, packed.tobytes(), raw=True)


def _find_stored(graph: onnx.GraphProto, name: str):
    """(graph, tensor, Constant node or None) of a stored tensor anywhere in the model."""
    for tensor in graph.initializer:
        if tensor.name == name:
            return graph, tensor, None
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            value = _constant_value(node)
            return (graph, value, node) if value is not None else None
    for node in graph.node:
        for sub in _subgraphs(node):
            found = _find_stored(sub, name)
            if found is not None:
                return found
    return None


def _stored_array(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    for tensor in graph.initializer:
        if tensor.name == name:
            return numpy_helper.to_array(tensor)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            value = _constant_value(node)
            return None if value is None else numpy_helper.to_array(value)
    return None


def _drop_if_unused(graph: onnx.GraphProto, name: str) -> None:
    if any(name in node.input for node in _all_nodes(graph)) or any(
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


# --- model surgery helpers ------------------------------------------------------------------


def _subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def _all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for sub in _subgraphs(node):
            yield from _all_nodes(sub)


def _node_names(graph: onnx.GraphProto) -> list[str]:
    return [node.name for node in _all_nodes(graph)]


def _nodes_by_name(graph: onnx.GraphProto) -> dict[str, tuple[onnx.NodeProto, onnx.GraphProto]]:
    found: dict[str, tuple[onnx.NodeProto, onnx.GraphProto]] = {}

    def visit(g: onnx.GraphProto) -> None:
        for node in g.node:
            found.setdefault(node.name, (node, g))
        for node in g.node:
            for sub in _subgraphs(node):
                visit(sub)

    visit(graph)
    return found


def _name_nodes(graph: onnx.GraphProto, prefix: str = "") -> None:
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
            for sub in _subgraphs(node):
                visit(sub)

    visit(graph)


def _toposort(graph: onnx.GraphProto, outer: frozenset[str] = frozenset()) -> None:
    """Reorder nodes so each comes after its producers (the FP16 converter appends its
    Casts at the end), keeping the original order wherever it is already valid."""
    ready = set(outer) | {v.name for v in graph.input} | {t.name for t in graph.initializer}
    ready.add("")
    pending = list(graph.node)
    needs = {id(node): set(node.input) | _free_names(node) for node in pending}
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
        for sub in _subgraphs(node):
            _toposort(sub, frozenset(ready))


def _free_names(node: onnx.NodeProto) -> set[str]:
    """Names a node's subgraphs read from the enclosing scope."""
    free: set[str] = set()
    for sub in _subgraphs(node):
        local = {v.name for v in sub.input} | {t.name for t in sub.initializer}
        for inner in _all_nodes(sub):
            local.update(inner.output)
        free |= {i for inner in _all_nodes(sub) for i in inner.input if i and i not in local}
    return free


def _constants_to_initializers(graph: onnx.GraphProto) -> int:
    """Main-graph Constant nodes holding tensors become initializers (onnxruntime's quantizer
    only quantizes initializer weights)."""
    moved = 0
    for node in list(graph.node):
        if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
            continue
        if not any(a.name == "value" for a in node.attribute):
            continue
        value = _constant_value(node)
        if value is None or not value.dims:
            continue
        tensor = onnx.TensorProto()
        tensor.CopyFrom(value)
        tensor.name = node.output[0]
        graph.initializer.append(tensor)
        graph.node.remove(node)
        moved += 1
    return moved


def _layers(model: onnx.ModelProto, settings: dict[str, LayerSetting], inventory) -> dict:
    by_name = _nodes_by_name(model.graph)
    info = {layer.name: layer for layer in inventory.layers}
    main = {id(node) for node in model.graph.node}
    layers = {}
    for name, setting in settings.items():
        if name not in by_name:
            continue  # a leftover tensor row ("other"), not a node
        node, graph = by_name[name]
        if setting.bits == 32:
            continue
        layers[name] = _Layer(
            name,
            node.op_type,
            setting,
            node,
            graph,
            id(node) in main,
            info[name].weight_names,
            next((n for n in info[name].notes if n.startswith("shares")), ""),
        )
    return layers


def _gemm_as_matmul_ok(node: onnx.NodeProto, graph: onnx.GraphProto) -> bool:
    if node.op_type != "Gemm":
        return False
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return (
        attrs.get("transA", 0) == 0
        and attrs.get("alpha", 1.0) == 1.0
        and attrs.get("beta", 1.0) == 1.0
        and _stored_array(graph, node.input[1]) is not None
    )


def _gemm_to_matmul(graph: onnx.GraphProto, node: onnx.NodeProto) -> None:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    weight = _stored_array(graph, node.input[1])
    if attrs.get("transB", 0):
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
    _drop_if_unused(graph, old_weight)


def _was_quantized(model: onnx.ModelProto, name: str) -> bool:
    """The node is gone (QOperator / dynamic / MatMulNBits replace it) or its weight now
    comes from a DequantizeLinear (QDQ)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.name == name:
            rule = rule_for(node)
            weight = node.input[rule.weight_input] if rule else ""
            return producers.get(weight, onnx.NodeProto()).op_type == "DequantizeLinear"
    return True


def _actions_for(ctx: _Context, names, bits: int, method: str) -> dict[str, LayerAction]:
    return {n: LayerAction(n, ctx.layers[n].op_type, bits, method) for n in names}


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _upgrade_opset(
    model: onnx.ModelProto, feed, opset: int, warnings: list[str], otherwise: str
) -> onnx.ModelProto:
    """The model converted to `opset` by onnx's version converter, checked to run; when that
    fails, the model as it was and a warning ending in `otherwise` (what happens instead)."""
    try:
        upgraded = onnx.version_converter.convert_version(model, opset)
        _check_runs(upgraded, feed)
        return upgraded
    except Exception as exc:
        warnings.append(
            f"opset {_opset(model)} could not be raised to {opset} "
            f"({str(exc).splitlines()[0][:160]}): {otherwise}"
        )
        return model


def _per_channel_opset(model, feed, options: Int8Options, layers: dict, warnings: list[str]):
    """Per-channel DequantizeLinear needs opset 13: an older model is converted first, or,
    when it cannot be, quantized with one scale per tensor."""
    before = _opset(model)
    upgraded = _upgrade_opset(
        model, feed, PER_CHANNEL_OPSET, warnings, "quantized with one scale per tensor"
    )
    if upgraded is not model:
        warnings.append(
            f"opset {before} raised to {PER_CHANNEL_OPSET} with onnx's version converter "
            "(per-channel DequantizeLinear needs it)"
        )
        return upgraded, options
    for layer in layers.values():
        layer.setting = dataclasses.replace(layer.setting, per_channel=False)
    return model, dataclasses.replace(options, per_channel=False)


def _fixed_input_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    initializers = {t.name for t in fixed.graph.initializer}
    for value in fixed.graph.input:
        if value.name in initializers:
            continue
        for dim in value.type.tensor_type.shape.dim:
            if not (dim.HasField("dim_value") and dim.dim_value > 0):
                dim.Clear()
                dim.dim_value = 1
    del fixed.graph.value_info[:]
    return fixed


def _restore_io(result: onnx.ModelProto, original: onnx.ModelProto) -> None:
    """Put the original (dynamic) input/output shapes back after a fixed-shape quantization."""
    inputs = {v.name: v for v in original.graph.input}
    outputs = {v.name: v for v in original.graph.output}
    for value in result.graph.input:
        if value.name in inputs:
            value.CopyFrom(inputs[value.name])
    for value in result.graph.output:
        if value.name in outputs:
            value.CopyFrom(outputs[value.name])
    del result.graph.value_info[:]


def _usable_feed(model: onnx.ModelProto, dataset: Dataset | None, warnings: list[str]):
    """One sample to prove each pass's result runs: from the data, else random; None when
    even the original cannot run on it (then results are only loaded, not run)."""
    feed = sample_feed(model, dataset)
    try:
        make_session(model, threads=1).run(None, feed)
    except Exception:
        warnings.append(
            "the model does not run on random inputs: without --data, results were checked "
            "by loading them, not by running them"
        )
        return None
    return feed


def _check_runs(model: onnx.ModelProto, feed: dict | None) -> None:
    """The model passes onnx.checker, loads in onnxruntime and runs one sample."""
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise CompressionError(f"onnx.checker: {str(exc).splitlines()[0][:300]}") from exc
    session = make_session(model, threads=1)
    if feed is None:
        return
    try:
        session.run(None, feed)
    except Exception as exc:
        raise CompressionError(
            f"onnxruntime cannot run it: {str(exc).splitlines()[0][:300]}"
        ) from exc


def _finish(model: onnx.ModelProto) -> None:
    model.producer_name = "compressor-gui"
    del model.graph.value_info[:]  # stale shapes from before the rewrite; ORT re-infers


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
