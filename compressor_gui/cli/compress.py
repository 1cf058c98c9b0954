"""`compressor-gui compress MODEL (--recipe R | --int8 | --fp16 | --int4) -o OUT [--data D]`:
apply a plan, write the model, print before/after size, accuracy/fidelity and latency."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from compressor_gui.cli.inspect import add_loading_arguments, open_model
from compressor_gui.cli.reporting import add_report_argument, save_report
from compressor_gui.core.compress import CompressResult, compress_job
from compressor_gui.core.errors import PlanError
from compressor_gui.core.hardware import MachineInfo
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
from compressor_gui.core.quantize import SIMULATED


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="ONNX, TorchScript (.pt) or torch.export (.pt2) file")
    add_plan_arguments(parser)
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="model to write")
    parser.add_argument(
        "--data",
        metavar="D",
        help=".npz (x[, y] or one array per input) or image folder with preprocess.json; "
        "calibrates and evaluates (the bundled demo uses its own splits by default)",
    )
    parser.add_argument(
        "--eval-data", metavar="E", help="held-out data to evaluate on (default: the --data)"
    )
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
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_report_argument(parser)
    add_loading_arguments(parser)


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
    group.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    group.add_argument("--seed", type=int, default=0)


def distill_options(args: argparse.Namespace, epochs: int):
    """The DistillOptions the training flags describe."""
    from compressor_gui.core.distill import DistillOptions

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


def target_machine(args: argparse.Namespace) -> MachineInfo:
    """The target's CPU and runtimes (read over SSH for a saved target)."""
    from compressor_gui.targets import get_target

    return get_target(args.target).machine()


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
    job = compress_job(
        loaded,
        plan,
        args.output,
        args.data,
        eval_data=args.eval_data,
        latency=not args.no_latency,
        target=target_machine(args),
        distill=distill,
        teacher=teacher,
    )
    return run_job(job, progress_printer(args.json))


def print_result(result: CompressResult, as_json: bool, heading: str = "") -> None:
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print(f"{heading}\n{format_result(result)}" if heading else format_result(result))


def progress_printer(quiet: bool):
    """Pipeline steps and finished epochs on stderr (a training's per-batch steps, at
    fractional positions, only move the GUI's progress bar)."""

    def report(step: Progress) -> None:
        if not quiet and (step.payload is not None or float(step.done).is_integer()):
            print(f"[{step.done:.0f}/{step.total:.0f}] {step.message}", file=sys.stderr)

    return report


def format_result(result: CompressResult) -> str:
    """A before/after table, what was done per layer, and the warnings."""
    before, after = result.before, result.after
    rows = [
        ("size", _mb(before.size_bytes), _mb(after.size_bytes), _ratio(before, after)),
    ]
    if before.deflated_size_bytes and after.deflated_size_bytes:
        rows.append(
            (
                "size deflated (zip)",
                _mb(before.deflated_size_bytes),
                _mb(after.deflated_size_bytes),
                f"{after.deflated_size_bytes / before.size_bytes:.2f}x",
            )
        )
    if result.sparse_format_size_bytes is not None:
        rows.append(
            (
                "size in 2:4 sparse format",
                "",
                _mb(result.sparse_format_size_bytes),
                f"{result.sparse_format_size_bytes / before.size_bytes:.2f}x",
            )
        )
    if result.simulated:
        rows.append(("size if packed (predicted)", "", _mb(result.predicted_size_bytes), ""))
    if result.predicted_sparse_size_bytes < result.predicted_size_bytes:
        rows.append(
            ("size if sparse-stored (predicted)", "", _mb(result.predicted_sparse_size_bytes), "")
        )
    b_eval, a_eval = before.eval, after.eval
    if b_eval and b_eval.top1 is not None:
        rows.append(("top-1", _pct(b_eval.top1), _pct(a_eval.top1), _points(b_eval, a_eval)))
    if b_eval and b_eval.top5 is not None:
        rows.append(("top-5", _pct(b_eval.top5), _pct(a_eval.top5), ""))
    if a_eval and a_eval.cosine is not None:
        if a_eval.agreement_top1 is not None:
            rows.append(("top-1 agreement", "", _pct(a_eval.agreement_top1), ""))
        rows.append(("output cosine", "", f"{a_eval.cosine:.4f}", ""))
        rows.append(("output SQNR", "", f"{a_eval.sqnr_db:.1f} dB", ""))
    if before.latency and after.latency:
        speed = before.latency.p50_ms / after.latency.p50_ms
        rows.append(
            (
                f"latency p50 ({after.latency.threads} threads)",
                f"{before.latency.p50_ms:.2f} ms",
                f"{after.latency.p50_ms:.2f} ms",
                f"{speed:.2f}x faster" if speed >= 1 else f"{1 / speed:.2f}x slower",
            )
        )
        rows.append(
            ("latency p90", f"{before.latency.p90_ms:.2f} ms", f"{after.latency.p90_ms:.2f} ms", "")
        )
    widths = [max(len(r[i]) for r in [("", "before", "after", "change"), *rows]) for i in range(4)]
    lines = [f"{result.input_path.name} -> {result.output_path}"]
    for row in [("", "before", "after", "change"), *rows]:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    lines.append(f"data: {result.data_source}")
    if result.measured_on:
        lines.append(f"measured on: {result.measured_on.summary}")
    if result.target and result.target != result.measured_on:
        lines.append(f"made for: {result.target.summary}")
    lines.extend(f"step: {step}" for step in result.steps)
    if result.distill is not None:
        lines.extend(distill_lines(result.distill))
    for action in result.actions:
        label = f"  [{SIMULATED}]" if action.simulated else ""
        lines.append(f"  {action.name}: {action.method}{label}")
    lines.extend(f"warning: {w}" for w in result.warnings)
    return "\n".join(lines)


def distill_lines(report) -> list[str]:
    """The training curve as a table (validation = a part of the training data)."""
    rows = [("epoch", "train loss", "val loss", "val top-1", "agreement", "")]
    for stats in report.history:
        rows.append(
            (
                str(stats.epoch),
                "-" if stats.train_loss is None else f"{stats.train_loss:.4f}",
                f"{stats.val_loss:.4f}",
                _pct(stats.val_top1),
                _pct(stats.val_agreement),
                "best" if stats.epoch == report.best_epoch else "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        f"distillation ({report.validation_samples} training samples held out for validation"
        + (
            f"; the teacher scores {_pct(report.teacher_val_top1)} there"
            if report.teacher_val_top1 is not None
            else ""
        )
        + "):"
    ]
    lines += [
        "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    lines += [f"  QAT: {q.name}: {q.simulated}" for q in report.qat_layers]
    return lines


def _mb(size: int) -> str:
    return f"{size / 1e6:.3f} MB"


def _ratio(before, after) -> str:
    return f"{after.size_bytes / before.size_bytes:.2f}x"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _points(before, after) -> str:
    return f"{100 * (after.top1 - before.top1):+.2f} pt"
