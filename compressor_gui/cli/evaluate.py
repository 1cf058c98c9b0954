"""`compressor-gui evaluate MODEL [COMPRESSED] [--data D] [--target NAME] [--json]`: accuracy
of the model(s) and fidelity of the second against the first, computed by the target's own
runtime (this machine, or a saved SSH target), with the machine it ran on."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from compressor_gui.cli.inspect import add_loading_arguments, open_model
from compressor_gui.cli.reporting import add_report_argument, save_report
from compressor_gui.core.data import eval_dataset
from compressor_gui.core.errors import ModelLoadError
from compressor_gui.core.evaluate import comparison_rows
from compressor_gui.core.jobs import Progress, run_job
from compressor_gui.core.model import load_onnx
from compressor_gui.targets import get_target
from compressor_gui.targets.base import BenchConfig
from compressor_gui.targets.evaluate import TargetEvaluation, evaluate_on_target
from compressor_gui.targets.job_reports import evaluation_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the original model (ONNX, TorchScript or .pt2)")
    parser.add_argument("compressed", nargs="?", help="an ONNX model to compare with it")
    parser.add_argument(
        "--data",
        metavar="D",
        help=".npz (x[, y] or one array per input) or image folder with preprocess.json "
        "(default: <model>_eval.npz beside it, the demo's held-out split, else random inputs: "
        "fidelity only)",
    )
    parser.add_argument("--target", default="local", help="'local' or a saved SSH target name")
    parser.add_argument("--provider", help="onnxruntime execution provider on an SSH target")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per model run")
    parser.add_argument(
        "--accept-host-key", metavar="SHA256:...", help="trust this new SSH host key fingerprint"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_report_argument(parser)
    add_loading_arguments(parser)


def run(args: argparse.Namespace) -> int:
    loaded = open_model(args)
    if loaded.onnx_model is None:
        raise ModelLoadError(f"{loaded.path.name}: no ONNX graph to run; give --input-shape")
    original = loaded.path if loaded.format == "onnx" else loaded.onnx_model
    models = [("original", original)]
    if args.compressed:
        load_onnx(Path(args.compressed))  # a bad file gets the loader's plain-words message
        models.append(("compressed", Path(args.compressed)))
    dataset = eval_dataset(loaded.path, loaded.onnx_model, args.data)
    target = get_target(args.target, args.accept_host_key)
    config = BenchConfig(provider=args.provider, timeout_s=args.timeout)
    job = evaluate_on_target(target, models, dataset, config)
    evaluation = run_job(job, None if args.json else _show_progress)
    if args.json:
        print(json.dumps(evaluation.to_dict(), indent=2))
    else:
        print(format_evaluation(evaluation, [Path(args.model).name, args.compressed]))
    names = [Path(args.model).name, *([Path(args.compressed).name] if args.compressed else [])]
    save_report(args, lambda: evaluation_report(evaluation, names))
    return 0


def format_evaluation(evaluation: TargetEvaluation, names: list[str | None]) -> str:
    """The comparison table, then where it ran and on which data."""
    results = list(evaluation.results.values())
    compared = len(results) > 1
    rows = [
        ("", "original", "compressed", "change"),
        *comparison_rows(results[0], results[1] if compared else None),
    ]
    rows = [row if compared else row[:2] for row in rows]  # one model: nothing to compare
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    title = " vs ".join(Path(name).name for name in names if name)
    lines = [f"{title} on {evaluation.target}"]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.append(f"data: {evaluation.data_source}")
    machine = evaluation.machine
    lines.append(f"ran on: {machine.summary} · INT8 family {machine.isa_class}")
    lines.append(f"runtime: {evaluation.runtime}")
    return "\n".join(lines)


def _show_progress(step: Progress) -> None:
    if sys.stderr.isatty():
        print(f"\r{step.message} {step.fraction:4.0%}   ", end="", file=sys.stderr, flush=True)
