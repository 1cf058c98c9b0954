"""`compressor-gui compress MODEL (--recipe R | --int8 | --fp16 | --int4) -o OUT [--data D]`:
apply a plan, write the model, print before/after size, accuracy/fidelity and latency."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from compressor_gui.cli.arguments import (
    MODEL_HELP,
    add_common_arguments,
    add_data_argument,
)
from compressor_gui.cli.inspect import open_model
from compressor_gui.cli.reporting import save_report
from compressor_gui.core.compress import CompressResult
from compressor_gui.core.errors import PlanError
from compressor_gui.core.int8_forms import form_from_flags
from compressor_gui.core.job_reports import compress_report
from compressor_gui.core.jobs import Progress, run_job
from compressor_gui.core.plan import (
    CALIBRATION_METHODS,
    PRUNE_PATTERNS,
    CompressionPlan,
    LayerSetting,
    load_recipe,
)
from compressor_gui.core.summaries import compress_summary
from compressor_gui.core.workflows import CompressRequest, compress_work


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help=MODEL_HELP)
    add_plan_arguments(parser)
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="model to write")
    add_data_argument(
        parser,
        ".npz (x[, y] or one array per input) or image folder with preprocess.json; "
        "calibrates and evaluates (the bundled demo uses its own splits by default)",
    )
    add_data_argument(parser, "held-out data to evaluate on (default: the --data)", "--eval-data")
    parser.add_argument(
        "--distill",
        type=int,
        metavar="N",
        help="recover accuracy: train the pruned model N epochs towards the original on the "
        "--data before it is quantized (knowledge distillation; add --qat to simulate the "
        "plan's bit widths while training)",
    )
    add_training_arguments(parser)
    parser.add_argument("--no-latency", action="store_true", help="skip the latency runs")
    add_common_arguments(parser)


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """What to do to the model: precision, pruning, exclusions, target machine."""
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--recipe", metavar="R", help="plan as JSON or YAML (per-layer settings)")
    what.add_argument("--int8", action="store_true", help="INT8 everywhere it applies")
    what.add_argument("--fp16", action="store_true", help="FP16 everywhere, IO kept float32")
    what.add_argument("--int4", action="store_true", help="INT4 weight-only everywhere")
    parser.add_argument("--prune", type=float, metavar="RATIO", help="prune this share 0..0.95")
    parser.add_argument("--pattern", choices=PRUNE_PATTERNS, default="unstructured")
    parser.add_argument(
        "--global",
        dest="global_prune",
        action="store_true",
        help="unstructured only: one magnitude threshold over all layers (RATIO of all their "
        "weights, no layer beyond 95%%) instead of RATIO in every layer",
    )
    parser.add_argument("--calibration", choices=CALIBRATION_METHODS, default=None)
    parser.add_argument(
        "--exclude", action="append", default=[], metavar="NAME", help="keep this layer float"
    )
    parser.add_argument("--no-fuse", action="store_true", help="do not fold BatchNorm first")
    add_target_arguments(parser)


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """How distillation trains (the defaults are DistillOptions')."""
    group = parser.add_argument_group("distillation")
    group.add_argument(
        "--qat",
        action="store_true",
        help="quantization-aware: train with the plan's bit widths simulated (weights as they "
        "will be stored, INT8 activations too)",
    )
    group.add_argument("--temperature", type=float, default=4.0, metavar="T")
    group.add_argument(
        "--alpha", type=float, default=0.7, help="weight of the soft targets vs the labels"
    )
    group.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    group.add_argument("--batch-size", type=int, default=32)
    group.add_argument(
        "--hint",
        action="append",
        default=[],
        metavar="TENSOR",
        help="FitNets: also match this intermediate tensor of the teacher (repeatable)",
    )
    group.add_argument(
        "--augment",
        choices=("auto", "none", "crop", "crop+flip"),
        default="auto",
        help="image augmentation (auto: random crops where the data is images)",
    )
    group.add_argument(
        "--no-labels", action="store_true", help="soft targets only, even if the data has labels"
    )
    group.add_argument(
        "--unlabeled-data",
        metavar="U",
        help="more training samples without labels (.npz or image folder): the teacher labels "
        "them, which fine-tuning on labels alone cannot use",
    )
    group.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    group.add_argument("--seed", type=int, default=0)


def distill_options(args: argparse.Namespace, epochs: int):
    """The DistillOptions the training flags describe."""
    from compressor_gui.core.distill_types import DistillOptions

    return DistillOptions(
        epochs=epochs,
        temperature=args.temperature,
        alpha=args.alpha,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        qat=args.qat,
        features=tuple(args.hint),
        augment=args.augment,
        use_labels=not args.no_labels,
        threads=args.threads,
        seed=args.seed,
    )


def build_plan(args: argparse.Namespace, required: bool = True) -> CompressionPlan:
    """The plan the flags describe: a recipe, or one bit width for every layer, plus pruning
    and exclusions on top (no flag at all: an error, or with `required` False, float)."""
    if args.recipe:
        plan = load_recipe(args.recipe)
    else:
        bits = 8 if args.int8 else 16 if args.fp16 else 4 if args.int4 else 32
        plan = CompressionPlan(default=LayerSetting(bits=bits))
    said = args.prune is not None or args.recipe or args.int8 or args.fp16 or args.int4
    if required and not said:
        raise PlanError("say what to do: --recipe R, --int8, --fp16, --int4 or --prune RATIO")
    if args.prune is not None:
        default = dataclasses.replace(
            plan.default, prune_ratio=args.prune, prune_pattern=args.pattern
        )
        plan = dataclasses.replace(plan, default=default)
    if args.calibration:
        plan = dataclasses.replace(plan, calibration=args.calibration)
    if args.no_fuse:
        plan = dataclasses.replace(plan, fuse=False)
    if args.exclude:
        plan = plan.with_layers(args.exclude, bits=32, prune_ratio=0.0)
    form = form_from_flags(args.weight_type, args.reduce_range)
    if form != "auto":
        plan = dataclasses.replace(plan, int8_form=form)
    if args.max_drop is not None:
        plan = dataclasses.replace(plan, max_drop_pt=args.max_drop)
    return plan


def add_target_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        metavar="NAME",
        help="the machine the model is for: local (default) or a saved SSH target; its CPU "
        "family decides the INT8 form",
    )


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """Which machine the model is for, and the INT8 form and accuracy budget that go with it."""
    add_target_argument(parser)
    parser.add_argument(
        "--weight-type",
        choices=("s8", "u8"),
        help="INT8 weight type (default: measured for the target's CPU)",
    )
    parser.add_argument(
        "--reduce-range",
        action="store_true",
        help="7-bit INT8 weights: no saturation on x86 CPUs without VNNI",
    )
    parser.add_argument(
        "--max-drop",
        type=float,
        metavar="PT",
        help="accuracy budget in top-1 points; a larger measured drop is warned (default 1)",
    )


def with_global_pruning(plan: CompressionPlan, model, args: argparse.Namespace) -> CompressionPlan:
    """Replace the uniform prune ratio by per-layer ratios from one global threshold: layers
    with many small weights give more, so small sensitive layers are not wiped out."""
    from compressor_gui.core.prune import global_prune_ratios

    if args.prune is None or args.pattern != "unstructured":
        raise PlanError("--global needs --prune RATIO with --pattern unstructured")
    if model is None:
        raise PlanError("--global needs an ONNX graph to rank the weights of")
    return plan.with_prune_ratios(global_prune_ratios(model, args.prune, exclude=args.exclude))


def run(args: argparse.Namespace) -> int:
    loaded = open_model(args)
    plan = build_plan(args)
    if args.global_prune:
        plan = with_global_pruning(plan, loaded.onnx_model, args)

    distill = distill_options(args, args.distill) if args.distill else None
    result = run_compress(args, loaded, plan, distill)
    print_result(result, args.json)
    save_report(args, lambda: compress_report(result))
    return 0


def run_compress(args, loaded, plan: CompressionPlan, distill, teacher=None) -> CompressResult:
    """The compress job as the flags both `compress` and `distill` share describe it."""
    from compressor_gui.targets import get_target

    request = CompressRequest(
        plan,
        Path(args.output),
        data=Path(args.data) if args.data else None,
        eval_data=Path(args.eval_data) if args.eval_data else None,
        latency=not args.no_latency,
        distill=distill,
        unlabeled=Path(args.unlabeled_data) if distill and args.unlabeled_data else None,
    )
    job = compress_work(loaded, request, get_target(args.target), teacher=teacher)
    return run_job(job, progress_printer(args.json))


def print_result(result: CompressResult, as_json: bool, heading: str = "") -> None:
    """The result as JSON, or as the window's Results show it: the table, notes, layers."""
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
        return
    summary = compress_summary(result)
    lines = [heading] if heading else []
    lines.append(f"{result.input_path.name} -> {result.output_path}")
    lines.append(summary.table_text())
    lines += [note for note in summary.notes if not note.startswith("warning: ")]
    lines += [f"  {layer}" for layer in summary.layers]
    lines += [note for note in summary.notes if note.startswith("warning: ")]
    print("\n".join(lines))


def progress_printer(quiet: bool):
    """Pipeline steps and finished epochs on stderr (a training's per-batch steps, at
    fractional positions, only move the GUI's progress bar)."""

    def report(step: Progress) -> None:
        if not quiet and (step.payload is not None or float(step.done).is_integer()):
            print(f"[{step.done:.0f}/{step.total:.0f}] {step.message}", file=sys.stderr)

    return report
