"""Seeded torch models exported to ONNX, for tests and benchmarks/ that need realistic graphs
(residual adds, BatchNorm, depthwise convs, attention, concat) without downloading anything.

Each generator takes `path`: a file ending in .onnx, or a folder in which the file is named
after the generator and its arguments. It returns the file's path. Exports use the TorchScript
exporter (readable node names like /layer1/layer1.0/conv1/Conv), opset 17, one input named
"input" with a dynamic batch dimension "batch"; weights are initializers.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

OPSET = 17
SEED = 0


def _conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class _ResNet18(nn.Module):
    def __init__(self, width: int, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, c_in = [], width
        for i, c_out in enumerate([width, 2 * width, 4 * width, 8 * width]):
            stride = 1 if i == 0 else 2
            stages.append(
                nn.Sequential(_BasicBlock(c_in, c_out, stride), _BasicBlock(c_out, c_out, 1))
            )
            c_in = c_out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class _MobileNetV1(nn.Module):
    # (output channels, stride) of the 13 depthwise-separable blocks of MobileNetV1.
    BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)]
    BLOCKS += [(512, 1)] * 5 + [(1024, 2), (1024, 1)]

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers, c_in = [_conv_bn(3, 32, 3, 2)], 32
        for c_out, stride in self.BLOCKS:
            layers += [_conv_bn(c_in, c_in, 3, stride, groups=c_in), _conv_bn(c_in, c_out, 1)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


class _EncoderBlock(nn.Module):
    """Pre-norm transformer encoder block with hand-written softmax attention. Shapes other
    than batch are fixed at build time, so the graph has constant Reshape targets."""

    def __init__(self, seq: int, dim: int, heads: int):
        super().__init__()
        self.seq, self.dim, self.heads = seq, dim, heads
        self.scale = (dim // heads) ** -0.5
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)
        with torch.no_grad():  # distinct norms, as trained ones are (and no deduplication)
            for norm in (self.norm1, self.norm2):
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.normal_(0.0, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(self.norm1(x)).reshape(-1, self.seq, 3, self.heads, self.dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attn = torch.softmax(q @ k.transpose(-2, -1) * self.scale, dim=-1)
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(-1, self.seq, self.dim))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class _TextEncoder(nn.Module):
    """BERT-style: token and position embeddings, encoder blocks, final LayerNorm, mean-pooled
    classification head. Input: int64 token ids [batch, seq]."""

    def __init__(self, vocab: int, seq: int, dim: int, heads: int, layers: int, classes: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.position = nn.Parameter(0.02 * torch.randn(1, seq, dim))
        self.blocks = nn.Sequential(*(_EncoderBlock(seq, dim, heads) for _ in range(layers)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.blocks(self.embed(tokens) + self.position))
        return self.head(x.mean(dim=1))


class _SmallConcatCNN(nn.Module):
    """Two branches of different widths joined by Concat feed Flatten -> Gemm directly, so
    pruning a branch channel must drop the matching slice of the Gemm's input features."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = _conv_bn(3, 16, 3, 2)
        self.branch_a = _conv_bn(16, 12, 3, 2)
        self.branch_b = _conv_bn(16, 4, 1, 2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear((12 + 4) * 8 * 8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.fc(self.flatten(torch.cat([self.branch_a(x), self.branch_b(x)], dim=1)))


def resnet18_style(
    path: str | os.PathLike[str], input_size: int = 224, width: int = 64, *, keep_bn: bool = True
) -> Path:
    """ResNet-18 (BasicBlocks [2,2,2,2], 1000 classes); keep_bn=False folds BN into Conv."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = _with_bn_statistics(_ResNet18(width), (3, input_size, input_size))
        suffix = "bn" if keep_bn else "fused"
        target = _target(path, f"resnet18_style_{input_size}_w{width}_{suffix}")
        return _export(model, (3, input_size, input_size), target, fold_constants=not keep_bn)


def mobilenet_v1_style(
    path: str | os.PathLike[str], input_size: int = 224, *, keep_bn: bool = True
) -> Path:
    """MobileNetV1: 13 depthwise-separable blocks, each Conv followed by BN and ReLU."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = _with_bn_statistics(_MobileNetV1(), (3, input_size, input_size))
        suffix = "bn" if keep_bn else "fused"
        target = _target(path, f"mobilenet_v1_style_{input_size}_{suffix}")
        return _export(model, (3, input_size, input_size), target, fold_constants=not keep_bn)


def transformer_block(
    path: str | os.PathLike[str], seq: int = 32, dim: int = 64, heads: int = 4
) -> Path:
    """One encoder block on input [batch, seq, dim]: LayerNorm, MatMul with constant weights,
    softmax attention, GELU MLP, residual adds."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        target = _target(path, f"transformer_block_s{seq}_d{dim}_h{heads}")
        return _export(
            _EncoderBlock(seq, dim, heads).eval(),
            (seq, dim),
            target,
            fold_constants=True,
            output="output",
        )


def text_encoder(
    path: str | os.PathLike[str],
    vocab: int = 2000,
    seq: int = 32,
    dim: int = 128,
    layers: int = 4,
    classes: int = 8,
) -> Path:
    """A small transformer text encoder on int64 token ids [batch, seq] -> logits [batch,
    classes]: Gather embeddings, `layers` encoder blocks (4 heads), mean pool, Linear."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = _TextEncoder(vocab, seq, dim, 4, layers, classes).eval()
        target = _target(path, f"text_encoder_v{vocab}_s{seq}_d{dim}_l{layers}")
        return _export(model, (seq,), target, fold_constants=True, tokens=vocab)


def small_cnn_with_concat(path: str | os.PathLike[str]) -> Path:
    """Input [batch, 3, 32, 32] -> stem -> two branches -> Concat -> Flatten -> Gemm(10)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = _with_bn_statistics(_SmallConcatCNN(), (3, 32, 32))
        return _export(
            model, (3, 32, 32), _target(path, "small_cnn_with_concat"), fold_constants=False
        )


def _with_bn_statistics(model: nn.Module, sample_shape: tuple[int, ...]) -> nn.Module:
    """Give BatchNorm non-trivial affine weights and running statistics measured on random
    batches, as a trained net has; defaults (1, 0, mean 0, var 1) would make fusion a no-op."""
    batch_norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in batch_norms:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.1)
            bn.momentum = None  # cumulative average over the batches below
        model.train()
        for _ in range(2):
            model(torch.randn(2, *sample_shape))
    for bn in batch_norms:
        bn.momentum = 0.1
    return model.eval()


def _target(path: str | os.PathLike[str], stem: str) -> Path:
    path = Path(path)
    return path if path.suffix == ".onnx" else path / f"{stem}.onnx"


def _export(
    model: nn.Module,
    sample_shape: tuple[int, ...],
    target: Path,
    *,
    fold_constants: bool,
    output: str = "logits",
    tokens: int = 0,
) -> Path:
    """Without constant folding the exporter keeps BatchNormalization nodes; with it, an eval
    model's BN is folded into the preceding Conv and Linear weights are pre-transposed.
    With `tokens` (a vocabulary size) the sample input is int64 token ids, not floats.
    Written to a temp file, then renamed."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter, on purpose
        torch.onnx.export(
            model,
            (
                torch.randint(tokens, (1, *sample_shape))
                if tokens
                else torch.randn(1, *sample_shape),
            ),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=["input"],
            output_names=[output],
            dynamic_axes={"input": {0: "batch"}, output: {0: "batch"}},
            do_constant_folding=fold_constants,
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def trained_resnet18_style(
    path: str | os.PathLike[str],
    inputs: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int,
    width: int = 64,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    threads: int = 2,
    log: Callable[[str], None] = print,
) -> Path:
    """ResNet-18 (as `resnet18_style`, with as many classes as `labels` has) trained from a
    seeded start on `inputs` [N, 3, H, W] with cross-entropy: Adam, cosine decay to 0, the
    order of samples shuffled per epoch. A trained net's weights and BN statistics, unlike
    random ones, say how compression would hurt a real model."""
    classes = int(labels.max()) + 1
    size = inputs.shape[-1]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            model = _ResNet18(width, classes)
            optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
            steps = epochs * -(-len(inputs) // batch_size)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
            x, y = torch.from_numpy(inputs), torch.from_numpy(labels)
            for epoch in range(epochs):
                model.train()
                order, losses, right = torch.randperm(len(x)), [], 0
                for start in range(0, len(x), batch_size):
                    batch = order[start : start + batch_size]
                    logits = model(x[batch])
                    loss = F.cross_entropy(logits, y[batch])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    losses.append(loss.item())
                    right += int((logits.argmax(1) == y[batch]).sum())
                log(
                    f"epoch {epoch + 1}/{epochs}: loss {sum(losses) / len(losses):.3f}, "
                    f"training top-1 {100 * right / len(x):.1f}%"
                )
        target = _target(path, f"resnet18_style_{size}_w{width}_trained_c{classes}")
        return _export(model.eval(), (3, size, size), target, fold_constants=False)
    finally:
        torch.set_num_threads(previous)
