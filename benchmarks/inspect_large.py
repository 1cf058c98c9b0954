"""Open a ~500 MB ONNX model (weights in external data) and build its inventory.

Prints the time of `load_model` + `build_inventory` next to a bare `onnx.load` of the same
file, in one run. Goal: <= 3 s and a small multiple of the bare load.

    .venv/bin/python benchmarks/inspect_large.py [--megabytes 512] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compressor_gui.core.inventory import build_inventory  # noqa: E402
from compressor_gui.core.model import load_model  # noqa: E402
from tests.modelgen import save_with_external_data  # noqa: E402

WIDTH = 4096  # one 4096x4096 float32 Gemm weight is 64 MiB


def make_large_model(path: Path, megabytes: int) -> int:
    layers = max(1, megabytes * 2**20 // (WIDTH * WIDTH * 4))
    rng = np.random.default_rng(0)
    nodes, weights = [], []
    previous = "x"
    for index in range(layers):
        weight = rng.standard_normal((WIDTH, WIDTH), dtype=np.float32)
        weight[:, : WIDTH // 10] = 0.0  # some sparsity for the counter to find
        weights.append(numpy_helper.from_array(weight, f"W{index}"))
        nodes.append(
            helper.make_node(
                "Gemm", [previous, f"W{index}"], [f"h{index}"], name=f"fc{index}", transB=1
            )
        )
        previous = f"h{index}"
    graph = helper.make_graph(
        nodes,
        "large",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDTH])],
        [helper.make_tensor_value_info(previous, TensorProto.FLOAT, ["batch", WIDTH])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    save_with_external_data(model, path)
    return layers


def timed(function):
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=512)
    parser.add_argument("--dir", default=None, help="where to write the model (default: temp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "large.onnx"
        layers = make_large_model(path, args.megabytes)
        data_bytes = (path.parent / f"{path.name}.data").stat().st_size
        # Warm the page cache once so both timings read from memory, not disk.
        onnx.load(str(path))
        _, bare = timed(lambda: onnx.load(str(path)))
        loaded, open_time = timed(lambda: load_model(path))
        inventory, inventory_time = timed(lambda: build_inventory(loaded.onnx_model))
    ours = open_time + inventory_time
    print(
        f"model: {layers} Gemm layers, {data_bytes / 2**20:.0f} MiB external data, "
        f"{inventory.total_params:,} params, "
        f"sparsity {inventory.total_zeros / inventory.total_params:.1%}"
    )
    print(f"{'bare onnx.load':<32}{bare:8.2f} s")
    print(f"{'load_model':<32}{open_time:8.2f} s")
    print(f"{'build_inventory':<32}{inventory_time:8.2f} s")
    print(
        f"{'load_model + build_inventory':<32}{ours:8.2f} s   ({ours / bare:.1f}x bare load; "
        f"goal <= 3 s: {'met' if ours <= 3 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
