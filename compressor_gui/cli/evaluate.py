"""`compressor-gui evaluate MODEL [COMPRESSED] [--data D] [--target NAME] [--json]`: accuracy
of the model(s) and fidelity of the second against the first, computed by the target's own
runtime (this machine, or a saved SSH target), with the machine it ran on."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from compressor_gui.cli.arguments import add_common_arguments, add_data_argument
from compressor_gui.cli.inspect import open_model
from compressor_gui.cli.reporting import save_report
from compressor_gui.core.errors import ModelLoadError
from compressor_gui.core.jobs import Progress, run_job
from compressor_gui.core.model import load_onnx
from compressor_gui.core.summaries import evaluation_summary
from compressor_gui.core.workflows import evaluation_data, evaluation_models
from compressor_gui.targets import get_target
from compressor_gui.targets.base import BenchConfig
from compressor_gui.targets.evaluate import TargetEvaluation, evaluate_on_target
from compressor_gui.targets.job_reports import evaluation_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the original model (ONNX, TorchScript or .pt2)")
    parser.add_argument("compressed", nargs="?", help="an ONNX model to compare with it")
    add_data_argument(
        parser,
        ".npz (x[, y] or one array per input) or image folder with preprocess.json "
        "(default: <model>_eval.npz beside it, the demo's held-out split, else random inputs: "
        "fidelity only)",
    )
    parser.add_argument("--target", default="local", help="'local' or a saved SSH target name")
    parser.add_argument("--provider", help="onnxruntime execution provider on an SSH target")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per model run")
    parser.add_argument(
        "--accept-host-key", metavar="SHA256:...", help="trust this new SSH host key fingerprint"
    )
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    loaded = open_model(args)
    if loaded.onnx_model is None:
        raise ModelLoadError(f"{loaded.path.name}: no ONNX graph to run; give --input-shape")
    if args.compressed:
        load_onnx(Path(args.compressed))  # a bad file gets the loader's plain-words message
    models = evaluation_models(loaded, args.compressed)
    dataset = evaluation_data(loaded, args.data)
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
    """The comparison table, then where it ran and on which data (the window's rows)."""
    summary = evaluation_summary(evaluation, Path(names[0] or "").name)
    compared = len(evaluation.results) > 1
    title = " vs ".join(Path(name).name for name in names if name)
    headers = ("original", "compressed") if compared else ("original",)
    notes = [n for n in summary.notes if not n.startswith("no compressed model")]
    return "\n".join([f"{title} on {evaluation.target}", summary.table_text(headers), *notes])


def _show_progress(step: Progress) -> None:
    if sys.stderr.isatty():
        print(f"\r{step.message} {step.fraction:4.0%}   ", end="", file=sys.stderr, flush=True)
