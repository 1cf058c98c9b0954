"""Train the bundled demo model: a small ResNet-style CNN on scikit-learn's digits.

The demo has to be real (trained, with held-out data to measure accuracy on) and worth
compressing (BatchNorm to fuse, residual adds and depthwise convs to prune), yet small
enough to ship and to rebuild on two CPU cores in a couple of minutes. Run from the repo
root: `.venv/bin/python scripts/train_demo.py`. It overwrites resources/demo.* atomically.

Preprocessing (recorded in demo.json): the 8x8 images (pixel values 0..16) are divided by
16, upsampled to 32x32 with bilinear interpolation (align_corners=False), then normalised
with the training split's mean and std.
"""

from __future__ import annotations

import io
import json
import os
import random
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from compressor_gui.core.model import ONNX_OPSET, SHAPES_EXTRA_FILE

SEED = 0
EPOCHS = 12
BATCH_SIZE = 64
LEARNING_RATE = 3e-3
EVAL_FRACTION = 0.25
CALIB_SAMPLES = 256
INPUT_SIZE = 32
MIN_ACCURACY = 0.97
RESOURCES = Path(__file__).resolve().parent.parent / "resources"
COMMAND = ".venv/bin/python scripts/train_demo.py"


class ConvBN(nn.Module):
    """Conv + BatchNorm as named submodules, so ONNX nodes read /block1/conv1/Conv etc."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class ResidualBlock(nn.Module):
    """ResNet BasicBlock; a 1x1 strided projection shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.proj = ConvBN(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.proj is None else self.proj(x)
        return F.relu(out + shortcut)


class DepthwiseSeparable(nn.Module):
    """MobileNet-style block: depthwise 3x3 (groups=channels) + BN + ReLU, pointwise 1x1."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.depthwise = ConvBN(c_in, c_in, 3, groups=c_in)
        self.pointwise = ConvBN(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.pointwise(F.relu(self.depthwise(x))))


class DemoNet(nn.Module):
    """32x32 -> stem(32) -> res(32) -> res(64,/2) -> res(128,/2) -> dw-sep(128) -> GAP -> 10."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = ConvBN(1, 32, 3)
        self.block1 = ResidualBlock(32, 32)
        self.block2 = ResidualBlock(32, 64, stride=2)
        self.block3 = ResidualBlock(64, 128, stride=2)
        self.dwsep = DepthwiseSeparable(128, 128)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x = self.dwsep(self.block3(self.block2(self.block1(x))))
        return self.fc(self.flatten(self.pool(x)))


def seed_everything(seed: int) -> None:
    """Same seed, same weights and same files on every run (CPU only)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def load_data(seed: int) -> dict[str, np.ndarray]:
    """Digits split stratified into train/eval, upsampled and normalised (see module doc)."""
    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    images = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear")
    labels = digits.target.astype(np.int64)
    idx_train, idx_eval = train_test_split(
        np.arange(len(labels)), test_size=EVAL_FRACTION, stratify=labels, random_state=seed
    )
    x = images.numpy()
    mean = float(x[idx_train].mean())
    std = float(x[idx_train].std())
    x = ((x - mean) / std).astype(np.float32)
    return {
        "x_train": x[idx_train],
        "y_train": labels[idx_train],
        "x_eval": x[idx_eval],
        "y_eval": labels[idx_eval],
        "mean": np.float32(mean),
        "std": np.float32(std),
    }


def random_shift(x: torch.Tensor, background: float, gen: torch.Generator) -> torch.Tensor:
    """Light augmentation: translate each image by up to 2 pixels, filling with background."""
    pad = 2
    padded = F.pad(x, (pad, pad, pad, pad), value=background)
    offsets = torch.randint(0, 2 * pad + 1, (len(x), 2), generator=gen)
    return torch.stack(
        [
            p[:, i : i + INPUT_SIZE, j : j + INPUT_SIZE]
            for p, (i, j) in zip(padded, offsets.tolist(), strict=True)
        ]
    )


def train(model: nn.Module, data: dict[str, np.ndarray], seed: int) -> None:
    """AdamW with a one-cycle schedule and label smoothing; a dozen epochs are plenty."""
    x = torch.from_numpy(data["x_train"])
    y = torch.from_numpy(data["y_train"])
    background = float(-data["mean"] / data["std"])
    gen = torch.Generator().manual_seed(seed)
    steps_per_epoch = (len(x) + BATCH_SIZE - 1) // BATCH_SIZE
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, LEARNING_RATE, total_steps=EPOCHS * steps_per_epoch
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    model.train()
    for epoch in range(EPOCHS):
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for start in range(0, len(x), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            loss = loss_fn(model(random_shift(x[batch], background, gen)), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
        print(f"epoch {epoch + 1}/{EPOCHS}: loss {total / len(x):.4f}", flush=True)
    model.eval()


def export_onnx(model: nn.Module) -> bytes:
    """TorchScript exporter without constant folding: in eval mode it would otherwise fold
    each BatchNormalization into its Conv, leaving the fusion feature nothing to do."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The legacy exporter is chosen on purpose (readable node names); skip its notice.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.zeros(1, 1, INPUT_SIZE, INPUT_SIZE),),
            buffer,
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            do_constant_folding=False,
        )
    proto = inline_identity_initializers(onnx.load_from_string(buffer.getvalue()))
    onnx.checker.check_model(proto, full_check=True)
    ops = {node.op_type for node in proto.graph.node}
    if "BatchNormalization" not in ops or ops & {"Constant", "Identity"}:
        raise RuntimeError(f"unexpected ONNX export, ops: {sorted(ops)}")
    return proto.SerializeToString()


def inline_identity_initializers(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Give every weight its own initializer. The BN biases on both sides of a residual Add get
    identical gradients, so they train to identical values; the exporter then deduplicates
    them into `Identity(initializer)` nodes, which would hide those weights from BN fusion."""
    initializers = {init.name: init for init in proto.graph.initializer}
    kept = []
    for node in proto.graph.node:
        if node.op_type == "Identity" and node.input[0] in initializers:
            copy = onnx.TensorProto()
            copy.CopyFrom(initializers[node.input[0]])
            copy.name = node.output[0]
            proto.graph.initializer.append(copy)
        else:
            kept.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(kept)
    return proto


def export_torchscript(model: nn.Module) -> bytes:
    """Scripted eval model carrying its input shape for compressor_gui's loader."""
    buffer = io.BytesIO()
    extra = {SHAPES_EXTRA_FILE: json.dumps([[1, 1, INPUT_SIZE, INPUT_SIZE]])}
    torch.jit.save(torch.jit.script(model), buffer, _extra_files=extra)
    return buffer.getvalue()


def onnx_logits(onnx_bytes: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x})[0]


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file beside `path`, then rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def main() -> None:
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    seed_everything(SEED)
    data = load_data(SEED)
    model = DemoNet()
    params = sum(p.numel() for p in model.parameters())
    print(
        f"DemoNet: {params} parameters, {len(data['x_train'])} train / "
        f"{len(data['x_eval'])} eval images"
    )
    start = time.perf_counter()
    train(model, data, SEED)
    train_seconds = time.perf_counter() - start

    onnx_bytes = export_onnx(model)
    x_eval, y_eval = data["x_eval"], data["y_eval"]
    logits = onnx_logits(onnx_bytes, x_eval)
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(x_eval)).numpy()
    max_diff = float(np.abs(logits - torch_logits).max())
    accuracy = float((logits.argmax(1) == y_eval).mean())
    print(
        f"trained in {train_seconds:.1f} s; ONNX eval top-1 {accuracy:.4f}, "
        f"max |ORT - torch| {max_diff:.2e}"
    )
    if max_diff > 1e-4 or accuracy < MIN_ACCURACY:
        raise SystemExit(f"demo model not good enough: accuracy {accuracy}, diff {max_diff}")

    rng = np.random.default_rng(SEED)
    calib = np.sort(rng.choice(len(data["x_train"]), CALIB_SAMPLES, replace=False))
    metadata = {
        "seed": SEED,
        "params": params,
        "epochs": EPOCHS,
        "train_samples": len(data["x_train"]),
        "eval_samples": len(x_eval),
        "eval_accuracy": round(accuracy, 6),
        "accuracy_measured_with": f"onnxruntime {ort.__version__} CPUExecutionProvider",
        "preprocessing": {
            "input_size": [INPUT_SIZE, INPUT_SIZE],
            "scale": 1 / 16,
            "mean": round(float(data["mean"]), 6),
            "std": round(float(data["std"]), 6),
            "source": "sklearn digits 8x8 upsampled bilinear",
            "formula": "((pixels / 16) upsampled to 32x32 - mean) / std",
        },
        "command": COMMAND,
    }
    RESOURCES.mkdir(exist_ok=True)
    write_atomic(RESOURCES / "demo.onnx", onnx_bytes)
    write_atomic(RESOURCES / "demo.torchscript.pt", export_torchscript(model))
    class_names = np.array([str(i) for i in range(10)])
    write_atomic(
        RESOURCES / "demo_eval.npz", npz_bytes(x=x_eval, y=y_eval, class_names=class_names)
    )
    write_atomic(
        RESOURCES / "demo_calib.npz",
        npz_bytes(x=data["x_train"][calib], y=data["y_train"][calib]),
    )
    write_atomic(RESOURCES / "demo.json", (json.dumps(metadata, indent=2) + "\n").encode())
    print(
        f"wrote demo.onnx, demo.torchscript.pt, demo_eval.npz, demo_calib.npz, demo.json "
        f"to {RESOURCES}"
    )


if __name__ == "__main__":
    main()
