"""`compressor-gui deploy MODEL --target T [--plan R] [--data D] -o DIR`: build every form of
the plan the target can run, time and score each one there, recommend the fastest within
the accuracy budget and write it as a deployment folder (model, recipe, run script, report)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from compressor_gui.cli.inspect import add_loading_arguments, parse_shapes
from compressor_gui.cli.reporting import add_report_argument, save_report
from compressor_gui.core.data import eval_dataset
from compressor_gui.core.deploy import RECOVERY_EPOCHS, Budget, DeployResult
from compressor_gui.core.deploy_report import REPORT_HTML, write_deployment
from compressor_gui.core.job_reports import deploy_report
from compressor_gui.core.jobs import Progress, run_job
from compressor_gui.core.model import ModelSource
from compressor_gui.core.plan import load_recipe
from compressor_gui.formatting import MEASURED_COLUMNS, aligned
from compressor_gui.targets import get_target
from compressor_gui.targets.deploy import Timing, default_work_dir, deploy_job


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the model to deploy (ONNX, TorchScript or .pt2)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="deployment folder")
    parser.add_argument("--target", default="local", help="'local' or a saved SSH target name")
    parser.add_argument("--plan", metavar="R", help="recipe (JSON/YAML); default: every layer INT8")
    parser.add_argument(
        "--data",
        metavar="D",
        help=".npz or image folder: calibrates on one half, measures on the other (default: "
        "<model>_eval.npz beside it, the demo's splits, else random inputs: fidelity only)",
    )
    parser.add_argument(
        "--eval-data",
        metavar="E",
        help="held-out data to score the forms on (then all of --data calibrates and trains)",
    )
    parser.add_argument("--forms", help="only these candidates, comma-separated (e.g. ov-int8)")
    parser.add_argument("--max-drop", type=float, help="top-1 points a form may lose (default 1)")
    parser.add_argument(
        "--min-cosine", type=float, default=0.99, help="without labels: least output cosine"
    )
    parser.add_argument(
        "--recovery-epochs",
        type=int,
        default=RECOVERY_EPOCHS,
        metavar="N",
        help="channel-pruned forms are trained back towards the original this many epochs "
        "where the data has labels (0: no training; without labels they are only scored)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per form per round")
    parser.add_argument("--threads", type=int, default=0, help="0: the runtime's default")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    parser.add_argument(
        "--accept-host-key", metavar="SHA256:...", help="trust this new SSH host key fingerprint"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_report_argument(parser)
    add_loading_arguments(parser)


def run(args: argparse.Namespace) -> int:
    shapes = parse_shapes(args.input_shape)
    source = ModelSource(Path(args.model), args.trust_pickle, tuple(shapes or ()))
    plan = load_recipe(args.plan) if args.plan else None
    budget = Budget(
        max_drop_pt=args.max_drop
        if args.max_drop is not None
        else (plan.max_drop_pt if plan else 1.0),
        min_cosine=args.min_cosine,
    )
    target = get_target(args.target, args.accept_host_key)
    timing = Timing(
        rounds=args.rounds, runs=args.runs, threads=args.threads, timeout_s=args.timeout
    )
    forms = [f.strip() for f in args.forms.split(",") if f.strip()] if args.forms else None
    work = default_work_dir()
    try:
        job = deploy_job(
            source,
            target,
            work,
            plan,
            args.data,
            forms=forms,
            budget=budget,
            timing=timing,
            recovery_epochs=args.recovery_epochs,
            eval_data=args.eval_data,
        )
        result = run_job(job, None if args.json else _show_progress)
        loaded = source.open()
        sample = eval_dataset(source.path, loaded.onnx_model, args.data, source.input_shapes)
        folder = write_deployment(result, args.output, sample)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps({**result.to_dict(), "output_dir": str(folder)}, indent=2))
    else:
        print(format_deploy(result, folder))
    save_report(args, lambda: deploy_report(result))
    return 0


def format_deploy(result: DeployResult, folder: Path) -> str:
    """The candidate table (fastest first), the recommendation and what was written."""
    table = [("form", "key", *MEASURED_COLUMNS, "MiB")]
    ordered = sorted(result.rows, key=lambda r: (r.p50_ms is None, r.p50_ms or 0.0))
    for row in ordered:
        mark = "*" if row.key == result.recommendation.key else ""
        table.append(
            (
                mark + row.label,
                row.key,
                *row.measured_cells,
                f"{row.size_bytes / 2**20:.2f}",
            )
        )
    lines = [f"deploy {result.model_path.name} on {result.target}: {result.machine.summary}"]
    lines += aligned(table)
    lines += [f"  {row.key}: {row.error}" for row in result.rows if row.error]
    lines.append(f"latency: {result.measurement}")
    lines += [f"note: {note}" for note in result.notes]
    lines.append(f"recommended: {result.recommendation.reason}")
    files = ", ".join(sorted(p.name for p in folder.iterdir()))
    lines.append(f"wrote {folder}: {files} (open {REPORT_HTML} in a browser)")
    return "\n".join(lines)


def _show_progress(step: Progress) -> None:
    if sys.stderr.isatty():
        print(
            f"\r{step.message[:70]:70s} {step.fraction:4.0%}", end="", file=sys.stderr, flush=True
        )
