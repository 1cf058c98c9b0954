"""Stored float weights rewritten as integer codes behind a DequantizeLinear, wherever they
live (initializer, Constant node, subgraph): the weight-only paths of quantization. INT8 and
INT4 codes use ONNX types; ternary/binary codes are packed into bytes and unpacked by a chain
of standard ops, since ONNX has no 2/1-bit type."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compressor_gui.core.graph import find_stored
from compressor_gui.core.ops import weight_axes
from compressor_gui.core.plan import INT4_BLOCK_SIZE
from compressor_gui.core.quant_ops import CODECS, int4_blocks


def encode_stored(
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
    found = find_stored(root, weight)
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
