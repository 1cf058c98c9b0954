"""Fusion: fold BatchNormalization into the Conv/Gemm before it, drop Identity and dead nodes,
then let onnxslim simplify. Node names of Conv/Gemm layers are kept, so a plan written for
the original model still names the same layers; the result is checked against the input."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from compressor_gui.core.advice import GIVE_DATA
from compressor_gui.core.data import RANDOM_SOURCE, Dataset
from compressor_gui.core.errors import CompressionError, error_text
from compressor_gui.core.graph import (
    names_read_in_subgraphs,
    remove_dead_nodes,
    remove_unused_initializers,
    run_model,
    unique_initializer_names,
)
from compressor_gui.core.shapes import Shapes, random_feed

FUSE_TOLERANCE = 1e-4
CHECK_SAMPLES = 4  # samples of the user's data that fusion is verified on


@dataclass(frozen=True)
class FuseReport:
    """What fusion did: BN folded (bn node -> conv/gemm node), nodes dropped, and the largest
    output difference measured against the unfused model on the check feeds."""

    nodes_before: int
    nodes_after: int
    folded: tuple[tuple[str, str], ...]
    removed_identity: int
    removed_dead: int
    simplified: bool  # onnxslim's pass was kept (it ran and matched within tolerance)
    max_abs_diff: float
    notes: tuple[str, ...] = ()


def fuse_model(
    model: onnx.ModelProto,
    input_shapes: Shapes | None = None,
    feeds: Sequence[Mapping[str, np.ndarray]] | None = None,
) -> tuple[onnx.ModelProto, FuseReport]:
    """A fused copy of `model` whose outputs equal the original's within 1e-4 on `feeds`
    (samples of the user's data; default: one random batch of `input_shapes`, dynamic dims
    1, which a model branching on an input's value may not run); raises CompressionError
    (input untouched) if no such model could be made."""

    fused = onnx.ModelProto()
    fused.CopyFrom(model)
    graph = fused.graph
    notes: list[str] = []
    folded = _fold_batch_norms(graph, notes)
    removed_identity = _remove_identities(graph)
    removed_dead = remove_dead_nodes(graph)
    checked_on = "samples of its data" if feeds else "random inputs"
    advice = "" if feeds else f"; {GIVE_DATA.cli} to verify it on real inputs"
    feeds = list(feeds) if feeds else [random_feed(model, input_shapes)]
    try:
        reference = [run_model(model, feed) for feed in feeds]
    except Exception as exc:
        raise CompressionError(
            f"the model does not run in onnxruntime on {checked_on}, so fusion cannot be "
            f"verified{advice} ({error_text(exc)})"
        ) from exc
    diff = _max_diff_on(reference, fused, feeds)
    if diff > FUSE_TOLERANCE:
        raise CompressionError(
            f"folding BatchNorm changed the outputs by {diff:.2e} (> {FUSE_TOLERANCE}); "
            "the model was left unfused"
        )
    simplified = False
    slim = _slim(fused, notes)
    if slim is not None:
        slim_diff = _max_diff_on(reference, slim, feeds)
        if slim_diff <= FUSE_TOLERANCE:
            fused, diff, simplified = slim, max(diff, slim_diff), True
            unique_initializer_names(fused.graph)
        else:
            notes.append(f"onnxslim changed outputs by {slim_diff:.2e}; its pass was dropped")
    try:
        onnx.checker.check_model(fused)
    except onnx.checker.ValidationError as exc:
        raise CompressionError(
            f"the fused model does not pass onnx.checker: {error_text(exc, 200)}"
        ) from exc
    return fused, FuseReport(
        nodes_before=len(model.graph.node),
        nodes_after=len(fused.graph.node),
        folded=tuple(folded),
        removed_identity=removed_identity,
        removed_dead=removed_dead,
        simplified=simplified,
        max_abs_diff=diff,
        notes=tuple(notes),
    )


def check_feeds(data: Dataset | None) -> list[dict] | None:
    """The first samples of the job's data to verify fusion on: a model that picks a branch
    by an input's value (silero-vad's sample rate) may not run on random values. None
    (random inputs) when there is no data or it is made up."""
    if data is None or data.source == RANDOM_SOURCE:
        return None
    return list(data.batches(CHECK_SAMPLES, limit=CHECK_SAMPLES))


def _fold_batch_norms(graph: onnx.GraphProto, notes: list[str]) -> list[tuple[str, str]]:
    """Fold each BN whose input comes only from a Conv or Gemm with constant weights."""
    inits = {t.name: t for t in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    uses = Counter(i for n in graph.node for i in n.input)
    uses.update(o.name for o in graph.output)
    weight_uses = Counter(i for n in graph.node for i in n.input[1:])
    folded, dropped = [], []
    for bn in graph.node:
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1:
            continue
        layer = producers.get(bn.input[0])
        params = [inits.get(name) for name in bn.input[1:5]]
        if layer is None or layer.op_type not in _FOLDERS or uses[bn.input[0]] != 1:
            continue
        if any(p is None for p in params) or layer.input[1] not in inits:
            notes.append(
                f"{bn.name}: its parameters or the layer's weight are computed; not folded"
            )
            continue
        gamma, beta, mean, var = (numpy_helper.to_array(p).astype(np.float64) for p in params)
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        scale = gamma / np.sqrt(var + eps)
        if not _FOLDERS[layer.op_type](
            graph, layer, inits, weight_uses, scale, beta - mean * scale
        ):
            notes.append(f"{bn.name}: {layer.op_type} {layer.name} cannot absorb it; not folded")
            continue
        layer.output[0] = bn.output[0]
        folded.append((bn.name, layer.name))
        dropped.append(bn)
    for bn in dropped:
        graph.node.remove(bn)
    remove_unused_initializers(graph)
    return folded


def _own_initializer(graph, inits, weight_uses, name: str, array: np.ndarray) -> str:
    """Write `array` under `name`, or under a new name when another node shares `name`."""
    tensor = inits.get(name)
    if tensor is not None and weight_uses[name] <= 1:
        tensor.CopyFrom(numpy_helper.from_array(array, name))
        return name
    new_name = name if tensor is None else f"{name}_fused"
    while new_name in inits:
        new_name += "_"
    inits[new_name] = numpy_helper.from_array(array, new_name)
    graph.initializer.append(inits[new_name])
    return new_name


def _fold_into_conv(graph, conv, inits, weight_uses, scale, shift) -> bool:
    weight = numpy_helper.to_array(inits[conv.input[1]])
    if weight.shape[0] != scale.size:
        return False
    dtype = weight.dtype
    bias = np.zeros(scale.size)
    if len(conv.input) > 2 and conv.input[2]:
        if conv.input[2] not in inits:
            return False
        bias = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64)
    new_weight = (weight * scale.reshape(-1, *[1] * (weight.ndim - 1))).astype(dtype)
    new_bias = (bias * scale + shift).astype(dtype)
    conv.input[1] = _own_initializer(graph, inits, weight_uses, conv.input[1], new_weight)
    bias_name = conv.input[2] if len(conv.input) > 2 and conv.input[2] else f"{conv.name}_bias"
    bias_name = _own_initializer(graph, inits, weight_uses, bias_name, new_bias)
    if len(conv.input) > 2:
        conv.input[2] = bias_name
    else:
        conv.input.append(bias_name)
    return True


def _fold_into_gemm(graph, gemm, inits, weight_uses, scale, shift) -> bool:
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in gemm.attribute}
    if attrs.get("transA", 0) or gemm.input[1] not in inits:
        return False
    weight = numpy_helper.to_array(inits[gemm.input[1]])
    trans_b = attrs.get("transB", 0)
    if weight.ndim != 2 or weight.shape[0 if trans_b else 1] != scale.size:
        return False
    dtype = weight.dtype
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    bias = np.zeros(scale.size)
    if len(gemm.input) > 2 and gemm.input[2]:
        if gemm.input[2] not in inits:
            return False
        c = numpy_helper.to_array(inits[gemm.input[2]]).astype(np.float64)
        if c.size not in (1, scale.size):
            return False
        bias = np.broadcast_to(c.reshape(-1), scale.shape) * beta
    new_weight = weight * (scale[:, None] if trans_b else scale[None, :])
    gemm.input[1] = _own_initializer(
        graph, inits, weight_uses, gemm.input[1], new_weight.astype(dtype)
    )
    bias_name = gemm.input[2] if len(gemm.input) > 2 and gemm.input[2] else f"{gemm.name}_bias"
    bias_name = _own_initializer(
        graph, inits, weight_uses, bias_name, (bias * scale + shift).astype(dtype)
    )
    if len(gemm.input) > 2:
        gemm.input[2] = bias_name
    else:
        gemm.input.append(bias_name)
    del gemm.attribute[:]
    gemm.attribute.extend(
        [
            onnx.helper.make_attribute("alpha", float(alpha)),
            onnx.helper.make_attribute("beta", 1.0),
            onnx.helper.make_attribute("transB", int(trans_b)),
        ]
    )
    return True


_FOLDERS = {"Conv": _fold_into_conv, "Gemm": _fold_into_gemm}


def _remove_identities(graph: onnx.GraphProto) -> int:
    """Rewire consumers of Identity/inference-mode Dropout to their input."""
    keep = {o.name for o in graph.output} | names_read_in_subgraphs(graph)
    removed = 0
    for node in list(graph.node):
        if node.op_type not in ("Identity", "Dropout") or node.output[0] in keep:
            continue
        if node.op_type == "Dropout" and (len(node.output) > 1 and node.output[1]):
            continue  # its mask is used
        source, target = node.input[0], node.output[0]
        for other in graph.node:
            for index, name in enumerate(other.input):
                if name == target:
                    other.input[index] = source
        graph.node.remove(node)
        removed += 1
    return removed


def _slim(model: onnx.ModelProto, notes: list[str]) -> onnx.ModelProto | None:
    """onnxslim's simplification with the original node names put back (it renames nodes
    after their outputs, which would orphan plan entries)."""
    import onnxslim

    try:
        slim = onnxslim.slim(model)
    except Exception as exc:  # onnxslim fails on some exotic graphs; fusion still stands
        notes.append(f"onnxslim could not simplify the model ({type(exc).__name__}: {exc})")
        return None
    names = {(n.op_type, n.output[0]): n.name for n in model.graph.node if n.output}
    for node in slim.graph.node:
        if node.output and (node.op_type, node.output[0]) in names:
            node.name = names[(node.op_type, node.output[0])]
    return slim


def _max_diff_on(reference: list[list[np.ndarray]], model: onnx.ModelProto, feeds) -> float:
    """The largest output difference of `model` from `reference` (its outputs per feed)."""
    return max(
        float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0
        for expected, feed in zip(reference, feeds, strict=True)
        for a, b in zip(expected, run_model(model, feed), strict=True)
    )
