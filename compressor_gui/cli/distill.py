"""`compressor-gui distill TEACHER STUDENT --data D [--epochs N] [--qat] -o OUT`: train a
compressed (e.g. pruned) STUDENT towards TEACHER, then write it quantized as the plan flags
say (--int8, --int4, --recipe R; none: float), measured against the teacher."""

from __future__ import annotations

import argparse
import dataclasses

import onnx

from compressor_gui.cli.arguments import add_common_arguments, add_data_argument
from compressor_gui.cli.compress import (
    add_plan_arguments,
    add_training_arguments,
    build_plan,
    distill_options,
    print_result,
    run_compress,
    with_global_pruning,
)
from compressor_gui.cli.inspect import parse_shapes
from compressor_gui.cli.reporting import save_report
from compressor_gui.core.data import input_specs
from compressor_gui.core.errors import CompressorError
from compressor_gui.core.job_reports import compress_report
from compressor_gui.core.model import LoadedModel, load_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("teacher", help="the original model (ONNX, TorchScript or .pt2)")
    parser.add_argument("student", help="the compressed model to train, with float weights")
    add_data_argument(
        parser,
        "training data: .npz (x[, y]) or image folder; labels optional (default for the "
        "bundled demo teacher: its calibration split)",
    )
    add_data_argument(
        parser, "held-out data for the before/after table (never trained on)", "--eval-data"
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="model to write")
    add_training_arguments(parser)
    add_plan_arguments(parser)
    parser.add_argument("--no-latency", action="store_true", help="skip the latency runs")
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    shapes = parse_shapes(args.input_shape)
    student = _opened(args.student, args, shapes)
    teacher = _inputs_named_like(_opened(args.teacher, args, shapes), student)
    plan = build_plan(args, required=False)
    if args.global_prune:
        plan = with_global_pruning(plan, student.onnx_model, args)
    result = run_compress(args, student, plan, distill_options(args, args.epochs), teacher)
    heading = f"before: the teacher {teacher.path.name}; after: {student.path.name} distilled"
    print_result(result, args.json, heading)
    save_report(args, lambda: compress_report(result, "distill"))
    return 0


def _inputs_named_like(teacher: LoadedModel, student: LoadedModel) -> LoadedModel:
    """The teacher with its inputs named and shaped as the student's, by position: the data is
    keyed by the student's names and batched as it takes them, while a TorchScript teacher's
    exporter names them its own way (x.1) and fixes the batch it traced with."""
    ours = [spec.name for spec in input_specs(teacher.onnx_model)]
    theirs = {s.name: s for s in student.onnx_model.graph.input}
    theirs = [theirs[spec.name] for spec in input_specs(student.onnx_model)]
    if len(ours) != len(theirs) or all(a == b.name for a, b in zip(ours, theirs, strict=True)):
        return teacher
    renames = {a: b.name for a, b in zip(ours, theirs, strict=True)}
    model = onnx.ModelProto()
    model.CopyFrom(teacher.onnx_model)
    for value in model.graph.input:
        if value.name in renames:
            value.CopyFrom(theirs[ours.index(value.name)])
    for node in model.graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
    return dataclasses.replace(teacher, onnx_model=model)


def _opened(path: str, args: argparse.Namespace, shapes) -> LoadedModel:
    loaded = load_model(path, trust_pickle=args.trust_pickle, input_shapes=shapes)
    if loaded.onnx_model is None:
        raise CompressorError(
            f"{loaded.path.name} has no ONNX graph to train ({'; '.join(loaded.notes)})"
        )
    return loaded
