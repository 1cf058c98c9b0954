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
Routing and checking live here; the passes themselves are `quant_passes`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import onnx

from compressor_gui.core.advice import WITHOUT_DATA
from compressor_gui.core.data import Dataset
from compressor_gui.core.errors import CompressorError, error_text
from compressor_gui.core.evaluate import sample_feed
from compressor_gui.core.graph import (
    check_runs,
    constants_to_initializers,
    gemm_as_matmul_ok,
    make_session,
    name_nodes,
    node_names,
    nodes_by_name,
    opset,
)
from compressor_gui.core.inventory import build_inventory
from compressor_gui.core.plan import CompressionPlan, LayerSetting
from compressor_gui.core.quant_ops import rule_for
from compressor_gui.core.quant_passes import (
    HANDLERS,
    INT4_OPSET,
    LABELS,
    Int8Options,
    LayerAction,
    PassContext,
    QuantLayer,
)
from compressor_gui.core.shapes import Shapes, resolve_input_shapes

PER_CHANNEL_OPSET = 13  # DequantizeLinear takes an `axis` (per-channel scales) from opset 13
_AXIS_ROUTES = ("static_int8", "dynamic_int8", "weight_only", "int4_dq")


@dataclass(frozen=True)
class QuantizeResult:
    model: onnx.ModelProto
    actions: tuple[LayerAction, ...]
    warnings: tuple[str, ...]
    int8_form: str = ""  # which INT8 form was used and why ("" when nothing went INT8)
    int8_form_name: str = ""  # the static INT8 form's key in int8_forms.FORMS, if any


def quantize_model(
    model: onnx.ModelProto,
    plan: CompressionPlan,
    dataset: Dataset | None = None,
    *,
    options: Int8Options | None = None,
    input_shapes: Shapes | None = None,
) -> QuantizeResult:
    """Quantize a copy of `model` as `plan` says; the result passes onnx.checker and runs.
    `input_shapes` (default: resolved from the data) are what each pass is run on."""
    options = options or Int8Options()
    shapes = input_shapes or resolve_input_shapes(model, data=dataset, probe=False)
    work = onnx.ModelProto()
    work.CopyFrom(model)
    warnings: list[str] = []
    name_nodes(work.graph)
    moved = constants_to_initializers(work.graph)
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
    feed = _usable_feed(work, dataset, shapes, warnings)
    if any(routes.get(m) for m in _AXIS_ROUTES) and opset(work) < PER_CHANNEL_OPSET:
        work, options = _per_channel_opset(work, feed, options, layers, warnings)
    if routes.get("int4_dq") and opset(work) < INT4_OPSET:
        words = "INT4 weights are stored as int8 codes"
        work = _upgrade_opset(work, feed, INT4_OPSET, warnings, words)
    original_nodes = frozenset(node_names(work.graph))
    context = PassContext(
        plan,
        dataset,
        options,
        warnings,
        layers,
        original_nodes,
        original_nodes & frozenset(settings),
        [],
        shapes,
    )
    actions: dict[str, LayerAction] = {}
    for method, handler in HANDLERS.items():
        names = routes.get(method, [])
        if not names and not (method == "fp16" and plan.default.bits == 16):
            continue
        candidate = onnx.ModelProto()
        candidate.CopyFrom(work)
        try:
            candidate, done = handler(candidate, names, context)
            check_runs(candidate, feed)
        except CompressorError as exc:
            warnings.append(f"{LABELS[method]} failed, {len(names)} layer(s) left float: {exc}")
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


def _route(layers: dict[str, QuantLayer], has_data: bool, model: onnx.ModelProto) -> dict:
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
            if nbits_ok and (rule.nbits or gemm_as_matmul_ok(layer.node, model.graph)):
                method = "nbits"
            else:
                method = "int4_dq"
        elif bits in (2, 1) and rule is not None:
            method = "weight_only"
        if method is not None:
            routes.setdefault(method, []).append(name)
    return routes


def _has_init_weight(layer: QuantLayer) -> bool:
    rule = rule_for(layer.node)
    if rule is None or len(layer.node.input) <= rule.weight_input:
        return False
    wanted = layer.node.input[rule.weight_input]
    return any(t.name == wanted for t in layer.graph.initializer)


def _layers(model: onnx.ModelProto, settings: dict[str, LayerSetting], inventory) -> dict:
    by_name = nodes_by_name(model.graph)
    info = {layer.name: layer for layer in inventory.layers}
    main = {id(node) for node in model.graph.node}
    layers = {}
    for name, setting in settings.items():
        if name not in by_name:
            continue  # a leftover tensor row ("other"), not a node
        node, graph = by_name[name]
        if setting.bits == 32:
            continue
        layers[name] = QuantLayer(
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


def _upgrade_opset(
    model: onnx.ModelProto, feed, version: int, warnings: list[str], otherwise: str
) -> onnx.ModelProto:
    """The model converted to opset `version` by onnx's version converter, checked to run; when that
    fails, the model as it was and a warning ending in `otherwise` (what happens instead)."""
    try:
        upgraded = onnx.version_converter.convert_version(model, version)
        check_runs(upgraded, feed)
        return upgraded
    except Exception as exc:
        warnings.append(
            f"opset {opset(model)} could not be raised to {version} "
            f"({error_text(exc, 160)}): {otherwise}"
        )
        return model


def _per_channel_opset(model, feed, options: Int8Options, layers: dict, warnings: list[str]):
    """Per-channel DequantizeLinear needs opset 13: an older model is converted first, or,
    when it cannot be, quantized with one scale per tensor."""
    before = opset(model)
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


def _usable_feed(model: onnx.ModelProto, dataset: Dataset | None, shapes: Shapes, warnings):
    """One sample to prove each pass's result runs: from the data, else random of `shapes`;
    None when even the original cannot run on it (then results are only loaded, not run)."""
    feed = sample_feed(model, dataset, shapes=shapes)
    try:
        make_session(model, threads=1).run(None, feed)
    except Exception:
        warnings.append(
            f"the model does not run on random inputs: {WITHOUT_DATA.cli}, results were checked "
            "by loading them, not by running them"
        )
        return None
    return feed


def _finish(model: onnx.ModelProto) -> None:
    model.producer_name = "compressor-gui"
    del model.graph.value_info[:]  # stale shapes from before the rewrite; ORT re-infers
