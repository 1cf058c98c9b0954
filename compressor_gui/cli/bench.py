"""`compressor-gui bench MODEL`: latency on a local runtime or a saved SSH target.

`--sweep` runs every runtime x precision the target supports and prints them sorted by latency,
each with its fidelity to onnxruntime FP32 on CPU: "which is fastest here" in one go.
`--target A --target B ...` runs on every target at once (one worker per machine) into one
table; a target that fails is one row with its reason, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from compressor_gui.cli.inspect import parse_shapes
from compressor_gui.cli.reporting import add_report_argument, save_report
from compressor_gui.core.data import load_dataset
from compressor_gui.core.errors import CompressorError, TargetError
from compressor_gui.core.jobs import Progress, run_job
from compressor_gui.core.model import load_onnx
from compressor_gui.core.shapes import random_feed, resolve_input_shapes
from compressor_gui.targets import get_target
from compressor_gui.targets.base import RUNTIMES, BenchConfig, BenchResult, RuntimeOption, Target
from compressor_gui.targets.fanout import Leg, bench_fanout_job, format_table
from compressor_gui.targets.job_reports import bench_report, fanout_report, sweep_report

FIDELITY_SAMPLES = 32
RED, PLAIN = "\033[31m", "\033[0m"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="ONNX model file")
    parser.add_argument(
        "--target",
        action="append",
        help="'local' (default) or a saved SSH target name; repeat to run on several at once",
    )
    parser.add_argument("--runtime", choices=RUNTIMES, default="ort")
    parser.add_argument("--provider", help="ORT execution provider or OpenVINO device")
    parser.add_argument(
        "--precision",
        default=None,
        help="fp32 | fp16 | bf16 | int8 | default (OpenVINO's own choice: BF16 on AMX CPUs)",
    )
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs first")
    parser.add_argument("--runs", type=int, default=100, help="timed runs")
    parser.add_argument("--duration", type=float, help="time for this many seconds instead")
    parser.add_argument("--threads", type=int, default=0, help="0: the runtime's default")
    parser.add_argument(
        "--batch-size", default="1", help="batch size, or a comma list like 1,8 (one run each)"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    parser.add_argument("--sweep", action="store_true", help="every runtime x precision here")
    parser.add_argument(
        "--data",
        help=".npz with key x (and labels y), or one array per input: the timed runs feed its "
        "first sample; inputs for the --sweep fidelity check; with several --target, data each "
        "target scores the model on (top-1 with labels)",
    )
    parser.add_argument(
        "--accept-host-key", metavar="SHA256:...", help="trust this new SSH host key fingerprint"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--input-shape",
        action="append",
        metavar="DIMS",
        help="input shape like 1x3x640x640 (repeat per input, in order) for dynamic dims; "
        "the batch dim follows --batch-size",
    )
    add_report_argument(parser)


def run(args: argparse.Namespace) -> int:
    model = load_onnx(Path(args.model))  # a bad file gets the loader's plain-words message
    data = load_dataset(args.data, model) if args.data else None
    shapes = resolve_input_shapes(model, parse_shapes(args.input_shape), data)
    names = list(dict.fromkeys(args.target or ["local"]))
    configs = [
        BenchConfig(
            warmup=args.warmup,
            runs=args.runs,
            duration_s=args.duration,
            threads=args.threads,
            batch_size=batch,
            runtime=args.runtime,
            provider=args.provider,
            precision=args.precision or ("default" if args.runtime == "openvino" else "fp32"),
            timeout_s=args.timeout,
            input_shapes={name: list(shape) for name, shape in shapes.items()},
            feed_data=str(Path(args.data).resolve()) if args.data else None,
        )
        for batch in _batch_sizes(args.batch_size)
    ]
    if len(names) > 1:
        if args.sweep:
            raise TargetError("--sweep runs on one target: give a single --target")
        return _fan_out(names, configs, args)
    target = get_target(names[0], args.accept_host_key)
    if args.sweep:
        rows = sweep(target, args.model, configs[0], args.data, _progress_printer(args.json))
        machine = target.machine()
        if args.json:
            ran_on = {"machine": machine.to_dict()}
            print(json.dumps([{**r.to_dict(), **fid, **ran_on} for r, fid in rows], indent=2))
        else:
            print(f"{format_sweep(rows)}\nmachine: {machine.summary}")
        save_report(args, lambda: sweep_report(rows, machine))
        return 0
    results = [
        run_job(target.benchmark(args.model, config), _progress_printer(args.json))
        for config in configs
    ]
    machine = target.machine()  # every figure says which CPU and runtimes made it
    if args.json:
        payload: Any = [{**r.to_dict(), "machine": machine.to_dict()} for r in results]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
    else:
        print("\n\n".join(format_result(r) for r in results))
        print(f"machine: {machine.summary} (INT8 family {machine.isa_class})")
    name = Path(args.model).name
    named = {name if len(results) == 1 else f"{name} batch {r.batch_size}": r for r in results}
    save_report(args, lambda: bench_report(named, machine))
    return 0


def _fan_out(names: list[str], configs: list[BenchConfig], args: argparse.Namespace) -> int:
    """Every target at once; one table (or JSON list) of rows, failures included."""
    legs = [Leg(get_target(name, args.accept_host_key), c) for name in names for c in configs]
    model = Path(args.model)
    dataset = load_dataset(args.data, load_onnx(model)) if args.data else None
    job = bench_fanout_job(legs, [(model.name, model)], dataset=dataset)
    rows = run_job(job, _progress_printer(args.json))
    if args.json:
        print(json.dumps([row.to_dict() for row in rows], indent=2))
    else:
        lines = format_table(rows).splitlines()
        if sys.stdout.isatty():  # a failed target is a red row
            marked = zip(lines[2:], rows, strict=True)
            lines[2:] = [text if row.ok else f"{RED}{text}{PLAIN}" for text, row in marked]
        print("\n".join(lines))
    save_report(args, lambda: fanout_report(rows))
    return 0 if all(row.ok for row in rows) else 1


def sweep(
    target: Target, model: str, base: BenchConfig, data_path: str | None, on_progress=None
) -> list[tuple[BenchResult, dict[str, float | None]]]:
    """Benchmark every runtime option; fidelity vs the first ORT CPU FP32 run, fastest first."""
    options = target.runtime_options()
    reference_option = RuntimeOption("ort", "CPUExecutionProvider", "fp32")
    if reference_option in options:
        options.remove(reference_option)
        options.insert(0, reference_option)
    can_compare = hasattr(target, "benchmark_with_outputs")
    rows = []
    with tempfile.TemporaryDirectory(prefix="compressor-gui-sweep-") as scratch:
        data = data_path
        if can_compare and data is None:
            data = _random_data(model, base.input_shapes, Path(scratch) / "x.npz")
        reference = None
        for option in options:
            config = replace(
                base,
                runtime=option.runtime,
                provider=option.device,
                precision=option.precision,
                fidelity_data=data if can_compare else None,
            )
            try:
                if can_compare:
                    job = target.benchmark_with_outputs(model, config)
                    result, outputs = run_job(job, on_progress)
                else:
                    result, outputs = run_job(target.benchmark(model, config), on_progress), None
            except CompressorError as exc:
                print(f"{option.label}: {exc}", file=sys.stderr)
                continue
            if option == reference_option:
                reference = outputs
            rows.append((result, {**fidelity(reference, outputs), **_accuracy(data, outputs)}))
    if not rows:
        raise TargetError("no runtime could run this model: see the errors above")
    return sorted(rows, key=lambda row: row[0].latency.p50_ms)


def fidelity(reference, outputs) -> dict[str, float | None]:
    """Top-1 agreement and mean per-sample cosine of `outputs` vs `reference` (None if unknown)."""
    import numpy as np

    if reference is None or outputs is None or reference.shape != outputs.shape:
        return {"top1_agreement": None, "cosine": None}
    ref = reference.reshape(len(reference), -1).astype(np.float64)
    out = outputs.reshape(len(outputs), -1).astype(np.float64)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cosine = np.sum(ref * out, axis=1) / np.where(norms == 0, 1.0, norms)
    agreement = None
    if reference.ndim == 2:  # logits: (batch, classes)
        agreement = float(np.mean(reference.argmax(axis=1) == outputs.argmax(axis=1)))
    return {"top1_agreement": agreement, "cosine": float(np.mean(cosine))}


def _accuracy(data_path: str | None, outputs) -> dict[str, float]:
    """Top-1 accuracy when the data file also holds labels (key y)."""
    import numpy as np

    if data_path is None or outputs is None or outputs.ndim != 2:
        return {}
    with np.load(data_path) as data:
        if "y" not in data.files or len(data["y"]) != len(outputs):
            return {}
        return {"accuracy": float(np.mean(outputs.argmax(axis=1) == data["y"]))}


def _random_data(model: str, shapes: dict | None, path: Path) -> str:
    """FIDELITY_SAMPLES made-up inputs of the resolved shapes, samples on axis 0, saved as
    one npz array per input."""
    import onnx

    from compressor_gui.core.data import save_npz

    graph_model = onnx.load(model, load_external_data=False)
    batched = {name: (FIDELITY_SAMPLES, *shape[1:]) for name, shape in (shapes or {}).items()}
    save_npz(path, random_feed(graph_model, batched or None))
    return str(path)


def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError as exc:
        raise TargetError(f"--batch-size wants numbers like 1 or 1,8, not {text!r}") from exc
    return sizes or [1]


def _progress_printer(quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None

    def show(step: Progress) -> None:
        print(f"\r{step.message} {step.fraction:4.0%}   ", end="", file=sys.stderr, flush=True)

    return show


def format_result(result: BenchResult) -> str:
    lat = result.latency
    lines = [
        f"{Path(result.model_path).name} on {result.target}: {result.runtime} "
        f"{result.device} {result.precision} ({result.runtime_version})",
        f"  batch {result.batch_size}, threads {result.threads or 'default'}, {result.runs} runs",
        f"  latency ms: p50 {lat.p50_ms:.3f}  p90 {lat.p90_ms:.3f}  p99 {lat.p99_ms:.3f}  "
        f"mean {lat.mean_ms:.3f}  min {lat.min_ms:.3f}  max {lat.max_ms:.3f}",
        f"  throughput: {result.throughput_per_s:.1f} /s",
    ]
    if result.session_create_ms is not None:
        lines.append(f"  session creation: {result.session_create_ms:.1f} ms")
    if result.peak_memory_bytes:
        lines.append(f"  peak memory: {result.peak_memory_bytes / 2**20:.1f} MiB")
    if result.power_mw:
        rails = ", ".join(f"{k} {v:.0f}" for k, v in result.power_mw.items())
        lines.append(f"  power mW (mean): {rails}")
    if result.temperatures_c:
        temps = ", ".join(f"{k} {v:.1f}" for k, v in result.temperatures_c.items())
        lines.append(f"  temperature C (max): {temps}")
    for label, value in (
        ("GPU load", result.gpu_load_percent),
        ("CPU load", result.cpu_load_percent),
    ):
        if value is not None:
            lines.append(f"  {label}: {value:.0f}% (mean)")
    lines += [f"  note: {note}" for note in result.notes]
    return "\n".join(lines)


def format_sweep(rows: list[tuple[BenchResult, dict[str, float | None]]]) -> str:
    header = (
        "runtime",
        "device",
        "precision",
        "p50 ms",
        "p90 ms",
        "per s",
        "top-1 agree",
        "cosine",
    )
    with_accuracy = any("accuracy" in fid for _, fid in rows)
    if with_accuracy:
        header += ("accuracy",)
    table = [header]
    for result, fid in rows:
        agree, cosine = fid["top1_agreement"], fid["cosine"]
        accuracy = fid.get("accuracy")
        table.append(
            (
                result.runtime,
                result.device,
                result.precision,
                f"{result.latency.p50_ms:.3f}",
                f"{result.latency.p90_ms:.3f}",
                f"{result.throughput_per_s:.1f}",
                "n/a" if agree is None else f"{agree:.1%}",
                "n/a" if cosine is None else f"{cosine:.5f}",
            )
            + (("n/a" if accuracy is None else f"{accuracy:.1%}",) if with_accuracy else ())
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("(fastest first; fidelity vs onnxruntime CPU FP32 on the same inputs)")
    return "\n".join(lines)
