"""Which layers default static INT8 keeps float: ranked by how much each costs the model's
OUTPUT, measured in a copy of the INT8 model where that layer alone runs float, within a
byte budget. Local error misses layers whose error is amplified downstream."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from compressor_gui.core.data import Dataset
from compressor_gui.core.errors import CompressorError
from compressor_gui.core.evaluate import fidelity, run_outputs
from compressor_gui.core.graph import (
    iter_named_tensors,
    make_session,
    node_names,
    nodes_by_name,
    tensor_nbytes,
)
from compressor_gui.core.ops import FOLDED_ACTIVATIONS

# Layers tried when ranking: the first ones and those adding most error locally.
LOCAL_CANDIDATES = 24
FIRST_LAYERS_TRIED = 4
# Share of the model's weight bytes the kept-float layers may hold: PP-OCRv4 rec's two
# first-ranked layers hold 8.6 % each; both float made it 0.40x instead of 0.33x.
KEEP_FLOAT_SHARE = 0.1


def within_float_budget(model: onnx.ModelProto, ctx, ranked: list[str]) -> list[str]:
    """The ranked layers, in order: the first whatever its size (one layer that breaks INT8
    should not cost the whole model its fidelity), then those whose float weights fit
    KEEP_FLOAT_SHARE together with it (more layers for smaller gains must not undo the
    compression: PP-OCRv4 rec kept two of 8.6 % each for no gain)."""
    sizes = {name: tensor_nbytes(tensor) for name, tensor in iter_named_tensors(model.graph)}
    budget = KEEP_FLOAT_SHARE * sum(sizes.values())
    chosen = []
    for name in ranked:
        cost = sum(sizes.get(weight, 0) for weight in ctx.layers[name].weights)
        if cost <= budget or not chosen:
            chosen.append(name)
            budget -= cost
    return chosen


def leading_outputs(
    model: onnx.ModelProto, samples: Dataset, reference: list[np.ndarray], total: int
) -> list[np.ndarray]:
    """The float outputs of `samples`, the first of the `total` samples whose outputs
    `reference` holds: its first rows when each output has one row per sample (no float run
    again), else the float model run on them."""
    if all(len(output) == total for output in reference):
        return [output[: len(samples)] for output in reference]
    return run_outputs(make_session(model), samples)


def rank_by_output(
    model, result, done, ctx, samples: Dataset, reference: list[np.ndarray]
) -> list[str]:
    """Quantized layers, best first, by how much the output cosine on `samples` rises when
    the layer alone reads its float inputs again in the INT8 model (no recalibration);
    `reference` holds the float model's outputs on `samples`. The error a layer adds
    locally can be amplified downstream: on PP-OCRv4 det the first depthwise Conv ranked
    19th by local error and first by its effect on the output. Only the first layers and
    those `compare` ranks worst locally are tried, to stay quick."""
    first = [n for n in node_names(result.graph) if n in done][:FIRST_LAYERS_TRIED]
    candidates = list(dict.fromkeys([*first, *worst_locally(model, result, done, ctx, samples)]))
    base = fidelity(reference, run_outputs(make_session(result), samples))[1]
    gains: dict[str, float] = {}
    for name in candidates:
        try:
            outputs = run_outputs(
                make_session(kept_float_variant(result, model, name, done)), samples
            )
        except CompressorError:
            continue
        gains[name] = fidelity(reference, outputs)[1] - base
    return sorted((n for n, gain in gains.items() if gain > 0), key=gains.get, reverse=True)


def rank_weights_by_output(
    names: list[str], weight_only, samples: Dataset, reference: list[np.ndarray]
) -> list[str]:
    """Layers, worst first, by how much the output cosine on `samples` falls when only that
    layer's weights are INT8 (`weight_only(kept)` builds the model with the `kept` layers
    float; `reference` holds the float model's outputs on `samples`): on PP-OCRv4 rec one
    depthwise Conv of 144 weights, kernels summing to ~0 over inputs with a large mean,
    costs 0.036 of cosine alone; the other 46 layers under 0.002."""
    drops: dict[str, float] = {}
    for name in names:
        try:
            single, _ = weight_only([n for n in names if n != name])
            cosine = fidelity(reference, run_outputs(make_session(single), samples))[1]
        except CompressorError:
            continue
        drops[name] = 1.0 - cosine
    return sorted((n for n, drop in drops.items() if drop > 0), key=drops.get, reverse=True)


def worst_locally(model, result, done, ctx, samples: Dataset) -> list[str]:
    """The LOCAL_CANDIDATES quantized layers `compare` measures adding most error."""
    from compressor_gui.core.compare import compare_job
    from compressor_gui.core.jobs import run_job

    with tempfile.TemporaryDirectory(prefix="compressor-gui-") as tmp:
        original, changed = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(original))
        onnx.save(result, str(changed))
        try:
            compared = run_job(compare_job(original, changed, samples))
        except CompressorError as exc:
            ctx.warnings.append(f"could not rank the layers by the error they add: {exc}")
            return []
    return [n for n in compared.worst(len(done)) if n in done][:LOCAL_CANDIDATES]


def kept_float_variant(result: onnx.ModelProto, model: onnx.ModelProto, name: str, done):
    """A copy of the INT8 model where layer `name` runs as it would kept float: it reads the
    original model's float inputs (activations before their Quantize/DequantizeLinear pair,
    float weights), and its output (after a folded Relu/Clip) reaches the ops that are not
    quantized layers without its pair. The quantizer keeps layer and tensor names."""
    variant = onnx.ModelProto()
    variant.CopyFrom(result)
    original, original_graph = nodes_by_name(model.graph)[name]
    node, graph = nodes_by_name(variant.graph)[name]
    node.input[:] = original.input
    present = {t.name for t in graph.initializer} | {o for n in graph.node for o in n.output}
    graph.initializer.extend(
        t for t in original_graph.initializer if t.name in original.input and t.name not in present
    )
    outputs = set(node.output)
    outputs |= {
        n.output[0]
        for n in graph.node
        if n.op_type in FOLDED_ACTIVATIONS and n.input and n.input[0] in outputs
    }
    quantizes = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    dequantized = {
        n.output[0]: quantizes[n.input[0]]
        for n in graph.node
        if n.op_type == "DequantizeLinear" and quantizes.get(n.input[0]) in outputs
    }
    for consumer in graph.node:
        if consumer.name not in done:
            consumer.input[:] = [dequantized.get(i, i) for i in consumer.input]
    return variant
