"""`compressor-gui autoplan MODEL --data D (--size-ratio R | --max-drop PTS) -o RECIPE`."""

from __future__ import annotations

import argparse
import json

from compressor_gui.cli.arguments import MODEL_HELP, add_common_arguments
from compressor_gui.cli.compress import add_target_argument
from compressor_gui.cli.reporting import save_report
from compressor_gui.cli.sensitivity import (
    add_data_arguments,
    open_onnx_and_data,
    placement_from_args,
    progress_printer,
    swept_layer_cap,
)
from compressor_gui.core.data import load_dataset
from compressor_gui.core.distill_types import DistillOptions
from compressor_gui.core.errors import CompressorError
from compressor_gui.core.job_reports import autoplan_report
from compressor_gui.core.jobs import run_job
from compressor_gui.core.plan import save_recipe
from compressor_gui.core.search import AutoPlanResult, Budget, Candidate
from compressor_gui.core.workflows import autoplan_work, calibration_data
from compressor_gui.targets import get_target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help=MODEL_HELP)
    add_data_arguments(parser)
    parser.add_argument(
        "--size-ratio",
        type=float,
        help="target size: 6 means 6x smaller, 0.25 means a quarter of the original",
    )
    parser.add_argument("--max-drop", type=float, help="largest top-1 drop allowed, in points")
    parser.add_argument("-o", "--output", required=True, help="recipe to write (.json or .yaml)")
    parser.add_argument(
        "--verify",
        choices=("real", "simulated"),
        default="real",
        help="measure plans by building them (real) or by simulating their weights (faster)",
    )
    parser.add_argument(
        "--recover",
        type=int,
        metavar="N",
        help="also build the chosen and the smaller plans with N epochs of distillation (QAT + "
        "KD on the calibration data) and choose one of them when it meets the budget better",
    )
    parser.add_argument(
        "--unlabeled-data",
        metavar="U",
        help="with --recover: more training samples without labels (the teacher labels them)",
    )
    add_target_argument(parser)
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.size_ratio is None and args.max_drop is None:
        raise CompressorError("give --size-ratio R and/or --max-drop PTS")
    ratio = args.size_ratio
    if ratio is not None:
        if ratio <= 0:
            raise CompressorError(f"--size-ratio must be positive, not {ratio}")
        ratio = 1.0 / ratio if ratio > 1 else ratio
    placement = placement_from_args(args)
    loaded, dataset = open_onnx_and_data(args)
    recovery = unlabeled = None
    if args.recover is not None:
        recovery = DistillOptions(epochs=args.recover, qat=True)
        if args.unlabeled_data:
            unlabeled = load_dataset(args.unlabeled_data, loaded.onnx_model)
    elif args.unlabeled_data:
        raise CompressorError("--unlabeled-data trains recovery: give --recover N too")
    job = autoplan_work(
        loaded,
        dataset,
        calibration_data(loaded, args.data, dataset),
        Budget(size_ratio=ratio, max_drop=args.max_drop),
        args.verify,
        placement,
        get_target(args.target).machine(),
        recovery=recovery,
        unlabeled=unlabeled,
        layers=swept_layer_cap(args, loaded),
    )
    result = run_job(job, progress_printer(args.json))
    save_recipe(result.chosen.plan, args.output)
    if args.json:
        print(json.dumps(_to_json(result, args.output)))
    else:
        print(format_result(result, args.output))
    save_report(args, lambda: autoplan_report(result, args.output))
    return 0


def _row(c: Candidate, original: int) -> dict:
    return {
        "label": c.label,
        "predicted_size_bytes": c.predicted_size_bytes,
        "predicted_ratio": original / c.predicted_size_bytes,
        "measured_size_bytes": c.measured_size_bytes,
        "predicted_drop": c.predicted_drop,
        "measured_drop": c.measured_drop,
        "measured_value": c.measured_value,
        "verification": c.verification,
        "distill_epochs": c.plan.distill_epochs,
        "recovered_from": c.recovered_from,
    }


def _to_json(result: AutoPlanResult, recipe: str) -> dict:
    original = result.original_size_bytes
    return {
        "recipe": recipe,
        "metric": result.metric,
        "baseline": result.baseline,
        "original_size_bytes": original,
        "chosen": _row(result.chosen, original),
        "candidates": [_row(c, original) for c in result.candidates],
        "pareto": [c.label for c in result.pareto],
        "at_int8_size": result.at_int8_size.label if result.at_int8_size else None,
        "notes": list(result.notes),
    }


def format_result(result: AutoPlanResult, recipe: str) -> str:
    """Predicted and measured size and accuracy of the chosen plan and of every candidate."""
    original = result.original_size_bytes
    metric = "top-1" if result.metric == "top1" else "top-1 agreement"
    width = max(len(c.label) for c in result.candidates)
    lines = [
        f"wrote {recipe}",
        f"original: {original} bytes of weights, {metric} {result.baseline:.2%}",
        f"{'candidate':<{width + 1}}  pred. size   ratio  file bytes  pred.drop  meas.drop  "
        f"{metric:>8}  check",
    ]
    for c in result.candidates:
        mark = "*" if c is result.chosen else " "
        file_bytes = "-" if c.measured_size_bytes is None else str(c.measured_size_bytes)
        ratio = original / c.predicted_size_bytes
        lines.append(
            f"{mark}{c.label:<{width}}  {c.predicted_size_bytes:>10}  {ratio:5.2f}x  "
            f"{file_bytes:>10}"
            f"  {c.predicted_drop:9.2f}  {c.measured_drop:9.2f}  "
            f"{c.measured_value:8.2%}  {c.verification}"
        )
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines)
