"""Sensitivity sweep and automatic plan, measured side by side in one run.

1. A generated 50-layer CNN (49 Conv 3x3 + Gemm), 256 samples, 4 options per layer: the
   measured sweep's wall time (2 workers), then the rerun from the on-disk cache.
2. The demo model: the automatic plan under "6x smaller, <= 1 point top-1 drop", verified by
   really building each plan (compress_job) and evaluating it on the held-out split, next to
   uniform INT8/INT4 and the plan chosen at uniform INT8's size.
Run: .venv/bin/python benchmarks/sensitivity.py
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def generated_model(depth: int = 50, channels: int = 16, size: int = 8) -> onnx.ModelProto:
    """depth-1 Conv+Relu layers (He-initialized, so activations neither vanish nor explode)
    then global pooling and a Gemm classifier."""
    rng = np.random.default_rng(0)
    nodes, weights, value = [], [], "x"
    for index in range(depth - 1):
        w = rng.standard_normal((channels, channels, 3, 3)) * np.sqrt(2 / (channels * 9))
        weights.append(numpy_helper.from_array(w.astype(np.float32), f"w{index}"))
        nodes.append(
            helper.make_node(
                "Conv", [value, f"w{index}"], [f"c{index}"], name=f"conv{index}", pads=[1] * 4
            )
        )
        nodes.append(helper.make_node("Relu", [f"c{index}"], [f"r{index}"], name=f"relu{index}"))
        value = f"r{index}"
    nodes.append(helper.make_node("GlobalAveragePool", [value], ["pool"], name="pool"))
    nodes.append(helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"))
    fc = rng.standard_normal((10, channels)).astype(np.float32)
    weights.append(numpy_helper.from_array(fc, "fc_w"))
    nodes.append(helper.make_node("Gemm", ["flat", "fc_w"], ["y"], name="fc", transB=1))
    graph = helper.make_graph(
        nodes,
        "deep50",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def sweep_timing() -> list[str]:
    from compressor_gui.core.data import dataset_from_arrays
    from compressor_gui.core.jobs import run_job
    from compressor_gui.core.sensitivity import options_named, sensitivity_job

    model = generated_model()
    x = np.random.default_rng(1).standard_normal((256, 16, 8, 8)).astype(np.float32)
    dataset = dataset_from_arrays({"x": x}, model)
    options = options_named(["int8", "int4", "int2", "prune50"])
    times, tables = [], []
    for _ in range(2):
        start = time.perf_counter()
        tables.append(run_job(sensitivity_job(model, dataset, options=options, workers=2)))
        times.append(time.perf_counter() - start)
    table = tables[0]
    worst = max(table.points, key=lambda p: p.drop)
    return [
        f"generated model: {len(table.layers)} layers x {len(table.options)} options = "
        f"{len(table.points)} points, 256 samples, metric {table.metric}",
        f"  measured sweep (2 workers): {times[0]:.1f} s   (target <= 60 s)",
        f"  rerun from cache:           {times[1]:.3f} s   (target < 1 s)",
        f"  rerun identical: {tables[1].points == table.points}; worst point {worst.layer} "
        f"{worst.option}: drop {worst.drop:.1f} pts",
    ]


def demo_autoplan() -> list[str]:
    from compressor_gui.cli.autoplan import format_result
    from compressor_gui.core.data import demo_dataset
    from compressor_gui.core.jobs import run_job
    from compressor_gui.core.model import load_model
    from compressor_gui.core.search import Budget, autoplan_job

    loaded = load_model("resources/demo.onnx")
    evald = demo_dataset(loaded.onnx_model, "eval")
    calib = demo_dataset(loaded.onnx_model, "calib")
    start = time.perf_counter()
    result = run_job(
        autoplan_job(loaded, evald, Budget(size_ratio=1 / 6, max_drop=1.0), calibration=calib)
    )
    seconds = time.perf_counter() - start
    by_label = {c.label: c for c in result.candidates}
    chosen, int8 = result.chosen, by_label["uniform INT8"]
    at_int8 = result.at_int8_size
    lines = [
        f"demo model: autoplan (sweep + {len(result.candidates)} plans built and evaluated on "
        f"{len(evald)} held-out samples) in {seconds:.1f} s",
        format_result(result, "(not written)"),
        f"  chosen: {result.original_size_bytes / chosen.predicted_size_bytes:.2f}x smaller "
        f"(predicted weights), file {chosen.measured_size_bytes} bytes vs the FP32 file "
        f"{loaded.file_size_bytes} bytes = "
        f"{loaded.file_size_bytes / chosen.measured_size_bytes:.2f}x;"
        f" measured drop {chosen.measured_drop:.2f} pts   (target >= 6x, <= 1 pt)",
    ]
    if at_int8 is not None:
        lines.append(
            f"  at uniform INT8's size ({at_int8.label}, file {at_int8.measured_size_bytes} B vs "
            f"{int8.measured_size_bytes} B): auto {at_int8.measured_value:.2%} vs uniform INT8 "
            f"{int8.measured_value:.2%}   (target: auto >= INT8)"
        )
    return lines


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        os.environ["COMPRESSOR_GUI_CACHE_DIR"] = cache
        left, right = sweep_timing(), demo_autoplan()
    print("\n".join(left))
    print()
    print("\n".join(right))


if __name__ == "__main__":
    main()
