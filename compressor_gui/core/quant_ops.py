"""Per-op quantization rules and per-bit-width weight codecs, as small registries.

`OP_RULES` says, for each weight-bearing op type, where its weight is, which axis holds its
output channels, and which onnxruntime paths have a kernel for it (static QDQ INT8, dynamic
INT8, MatMulNBits INT4). `CODECS` turns a float weight into integer codes and per-channel
scales for each bit width; `codes * scale` is exactly what a DequantizeLinear node produces.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx

from compressor_gui.core.inventory import node_attribute


@dataclass(frozen=True)
class OpRule:
    """How one op type is quantized: weight input index, output-channel axis of that weight
    (a function of the node and the weight's rank), and the runtime kernels that exist."""

    weight_input: int
    channel_axis: Callable[[onnx.NodeProto, int], int]
    static_int8: bool = False  # onnxruntime quantize_static (QDQ) has a kernel
    dynamic_int8: bool = False  # onnxruntime quantize_dynamic has a kernel (fast for MatMul)
    nbits: bool = False  # onnxruntime MatMulNBits (INT4 weight-only with a real kernel)


def _axis(index: int) -> Callable[[onnx.NodeProto, int], int]:
    return lambda node, ndim: index if index >= 0 else ndim + index


def _gemm_axis(node: onnx.NodeProto, ndim: int) -> int:
    return 0 if node_attribute(node, "transB", 0) else 1


OP_RULES: dict[str, OpRule] = {
    "Conv": OpRule(1, _axis(0), static_int8=True),
    "ConvTranspose": OpRule(1, _axis(1), static_int8=True),
    "Gemm": OpRule(1, _gemm_axis, static_int8=True),
    "MatMul": OpRule(1, _axis(-1), static_int8=True, dynamic_int8=True, nbits=True),
    "LSTM": OpRule(1, _axis(1), dynamic_int8=True),
    "GRU": OpRule(1, _axis(1)),
    "RNN": OpRule(1, _axis(1)),
    "Gather": OpRule(0, _axis(0)),
}

# Extra weights of recurrent ops (R: the recurrence) are quantized like the main one.
EXTRA_WEIGHT_INPUTS: dict[str, tuple[int, ...]] = {"LSTM": (2,), "GRU": (2,), "RNN": (2,)}


def rule_for(node: onnx.NodeProto) -> OpRule | None:
    if node.domain not in ("", "ai.onnx"):
        return None
    return OP_RULES.get(node.op_type)


# --- codecs: float weight -> (integer codes, scale per output channel) -----------------------


def _rows(weight: np.ndarray, axis: int) -> np.ndarray:
    return np.moveaxis(weight, axis, 0).reshape(weight.shape[axis], -1).astype(np.float32)


def linear_codes(bits: int) -> Callable[[np.ndarray, int, bool], tuple[np.ndarray, np.ndarray]]:
    """Symmetric INT-b: scale = max|w| / (2^(b-1) - 1) per channel (or per tensor)."""
    qmax = 2 ** (bits - 1) - 1

    def encode(weight: np.ndarray, axis: int, per_channel: bool):
        rows = _rows(weight, axis)
        peak = np.abs(rows).max(axis=1) if per_channel else np.full(len(rows), np.abs(rows).max())
        scale = np.where(peak > 0, peak / qmax, 1.0).astype(np.float32)
        codes = np.clip(np.round(rows / scale[:, None]), -qmax, qmax)
        return _back(codes, weight.shape, axis), scale

    return encode


def _ternary(weight: np.ndarray, axis: int, per_channel: bool):
    """TWN: codes in {-1, 0, 1}, threshold 0.7 mean|w|, scale = mean of the kept |w|."""
    rows = _rows(weight, axis)
    magnitude = np.abs(rows)
    if not per_channel:
        magnitude = magnitude.reshape(1, -1)
    threshold = 0.7 * magnitude.mean(axis=1, keepdims=True)
    keep = magnitude > threshold
    alpha = (magnitude * keep).sum(axis=1) / np.maximum(keep.sum(axis=1), 1)
    keep = keep.reshape(rows.shape)
    scale = np.broadcast_to(np.where(alpha > 0, alpha, 1.0), len(rows)).astype(np.float32)
    return _back(np.sign(rows) * keep, weight.shape, axis), scale


def _binary(weight: np.ndarray, axis: int, per_channel: bool):
    """XNOR-Net weights: codes sign(w) in {-1, 1}, scale = mean|w| per channel."""
    rows = _rows(weight, axis)
    alpha = np.abs(rows).mean(axis=1) if per_channel else np.full(len(rows), np.abs(rows).mean())
    scale = np.where(alpha > 0, alpha, 1.0).astype(np.float32)
    return _back(np.where(rows >= 0, 1.0, -1.0), weight.shape, axis), scale


def _back(codes: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    moved = (shape[axis], *(d for i, d in enumerate(shape) if i != axis))
    return np.moveaxis(codes.reshape(moved), 0, axis).astype(np.int8)


def int4_blocks(weight: np.ndarray, axis: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric INT4 per block of `block` values along `axis` (the reduction axis): codes of
    the weight's shape, scales of its shape with ceil(D / block) along `axis`, as the blocked
    DequantizeLinear of opset 21 expects."""
    moved = np.moveaxis(weight, axis, -1)
    depth = moved.shape[-1]
    padded = np.zeros((*moved.shape[:-1], -(-depth // block) * block), np.float32)
    padded[..., :depth] = moved
    groups = padded.reshape(*moved.shape[:-1], -1, block)
    peak = np.abs(groups).max(axis=-1)
    scale = np.where(peak > 0, peak / 7.0, 1.0).astype(np.float32)
    codes = np.clip(np.round(groups / scale[..., None]), -7, 7).reshape(padded.shape)[..., :depth]
    return (
        np.moveaxis(codes, -1, axis).astype(np.int8),
        np.ascontiguousarray(np.moveaxis(scale, -1, axis)),
    )


CODECS: dict[int, Callable[[np.ndarray, int, bool], tuple[np.ndarray, np.ndarray]]] = {
    8: linear_codes(8),
    4: linear_codes(4),
    2: _ternary,
    1: _binary,
}
