"""`compressor-gui sensitivity MODEL --data D [--json]`: per-layer drop of every single change."""

from __future__ import annotations

import argparse
import json
import sys

from compressor_gui.cli.arguments import (
    MODEL_HELP,
    add_common_arguments,
    add_data_argument,
    add_samples_argument,
)
from compressor_gui.cli.inspect import open_model
from compressor_gui.cli.reporting import save_report
from compressor_gui.core.data import Dataset
from compressor_gui.core.errors import CompressorError
from compressor_gui.core.executors import ClusterConfig, Placement
from compressor_gui.core.job_reports import sensitivity_report
from compressor_gui.core.jobs import Progress, run_job
from compressor_gui.core.model import LoadedModel
from compressor_gui.core.sensitivity import (
    OPTIONS,
    SensitivityTable,
    largest_layers,
    options_named,
)
from compressor_gui.core.workflows import SweepRequest, sensitivity_work, sweep_data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help=MODEL_HELP)
    add_data_arguments(parser)
    parser.add_argument(
        "--options",
        default=",".join(o.name for o in OPTIONS),
        help="comma-separated changes to try per layer (default: all of them)",
    )
    parser.add_argument("--no-cache", action="store_true", help="measure again, ignore the cache")
    add_common_arguments(parser)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared with `autoplan`: which data, how much of it, where the work runs."""
    add_data_argument(parser, ".npz (x[, y]) or image folder; optional for the bundled demo model")
    add_samples_argument(parser)
    parser.add_argument(
        "--layers",
        type=int,
        metavar="N",
        help="sweep only the N layers holding the most weights (default: all)",
    )
    parser.add_argument("--workers", type=int, help="local processes doing the work (default 2)")
    cluster = parser.add_argument_group(
        "Dask cluster", "run the work on an existing cluster: the model and data are sent there"
    )
    cluster.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="the Dask scheduler to use, tcp://HOST:8786 or tls://HOST:PORT (only it is contacted)",
    )
    cluster.add_argument("--tls-ca-file", help="CA certificate the scheduler's TLS is checked with")
    cluster.add_argument("--tls-cert", help="client certificate for a tls:// scheduler")
    cluster.add_argument("--tls-key", help="client private key for a tls:// scheduler")


def placement_from_args(args: argparse.Namespace) -> Placement:
    """Local processes (--workers), or the cluster named by --cluster and its TLS files."""
    if args.cluster is None:
        if args.tls_ca_file or args.tls_cert or args.tls_key:
            raise CompressorError("--tls-* options need --cluster tls://HOST:PORT")
        workers = 2 if args.workers is None else args.workers
        if workers < 1:
            raise CompressorError(f"--workers must be at least 1, not {workers}")
        return Placement(workers)
    if args.workers is not None:
        raise CompressorError("give --workers or --cluster, not both (a cluster has its own)")
    return Placement(
        cluster=ClusterConfig(args.cluster, args.tls_ca_file, args.tls_cert, args.tls_key)
    )


def open_onnx_and_data(args: argparse.Namespace) -> tuple[LoadedModel, Dataset]:
    """The model (which must have an ONNX graph) and the first --samples of its data."""
    loaded = open_model(args)
    return loaded, sweep_data(loaded, args.data, args.samples)


def swept_layer_cap(args: argparse.Namespace, loaded: LoadedModel) -> list[str] | None:
    """The layers --layers N keeps (None: every layer)."""
    if args.layers is None:
        return None
    if args.layers < 1:
        raise CompressorError(f"--layers must be at least 1, not {args.layers}")
    return largest_layers(loaded.onnx_model, args.layers)


def progress_printer(quiet: bool):
    """A progress callback writing one overwritten line to stderr (nothing when quiet)."""

    def show(step: Progress) -> None:
        if not quiet and sys.stderr.isatty():
            print(
                f"\r{step.done:.0f}/{step.total:.0f} {step.message[:70]:<70}",
                end="",
                file=sys.stderr,
            )

    return show


def run(args: argparse.Namespace) -> int:
    loaded, dataset = open_onnx_and_data(args)
    options = options_named(n.strip() for n in args.options.split(",") if n.strip())
    placement = placement_from_args(args)
    cap = swept_layer_cap(args, loaded)
    layers = tuple(cap) if cap else None
    request = SweepRequest(layers, tuple(options), placement, use_cache=not args.no_cache)
    job = sensitivity_work(loaded, dataset, request)
    table = run_job(job, progress_printer(args.json))
    if sys.stderr.isatty() and not args.json:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps({"model": str(loaded.path), "samples": len(dataset), **table.to_dict()}))
    else:
        print(format_table(table, len(dataset)))
    save_report(args, lambda: sensitivity_report(table))
    return 0


def format_table(table: SensitivityTable, samples: int) -> str:
    """Drop in points per layer (rows) and option (columns), weight SQNR beneath the header."""
    label = "top-1 accuracy" if table.metric == "top1" else "top-1 agreement with the original"
    lines = [
        f"baseline {label}: {table.baseline:.2%} on {samples} samples; "
        "cells: drop in points (weight SQNR dB)"
    ]
    width = max(len(name) for name in table.layers)
    header = ["layer".ljust(width)] + [name.rjust(11) for name in table.options]
    lines.append("  ".join(header))
    for layer in table.layers:
        cells = [layer.ljust(width)]
        for point in table.curve(layer):
            cells.append(f"{point.drop:5.1f} ({point.weight_sqnr_db:3.0f})".rjust(11))
        lines.append("  ".join(cells))
    return "\n".join(lines)
