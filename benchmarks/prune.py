"""Pruning and fusion targets, measured side by side in one run.

- 50% of channels in every prunable group (demo model, and a generated 224-input ResNet-18
  style model): MACs <= 0.35x, params <= 0.35x, CPU latency >= 1.5x faster.
- 90% unstructured on the demo: deflate-compressed size <= 0.2x of the dense file, and top-1
  before any fine-tuning; 50% in every layer vs one global threshold; 2:4 on the demo:
  sparse-format size and top-1.
- Conv+BN fold: node count drops, outputs equal within 1e-4, latency not worse.

Latencies are onnxruntime CPU medians; before and after run interleaved (ABBA) round by
round, and speedups are medians of per-round ratios, so load from other users of the machine
hits both alike.

    .venv/bin/python benchmarks/prune.py [--threads 2] [--rounds 30]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from compressor_gui.core.fuse import fuse_model  # noqa: E402
from compressor_gui.core.graph import run_model  # noqa: E402
from compressor_gui.core.prune import (  # noqa: E402
    global_unstructured_ratios,
    prune_channels,
    prune_n_m,
    prune_unstructured,
)
from compressor_gui.core.shapes import random_feed  # noqa: E402
from compressor_gui.core.sizes import size_report  # noqa: E402
from tests.torchmodels import resnet18_style  # noqa: E402

PRUNABLE = ("Conv", "Gemm", "MatMul")


def session(model: onnx.ModelProto, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def paired_latency_ms(
    before: onnx.ModelProto, after: onnx.ModelProto, feed: dict, threads: int, rounds: int
) -> tuple[float, float, float]:
    """Median latency of each model and the median of per-round speedups; each round runs
    before, after, after, before, so drift in the machine's load cancels within a round."""
    first, second = session(before, threads), session(after, threads)
    for sess in (first, second, first, second):  # warm-up
        sess.run(None, feed)

    def timed(sess: ort.InferenceSession) -> float:
        start = time.perf_counter()
        sess.run(None, feed)
        return (time.perf_counter() - start) * 1000

    times_before, times_after, speedups = [], [], []
    for _ in range(rounds):
        a1, b1, b2, a2 = timed(first), timed(second), timed(second), timed(first)
        times_before += [a1, a2]
        times_after += [b1, b2]
        speedups.append((a1 + a2) / (b1 + b2))
    return (
        float(np.median(times_before)),
        float(np.median(times_after)),
        float(np.median(speedups)),
    )


def top1(model: onnx.ModelProto, x: np.ndarray, y: np.ndarray, threads: int) -> float:
    logits = session(model, threads).run(None, {"input": x})[0]
    return float(np.mean(np.argmax(logits, axis=1) == y))


def batch(model: onnx.ModelProto, size: int) -> dict[str, np.ndarray]:
    return {k: np.repeat(v, size, axis=0) for k, v in random_feed(model).items()}


def layers(model: onnx.ModelProto) -> list[str]:
    return [n.name for n in model.graph.node if n.op_type in PRUNABLE]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def channel_section(
    title: str, model: onnx.ModelProto, threads: int, rounds: int
) -> onnx.ModelProto:
    pruned, report = prune_channels(model, dict.fromkeys(layers(model), 0.5))
    macs = report.macs_after / report.macs_before
    params = report.params_after / report.params_before
    before, after = size_report(model), size_report(pruned)
    print(f"\n{title}: 50% of channels in every prunable group ({len(report.groups)} groups)")
    print(f"  skipped (never cut): {', '.join(s.name for s in report.skipped) or 'none'}")
    print(
        f"  MACs    {report.macs_before:>14,} -> {report.macs_after:>14,}  {macs:.3f}x  "
        f"(target <= 0.35x) {verdict(macs <= 0.35)}"
    )
    print(
        f"  params  {report.params_before:>14,} -> {report.params_after:>14,}  {params:.3f}x  "
        f"(target <= 0.35x) {verdict(params <= 0.35)}"
    )
    print(
        f"  dense size    {before.dense_size_bytes:>12,} B -> {after.dense_size_bytes:>12,} B  "
        f"{after.dense_size_bytes / before.dense_size_bytes:.3f}x"
    )
    print(
        f"  deflated size {before.compressed_size_bytes:>12,} B -> "
        f"{after.compressed_size_bytes:>12,} B"
    )
    for size in (1, 32):
        dense_ms, pruned_ms, speedup = paired_latency_ms(
            model, pruned, batch(model, size), threads, rounds
        )
        print(
            f"  latency batch {size:<3} {dense_ms:9.3f} ms -> {pruned_ms:9.3f} ms  "
            f"{speedup:.2f}x faster (target >= 1.5x) {verdict(speedup >= 1.5)}"
        )
    return pruned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    print(
        f"onnxruntime {ort.__version__}, CPU, {args.threads} intra-op threads; latency: medians "
        f"of {args.rounds} rounds (fusion: {2 * args.rounds}) of before/after/after/before "
        "runs, speedup = median of per-round ratios"
    )

    demo = onnx.load(REPO / "resources" / "demo.onnx")
    data = np.load(REPO / "resources" / "demo_eval.npz")
    x, y = data["x"], data["y"]
    acc_dense = top1(demo, x, y, args.threads)

    demo_channels = channel_section("Demo model (1x32x32)", demo, args.threads, args.rounds)
    print(
        f"  top-1 on demo_eval ({len(y)} images), no fine-tuning: {acc_dense:.3f} -> "
        f"{top1(demo_channels, x, y, args.threads):.3f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        resnet = onnx.load(resnet18_style(tmp, input_size=224, width=64))
    channel_section("ResNet-18 style (3x224x224, width 64)", resnet, args.threads, args.rounds)

    print("\nDemo model: 90% unstructured magnitude pruning of every Conv/Gemm weight")
    sparse, _ = prune_unstructured(demo, dict.fromkeys(layers(demo), 0.9))
    before, after = size_report(demo), size_report(sparse)
    ratio = after.compressed_size_bytes / before.dense_size_bytes
    print(
        f"  dense size {before.dense_size_bytes:,} B -> {after.dense_size_bytes:,} B "
        "(zeros still stored)"
    )
    print(
        f"  deflated   {before.compressed_size_bytes:,} B -> {after.compressed_size_bytes:,} B"
        f" = {ratio:.3f}x of the dense original (target <= 0.2x) {verdict(ratio <= 0.2)}"
    )
    print(
        f"  top-1 before any fine-tuning: {acc_dense:.3f} -> {top1(sparse, x, y, args.threads):.3f}"
    )
    ratios = global_unstructured_ratios(demo, 0.9, layers(demo))
    global_sparse, _ = prune_unstructured(demo, ratios)
    global_size = size_report(global_sparse).compressed_size_bytes
    print(
        f"  same 90% under one global threshold (each layer capped at 95%): deflated "
        f"{global_size:,} B = {global_size / before.dense_size_bytes:.3f}x, top-1 "
        f"{top1(global_sparse, x, y, args.threads):.3f}"
    )

    print("\nDemo model: 50% unstructured, in every layer vs under one global threshold")
    for label, ratios in (
        ("50% in every layer   ", dict.fromkeys(layers(demo), 0.5)),
        ("50% global threshold ", global_unstructured_ratios(demo, 0.5, layers(demo))),
    ):
        half, _ = prune_unstructured(demo, ratios)
        deflated = size_report(half).compressed_size_bytes
        print(
            f"  {label}: deflated {deflated / before.dense_size_bytes:.3f}x, top-1 before any "
            f"fine-tuning {acc_dense:.3f} -> {top1(half, x, y, args.threads):.3f}"
        )

    print("\nDemo model: 2:4 semi-structured along the input dimension")
    two_four, report = prune_n_m(demo, layers(demo))
    sizes = size_report(two_four, report.n_m_weights)
    print(
        f"  layers in 2:4: {len(report.layers)}, skipped: "
        + ", ".join(f"{s.name} ({s.reason})" for s in report.skipped)
    )
    print(
        f"  dense {sizes.dense_size_bytes:,} B; 2:4 sparse format "
        f"{sizes.sparse_format_size_bytes:,} B "
        f"= {sizes.sparse_format_size_bytes / before.dense_size_bytes:.3f}x; deflated "
        f"{sizes.compressed_size_bytes:,} B"
    )
    print(
        f"  top-1 before any fine-tuning: {acc_dense:.3f} -> "
        f"{top1(two_four, x, y, args.threads):.3f}"
    )

    for title, model, size in (("Demo model", demo, 32), ("ResNet-18 style 224", resnet, 1)):
        fused, fuse_report = fuse_model(model)
        feed = batch(model, size)
        diff = max(
            float(np.max(np.abs(a - b)))
            for a, b in zip(run_model(model, feed), run_model(fused, feed), strict=True)
        )
        unfused_ms, fused_ms, speedup = paired_latency_ms(
            model, fused, feed, args.threads, 2 * args.rounds
        )
        print(
            f"\n{title}: Conv+BN fold ({len(fuse_report.folded)} BN folded, onnxslim "
            f"{'kept' if fuse_report.simplified else 'not used'})"
        )
        print(
            f"  nodes {fuse_report.nodes_before} -> {fuse_report.nodes_after} "
            f"{verdict(fuse_report.nodes_after < fuse_report.nodes_before)}"
        )
        print(
            f"  max |output difference| on a random batch of {size}: {diff:.2e} "
            f"(target <= 1e-4) {verdict(diff <= 1e-4)}"
        )
        print(
            f"  latency batch {size}: {unfused_ms:.3f} ms -> {fused_ms:.3f} ms "
            f"({speedup:.2f}x; target: not worse, within 3% timing noise) "
            f"{verdict(speedup >= 0.97)}"
        )


if __name__ == "__main__":
    main()
