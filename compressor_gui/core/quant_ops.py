"""Per-bit-width weight codecs, and which weight-bearing ops can take them.

Which op keeps its weight where, along which axis its output channels run, and which
onnxruntime paths have a kernel for it (static QDQ INT8, dynamic INT8, MatMulNBits INT4) are
facts of the op table (`ops.OPS`); `rule_for` reads them for a node. `CODECS` turns a float
weight into integer codes and per-channel scales for each bit width; `dequantized(codes,
scale, axis)` is exactly what a DequantizeLinear node produces, so whoever simulates a bit
width (sensitivity sweeps, quantization-aware training) sees the weights the writer stores.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx

from compressor_gui.core.ops import LayerFacts, layer_facts


def rule_for(node: onnx.NodeProto) -> LayerFacts | None:
    """The table's facts of a node whose weights can be stored as integer codes, else None."""
    layer = layer_facts(node)
    return layer if layer is not None and layer.codes else None


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


def dequantized(codes: np.ndarray, scale: np.ndarray, axis: int) -> np.ndarray:
    """The float weight a DequantizeLinear makes of `codes` with one scale per index of `axis`."""
    broadcast = [1] * codes.ndim
    broadcast[axis] = -1
    return codes * scale.reshape(broadcast)


CODECS: dict[int, Callable[[np.ndarray, int, bool], tuple[np.ndarray, np.ndarray]]] = {
    8: linear_codes(8),
    4: linear_codes(4),
    2: _ternary,
    1: _binary,
}
