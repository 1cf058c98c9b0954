"""Torch builders for the op table (`ops.OPS[...].torch`): each turns one ONNX node into a
torch module computing what onnxruntime computes, so a graph can be trained with autograd.

A builder reads the node's attributes and stored inputs once (`NodeView`) and raises an
`UnsupportedOpError` naming the node for a mode it does not cover, rather than computing
something else. Weights arrive as forward arguments, so they stay the graph's tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper
from torch import nn

from compressor_gui.core.graph import NodeView

_INT64_MAX = 2**63 - 1


class Op(nn.Module):
    """A stateless op: forward calls `function` on the node's inputs."""

    def __init__(self, function: Callable, name: str = "") -> None:
        super().__init__()
        self.function = function
        self.op_name = name

    def forward(self, *inputs):
        return self.function(*inputs)

    def extra_repr(self) -> str:
        return self.op_name


def _ints(tensor: torch.Tensor | None) -> list[int] | None:
    return None if tensor is None else [int(v) for v in tensor.reshape(-1).tolist()]


def _pair_pads(pads: Sequence[int]) -> list[int]:
    """ONNX pads [b1, b2, ..., e1, e2, ...] as torch F.pad's (b_last, e_last, ..., b1, e1)."""
    half = len(pads) // 2
    out: list[int] = []
    for axis in reversed(range(half)):
        out += [pads[axis], pads[axis + half]]
    return out


def _spatial_pads(view: NodeView, x: torch.Tensor, kernel, strides, dilations) -> list[int]:
    """Explicit pads, or the ones SAME_UPPER / SAME_LOWER imply for this input's size."""
    mode = view.attr("auto_pad", "NOTSET")
    spatial = x.shape[2:]
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
            out = -(-size // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
            small, large = total // 2, total - total // 2
            begins.append(small if mode == "SAME_UPPER" else large)
            ends.append(large if mode == "SAME_UPPER" else small)
        return begins + ends
    if mode == "VALID":
        return [0] * (2 * len(spatial))
    return list(view.attr("pads", [0] * (2 * len(spatial))))


def _window(view: NodeView, ndim: int):
    kernel = list(view.attr("kernel_shape", []))
    rank = len(kernel) or ndim
    strides = list(view.attr("strides", [1] * rank))
    dilations = list(view.attr("dilations", [1] * rank))
    return kernel, strides, dilations


def _plain(fn: Callable, op_type: str) -> Callable[[NodeView], nn.Module]:
    """The builder of an op that is one torch function of its inputs, with no attribute."""

    def build(view: NodeView) -> nn.Module:
        return Op(fn, op_type)

    return build


# --- layers with weights -----------------------------------------------------------------------


def conv(view: NodeView) -> nn.Module:
    group = view.attr("group", 1)
    functions = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}

    def run(x, weight, bias=None):
        rank = weight.dim() - 2
        if rank not in functions:
            raise view.unsupported(f"{rank}-D convolution")
        kernel, strides, dilations = _window(view, rank)
        kernel = kernel or list(weight.shape[2:])
        pads = _spatial_pads(view, x, kernel, strides, dilations)
        if pads[:rank] != pads[rank:]:
            x, pads = F.pad(x, _pair_pads(pads)), [0] * (2 * rank)
        return functions[rank](x, weight, bias, strides, pads[:rank], dilations, group)

    return Op(run, "Conv")


def conv_transpose(view: NodeView) -> nn.Module:
    group = view.attr("group", 1)
    functions = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
    if view.attr("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or view.attr("output_shape"):
        raise view.unsupported("auto_pad / output_shape are not supported; give explicit pads")

    def run(x, weight, bias=None):
        rank = weight.dim() - 2
        _, strides, dilations = _window(view, rank)
        pads = list(view.attr("pads", [0] * (2 * rank)))
        if pads[:rank] != pads[rank:]:
            raise view.unsupported("asymmetric pads")
        extra = list(view.attr("output_padding", [0] * rank))
        return functions[rank](x, weight, bias, strides, pads[:rank], extra, group, dilations)

    return Op(run, "ConvTranspose")


def gemm(view: NodeView) -> nn.Module:
    alpha, beta = view.attr("alpha", 1.0), view.attr("beta", 1.0)
    trans_a, trans_b = view.attr("transA", 0), view.attr("transB", 0)

    def run(a, b, c=None):
        a = a.transpose(0, 1) if trans_a else a
        b = b.transpose(0, 1) if trans_b else b
        y = a @ b
        y = y * alpha if alpha != 1.0 else y
        return y if c is None else y + (c * beta if beta != 1.0 else c)

    return Op(run, "Gemm")


matmul = _plain(torch.matmul, "MatMul")


class BatchNorm(nn.Module):
    """ONNX BatchNormalization; in training mode it uses batch statistics and updates the
    running ones (the graph's mean/var inputs) in place, as torch's BatchNorm does."""

    def __init__(self, epsilon: float, momentum: float) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.momentum = 1.0 - momentum  # ONNX: running = running * m + batch * (1 - m)

    def forward(self, x, scale, bias, mean, var):
        return F.batch_norm(x, mean, var, scale, bias, self.training, self.momentum, self.epsilon)


def batch_norm(view: NodeView) -> nn.Module:
    if len(view.node.output) > 1:
        raise view.unsupported("training-mode outputs (running mean/var) are not supported")
    return BatchNorm(view.attr("epsilon", 1e-5), view.attr("momentum", 0.9))


def layer_norm(view: NodeView) -> nn.Module:
    axis, epsilon = view.attr("axis", -1), view.attr("epsilon", 1e-5)
    if len(view.node.output) > 1:
        raise view.unsupported("mean / inverse-std outputs are not supported")

    def run(x, scale, bias=None):
        shape = x.shape[axis:]
        return F.layer_norm(x, shape, scale.expand(shape), None if bias is None else bias, epsilon)

    return Op(run, "LayerNormalization")


prelu = _plain(lambda x, slope: torch.where(x >= 0, x, x * slope), "PRelu")


# --- activations -------------------------------------------------------------------------------


relu = _plain(F.relu, "Relu")


def leaky_relu(view: NodeView) -> nn.Module:
    alpha = view.attr("alpha", 0.01)
    return Op(lambda x: F.leaky_relu(x, alpha), "LeakyRelu")


def elu(view: NodeView) -> nn.Module:
    alpha = view.attr("alpha", 1.0)
    return Op(lambda x: F.elu(x, alpha), "Elu")


sigmoid = _plain(torch.sigmoid, "Sigmoid")


def hard_sigmoid(view: NodeView) -> nn.Module:
    alpha, beta = view.attr("alpha", 0.2), view.attr("beta", 0.5)
    return Op(lambda x: torch.clamp(alpha * x + beta, 0.0, 1.0), "HardSigmoid")


hard_swish = _plain(F.hardswish, "HardSwish")
tanh = _plain(torch.tanh, "Tanh")
softplus = _plain(F.softplus, "Softplus")


def gelu(view: NodeView) -> nn.Module:
    approximate = view.attr("approximate", "none")
    return Op(lambda x: F.gelu(x, approximate=approximate), "Gelu")


erf = _plain(torch.erf, "Erf")


def clip(view: NodeView) -> nn.Module:
    if view.opset < 11:
        low, high = view.attr("min", None), view.attr("max", None)
        return Op(lambda x: torch.clamp(x, low, high), "Clip")
    return Op(lambda x, low=None, high=None: torch.clamp(x, low, high), "Clip")


def _softmax_like(view: NodeView, function: Callable, name: str) -> nn.Module:
    """Opset 13+: along `axis` (default -1). Before: the input is seen as 2-D, flattened
    from `axis` (default 1) on, and normalized over that flattened part."""
    if view.opset >= 13:
        axis = view.attr("axis", -1)
        return Op(lambda x: function(x, dim=axis), name)
    axis = view.attr("axis", 1)

    def run(x):
        start = axis % x.dim()
        return function(x.flatten(start), dim=-1).reshape(x.shape)

    return Op(run, name)


def softmax(view: NodeView) -> nn.Module:
    return _softmax_like(view, F.softmax, "Softmax")


def log_softmax(view: NodeView) -> nn.Module:
    return _softmax_like(view, F.log_softmax, "LogSoftmax")


# --- pooling -----------------------------------------------------------------------------------


def max_pool(view: NodeView) -> nn.Module:
    functions = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
    ceil_mode = bool(view.attr("ceil_mode", 0))
    if len(view.node.output) > 1:
        raise view.unsupported("the Indices output is not supported")

    def run(x):
        kernel, strides, dilations = _window(view, x.dim() - 2)
        rank = len(kernel)
        pads = _spatial_pads(view, x, kernel, strides, dilations)
        fits = pads[:rank] == pads[rank:] and all(
            p <= k // 2 for p, k in zip(pads[:rank], kernel, strict=True)
        )
        if not fits:
            x, pads = F.pad(x, _pair_pads(pads), value=float("-inf")), [0] * (2 * rank)
        return functions[rank](x, kernel, strides, pads[:rank], dilations, ceil_mode)

    return Op(run, "MaxPool")


def average_pool(view: NodeView) -> nn.Module:
    functions = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
    ceil_mode = bool(view.attr("ceil_mode", 0))
    include_pad = bool(view.attr("count_include_pad", 0))

    def run(x):
        kernel, strides, dilations = _window(view, x.dim() - 2)
        rank = len(kernel)
        if any(d != 1 for d in dilations):
            raise view.unsupported("dilated average pooling")
        pads = _spatial_pads(view, x, kernel, strides, dilations)
        if pads[:rank] != pads[rank:] or any(
            p > k // 2 for p, k in zip(pads[:rank], kernel, strict=True)
        ):
            raise view.unsupported(f"pads {pads} (asymmetric or over half the kernel)")
        return functions[rank](x, kernel, strides, pads[:rank], ceil_mode, include_pad)

    return Op(run, "AveragePool")


global_average_pool = _plain(
    lambda x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True), "GlobalAveragePool"
)
global_max_pool = _plain(
    lambda x: x.amax(dim=tuple(range(2, x.dim())), keepdim=True), "GlobalMaxPool"
)


def reduce_mean(view: NodeView) -> nn.Module:
    keep = bool(view.attr("keepdims", 1))
    attr_axes = view.attr("axes", None)

    def run(x, axes=None):
        chosen = attr_axes if view.opset < 18 else _ints(axes)
        dims = tuple(range(x.dim())) if not chosen else tuple(chosen)
        return x.mean(dim=dims, keepdim=keep)

    return Op(run, "ReduceMean")


# --- arithmetic --------------------------------------------------------------------------------


add = _plain(torch.add, "Add")
sub = _plain(torch.sub, "Sub")
mul = _plain(torch.mul, "Mul")


def div(view: NodeView) -> nn.Module:
    def run(a, b):
        if a.is_floating_point() or b.is_floating_point():
            return a / b
        return torch.div(a, b, rounding_mode="trunc")  # ONNX integer division truncates

    return Op(run, "Div")


pow = _plain(torch.pow, "Pow")
sqrt = _plain(torch.sqrt, "Sqrt")
exp = _plain(torch.exp, "Exp")
neg = _plain(torch.neg, "Neg")
reciprocal = _plain(torch.reciprocal, "Reciprocal")


# --- shapes and plumbing -----------------------------------------------------------------------


def concat(view: NodeView) -> nn.Module:
    axis = view.attr("axis")
    return Op(lambda *xs: torch.cat(xs, dim=axis), "Concat")


def reshape(view: NodeView) -> nn.Module:
    allow_zero = bool(view.attr("allowzero", 0))

    def run(x, shape):
        dims = _ints(shape)
        if not allow_zero:
            dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
        return x.reshape(dims)

    return Op(run, "Reshape")


def flatten(view: NodeView) -> nn.Module:
    axis = view.attr("axis", 1)

    def run(x):
        split = axis % x.dim() if x.dim() else 0
        return x.reshape(int(torch.tensor(x.shape[:split]).prod()), -1)

    return Op(run, "Flatten")


def transpose(view: NodeView) -> nn.Module:
    perm = view.attr("perm", None)
    return Op(lambda x: x.permute(perm or tuple(reversed(range(x.dim())))), "Transpose")


def squeeze(view: NodeView) -> nn.Module:
    attr_axes = view.attr("axes", None)

    def run(x, axes=None):
        chosen = attr_axes if view.opset < 13 else _ints(axes)
        if chosen is None:
            return x.squeeze()
        return x.squeeze(tuple(a % x.dim() for a in chosen))

    return Op(run, "Squeeze")


def unsqueeze(view: NodeView) -> nn.Module:
    attr_axes = view.attr("axes", None)

    def run(x, axes=None):
        chosen = attr_axes if view.opset < 13 else _ints(axes)
        rank = x.dim() + len(chosen)
        for axis in sorted(a % rank for a in chosen):
            x = x.unsqueeze(axis)
        return x

    return Op(run, "Unsqueeze")


def shape(view: NodeView) -> nn.Module:
    start, end = view.attr("start", 0), view.attr("end", None)
    return Op(lambda x: torch.tensor(x.shape[start:end], dtype=torch.int64), "Shape")


def gather(view: NodeView) -> nn.Module:
    axis = view.attr("axis", 0)

    def run(data, indices):
        dim = axis % data.dim()
        flat = indices.reshape(-1) % data.shape[dim]
        picked = data.index_select(dim, flat)
        return picked.reshape(*data.shape[:dim], *indices.shape, *data.shape[dim + 1 :])

    return Op(run, "Gather")


def slice_(view: NodeView) -> nn.Module:
    def run(x, starts=None, ends=None, axes=None, steps=None):
        if view.opset < 10:
            starts_, ends_ = view.attr("starts"), view.attr("ends")
            axes_, steps_ = view.attr("axes", None), None
        else:
            starts_, ends_, axes_, steps_ = _ints(starts), _ints(ends), _ints(axes), _ints(steps)
        axes_ = axes_ or list(range(len(starts_)))
        steps_ = steps_ or [1] * len(starts_)
        index = [slice(None)] * x.dim()
        for start, end, axis, step in zip(starts_, ends_, axes_, steps_, strict=True):
            if step < 1:
                raise view.unsupported("negative or zero slice steps are not supported")
            size = x.shape[axis]
            start = max(0, min(size, start + size if start < 0 else start))
            end = max(0, min(size, end + size if end < 0 else min(end, _INT64_MAX)))
            index[axis] = slice(start, end, step)
        return x[tuple(index)]

    return Op(run, "Slice")


def split(view: NodeView) -> nn.Module:
    """Sizes from the `split` attribute (opset < 13) or input (13+), else equal parts: one
    per output, or `num_outputs` (18+) of ceil(length / parts) with a smaller last one."""
    axis = view.attr("axis", 0)
    attr_sizes = view.attr("split", None)
    parts = view.attr("num_outputs", None) or len(view.node.output)

    def run(x, sizes=None):
        chosen = list(attr_sizes or []) if view.opset < 13 else _ints(sizes)
        if chosen:
            return tuple(torch.split(x, chosen, dim=axis))
        return tuple(torch.split(x, -(-x.shape[axis] // parts), dim=axis))

    return Op(run, "Split")


def cast(view: NodeView) -> nn.Module:
    numpy_type = helper.tensor_dtype_to_np_dtype(view.attr("to", TensorProto.FLOAT))
    target = torch.from_numpy(np.zeros(0, numpy_type)).dtype
    return Op(lambda x: x.to(target), "Cast")


identity = _plain(lambda x: x, "Identity")


def dropout(view: NodeView) -> nn.Module:
    """Inference semantics (the student keeps the graph's behaviour; no random masks)."""
    if len(view.node.output) > 1:
        return Op(lambda x, *_: (x, torch.ones_like(x, dtype=torch.bool)), "Dropout")
    return Op(lambda x, *_: x, "Dropout")


def pad(view: NodeView) -> nn.Module:
    modes = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}
    mode = view.attr("mode", "constant")
    if mode not in modes:
        raise view.unsupported(f"pad mode {mode!r}")

    def run(x, pads=None, value=None, axes=None):
        if view.opset < 11:
            amounts, fill = list(view.attr("pads")), view.attr("value", 0.0)
        else:
            amounts = _ints(pads)
            fill = 0.0 if value is None else float(value.reshape(-1)[0])
        if axes is not None:
            chosen = [a % x.dim() for a in _ints(axes)]
            full = [0] * (2 * x.dim())
            for i, axis in enumerate(chosen):
                full[axis], full[axis + x.dim()] = amounts[i], amounts[i + len(chosen)]
            amounts = full
        torch_pads = _pair_pads(amounts)
        while len(torch_pads) > 2 and torch_pads[-2:] == [0, 0]:
            torch_pads = torch_pads[:-2]  # leading unpadded axes (reflect/edge need this)
        if mode == "constant":
            return F.pad(x, torch_pads, "constant", fill)
        return F.pad(x, torch_pads, modes[mode])

    return Op(run, "Pad")


def resize(view: NodeView) -> nn.Module:
    """Nearest (asymmetric, floor) and (bi/tri)linear (half_pixel, pytorch_half_pixel or
    align_corners) over the spatial axes, the modes torch's interpolate computes exactly."""
    mode = view.attr("mode", "nearest")
    transform = view.attr("coordinate_transformation_mode", "half_pixel")
    nearest_mode = view.attr("nearest_mode", "round_prefer_floor")
    if mode == "nearest" and (transform, nearest_mode) == ("asymmetric", "floor"):
        torch_mode, corners = "nearest", None
    elif mode == "linear" and transform in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        torch_mode, corners = "linear", transform == "align_corners"
    else:
        raise view.unsupported(
            f"mode {mode!r} with {transform!r} coordinates"
            + (f" and {nearest_mode!r} rounding" if mode == "nearest" else "")
        )
    linear_modes = {3: "linear", 4: "bilinear", 5: "trilinear"}

    def run(x, roi=None, scales=None, sizes=None):
        if view.opset < 11:
            scales, sizes = roi, None  # opset 10: (X, scales)
        chosen = torch_mode if torch_mode == "nearest" else linear_modes.get(x.dim())
        if chosen is None:
            raise view.unsupported(f"linear resize of a {x.dim()}-D tensor")
        if sizes is not None and sizes.numel():
            dims = _ints(sizes)
            if dims[:2] != list(x.shape[:2]):
                raise view.unsupported("resizing the batch or channel axis")
            return F.interpolate(x, size=dims[2:], mode=chosen, align_corners=corners)
        factors = [float(v) for v in scales.reshape(-1).tolist()]
        if factors[:2] != [1.0, 1.0]:
            raise view.unsupported("resizing the batch or channel axis")
        return F.interpolate(x, scale_factor=factors[2:], mode=chosen, align_corners=corners)

    return Op(run, "Resize")
