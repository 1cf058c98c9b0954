"""`compressor-gui compare ORIGINAL COMPRESSED [--data D] [--json] [--top N]`: where the
accuracy went, layer by layer, and the recipe lines that keep the worst layers float."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from compressor_gui.cli.arguments import (
    add_common_arguments,
    add_data_argument,
    add_samples_argument,
)
from compressor_gui.cli.inspect import open_model
from compressor_gui.cli.reporting import save_report
from compressor_gui.cli.sensitivity import progress_printer
from compressor_gui.core.compare import KEEP_FLOAT, CompareResult, LayerError, compare_job
from compressor_gui.core.data import (
    Dataset,
    demo_dataset,
    is_demo_model,
    load_dataset,
    random_dataset,
)
from compressor_gui.core.errors import CompressorError
from compressor_gui.core.job_reports import compare_report
from compressor_gui.core.jobs import run_job
from compressor_gui.core.plan import CompressionPlan, load_recipe, save_recipe
from compressor_gui.core.shapes import resolve_input_shapes
from compressor_gui.core.summaries import layer_error_cells

MIN_TABLE_ROWS = 15


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("original", help="the model before compression (ONNX, .pt, .pt2)")
    parser.add_argument("compressed", help="the compressed ONNX model")
    add_data_argument(
        parser,
        ".npz (x[, y]) or image folder; the bundled demo uses its held-out split; "
        "without data: random inputs, fidelity only",
    )
    add_samples_argument(parser)
    parser.add_argument(
        "--top", type=int, default=3, metavar="N", help="keep the N worst layers float (3)"
    )
    parser.add_argument(
        "--recipe", metavar="R", help="the recipe the model was compressed with (to merge into)"
    )
    parser.add_argument(
        "--recipe-out", metavar="R", help="write the recipe that keeps the N worst layers float"
    )
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.top < 0:
        raise CompressorError(f"--top must be 0 or more, not {args.top}")
    base = load_recipe(args.recipe) if args.recipe else CompressionPlan()
    dataset = _dataset(args)
    job = compare_job(args.original, args.compressed, dataset)
    result = run_job(job, progress_printer(args.json))
    if sys.stderr.isatty() and not args.json:
        print(file=sys.stderr)
    worst = result.worst(args.top)
    if args.recipe_out:
        save_recipe(base.with_layers(worst, **KEEP_FLOAT), args.recipe_out)
    if args.json:
        data = {**result.to_dict(), "keep_float": list(worst), "recipe": keep_float_block(worst)}
        print(json.dumps(data, indent=2))
    else:
        print(format_result(result, args.top))
        print(format_keep_float(worst, args, any(e.compared for e in result.layers)))
    save_report(args, lambda: compare_report(result))
    return 0


def _dataset(args: argparse.Namespace) -> Dataset:
    """The user's data, the demo's held-out split, or random inputs of the resolved shapes."""
    loaded = open_model(argparse.Namespace(**{**vars(args), "model": args.original}))
    if loaded.onnx_model is None:
        raise CompressorError(f"{loaded.path.name} has no ONNX graph ({'; '.join(loaded.notes)})")
    if args.samples < 1:
        raise CompressorError(f"--samples must be at least 1, not {args.samples}")
    if args.data:
        dataset = load_dataset(args.data, loaded.onnx_model)
    elif is_demo_model(loaded.path):
        dataset = demo_dataset(loaded.onnx_model, "eval")
    else:
        shapes = resolve_input_shapes(loaded.onnx_model, loaded.input_shapes)
        return random_dataset(loaded.onnx_model, shapes=shapes)
    return dataset.subset(args.samples)


def keep_float_block(names: tuple[str, ...]) -> dict:
    """The recipe section keeping `names` float (no quantization, no pruning)."""
    return {"layers": {name: dict(KEEP_FLOAT) for name in names}}


def format_result(result: CompareResult, top: int) -> str:
    """Totals, then one row per layer, worst first."""
    if result.fidelity_only:
        data = f"random inputs: fidelity only ({result.samples} samples)"
    else:
        data = f"{result.samples} samples of {result.data_source}"
    lines = [f"{result.original_path} -> {result.compressed_path}: {data}"]
    totals = [f"output SQNR {result.output_sqnr_db:.1f} dB"]
    if result.agreement_top1 is not None:
        totals.append(f"top-1 agreement {result.agreement_top1:.2%}")
    if result.top1_original is not None and result.top1_compressed is not None:
        totals.insert(0, f"top-1 {result.top1_original:.2%} -> {result.top1_compressed:.2%}")
    lines.append("; ".join(totals))
    header = ("layer", "op", "SQNR dB", "rel. error", "input", "added")
    if result.qdq:
        header += ("QDQ in float",)
    shown = result.layers[: max(top, MIN_TABLE_ROWS)]
    rows = [header, *(_row(error, result.qdq) for error in shown)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [cell.rjust(width) for cell, width in zip(row[2:], widths[2:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    if len(result.layers) > len(shown):
        lines.append(f"... {len(result.layers) - len(shown)} more layers (--json for all)")
    notes = [f"{e.name}: {e.note}" for e in result.layers if e.note]
    lines.extend(f"note: {note}" for note in (*notes, *result.notes))
    if result.qdq:
        lines.append(
            "QDQ in float: the same model computed with onnxruntime's quantization debugger "
            "(float math, no integer kernels); far above the runtime's SQNR means this CPU's "
            "INT8 kernels lose the accuracy, not the quantization itself"
        )
    if result.measured_on is not None:
        lines.append(f"measured on: {result.measured_on.summary}")
    return "\n".join(lines)


def _row(error: LayerError, qdq: bool) -> tuple[str, ...]:
    row = layer_error_cells(error, "-")
    if not qdq:
        return row
    simulated = error.simulated_sqnr_db
    return (*row, "-" if simulated is None else format(simulated, ".1f"))


def format_keep_float(worst: tuple[str, ...], args: argparse.Namespace, compared: bool) -> str:
    """The recipe lines and the --exclude flags that keep the worst layers float."""
    if not compared:
        return "no layer could be compared (the notes say why): nothing to suggest"
    if not worst:
        return "no layer adds error: nothing to keep float"
    block = yaml.safe_dump(keep_float_block(worst), sort_keys=False, default_flow_style=None)
    excludes = " ".join(f"--exclude {name}" for name in worst)
    where = "the recipe you compressed with" if not args.recipe else args.recipe
    lines = [
        f"keep the {len(worst)} worst layer(s) float: add to {where}",
        block.rstrip(),
        f"or add to the compress command: {excludes}",
    ]
    if args.recipe_out:
        merged = f"{args.recipe} with them" if args.recipe else "them only (merge it into yours)"
        lines.append(f"recipe written to {args.recipe_out}: {merged}")
    return "\n".join(lines)
