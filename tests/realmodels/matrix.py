"""Every CLI verb on every model of the real-model suite, as a user types it, run in-process
through `compressor_gui.cli.main`; the same cells feed the test and the README table
(`python -m tests.realmodels.matrix` prints it).

Samples, layers and timing runs are capped so the whole matrix stays in a few minutes on two
cores. Verbs that need a compressed model (evaluate, compare, distill) use the one the
matrix wrote itself: compress --int8 for evaluate and compare, compress --prune for distill.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tests.realmodels.suite import MODELS, MODELS_BY_NAME, RealModel, model_path

# Caps that keep the whole matrix near four minutes of wall time on two cores (make test):
# 8 samples calibrate (16 for the recognizer: suite.py) and evaluate, sweeps look at 2 layers
# on 4 samples, timings are a few runs (the matrix checks that every verb works, benchmarks/
# measures speed).
EVAL_SAMPLES = 8
TRAIN_SAMPLES = 10  # distillation trains on no fewer
CALIBRATION_SEED, EVAL_SEED, TRAIN_SEED = 1, 2, 3
SWEEP_SAMPLES = 4
SWEEP_LAYERS = 2
TIMED_RUNS = 3

VERBS = (
    "inspect",
    "compress --int8",
    "compress --fp16",
    "compress --int4",
    "compress --prune",
    "sensitivity",
    "autoplan",
    "evaluate",
    "bench",
    "compare",
    "deploy",
    "distill",
)
# Issue 14: these exit 0 with a result on every real model; the others may exit 2 with a
# one-line reason. Exit 3 (internal error) or a traceback fails everywhere.
MUST_SUCCEED = frozenset(
    {
        "inspect",
        "compress --int8",
        "compress --fp16",
        "compress --int4",
        "sensitivity",
        "evaluate",
        "bench",
    }
)


@dataclass(frozen=True)
class Cell:
    """One verb run on one model: what the user would see."""

    model: str
    verb: str
    exit_code: int
    seconds: float
    stdout: str
    stderr: str
    stray_files: tuple[str, ...] = ()  # what it left in the (empty) folder it ran in
    ran: bool = True  # False: the cell it needs a file from failed, so it was not run

    @property
    def result(self) -> dict[str, Any] | None:
        """The verb's --json output, when it printed one."""
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError:
            return None

    @property
    def reason(self) -> str:
        """The error line a user sees (exit 2 or 3)."""
        lines = [line for line in self.stderr.splitlines() if line.startswith("error:")]
        return lines[-1].removeprefix("error:").strip() if lines else ""


class Workspace:
    """Model files, their data as .npz and every cell's outputs under one scratch folder;
    each cell runs once (later cells reuse what earlier ones wrote)."""

    def __init__(self, cache: Path, scratch: Path) -> None:
        self.cache, self.scratch = cache, scratch
        self._cells: dict[tuple[str, str], Cell] = {}

    def folder(self, model: RealModel) -> Path:
        folder = self.scratch / model.name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def model_file(self, model: RealModel) -> Path:
        return model_path(model, self.cache, self.scratch)

    def data_file(self, model: RealModel, split: str) -> Path:
        """`calib`, `eval` and `train`: different renderings (seeds) of the same kind of data."""
        path = self.folder(model) / f"{split}.npz"
        if not path.exists():
            count, seed = {
                "calib": (model.calibration_samples, CALIBRATION_SEED),
                "eval": (EVAL_SAMPLES, EVAL_SEED),
                "train": (TRAIN_SAMPLES, TRAIN_SEED),
            }[split]
            np.savez(path, **model.data(count, seed))
        return path

    def output(self, model: RealModel, name: str) -> Path:
        return self.folder(model) / name

    def cell(self, model_name: str, verb: str) -> Cell:
        key = (model_name, verb)
        if key not in self._cells:
            model = MODELS_BY_NAME[model_name]
            try:
                argv = self.argv(model, verb)
            except PrerequisiteFailed as failed:
                self._cells[key] = failed.cell_for(model_name, verb)
            else:
                folder = self.scratch / "cwd" / f"{model_name}-{verb.replace(' ', '')}"
                self._cells[key] = run_cli(model_name, verb, argv, folder)
        return self._cells[key]

    def argv(self, model: RealModel, verb: str) -> list[str]:
        """The command line of one cell (prerequisite cells run first)."""
        path, shape = str(self.model_file(model)), model.shape_flags
        calib, held_out = str(self.data_file(model, "calib")), str(self.data_file(model, "eval"))
        out = self.output

        if verb == "inspect":
            return ["inspect", path, "--json", *shape]
        if verb.startswith("compress"):
            flag = verb.split()[1]
            # channels, so that the file shrinks (zeros in place keep its size) and distill
            # gets a smaller student
            action = ["--prune", "0.5", "--pattern", "channel"] if flag == "--prune" else [flag]
            name = f"{flag.removeprefix('--')}.onnx"
            data = ["--data", calib, "--eval-data", held_out]
            return ["compress", path, *action, *data, "-o", str(out(model, name)), *_quiet(shape)]
        if verb == "sensitivity":
            sweep = [*_sweep_caps(), "--options", "int8"]
            return ["sensitivity", path, "--data", held_out, *sweep, "--no-cache", "--json", *shape]
        if verb == "autoplan":
            sweep = [*_sweep_caps(), "--verify", "simulated"]
            recipe = str(out(model, "autoplan.json"))
            budget = ["--max-drop", "2"]  # a size goal may be out of reach of a capped sweep
            return [
                "autoplan",
                path,
                "--data",
                held_out,
                *sweep,
                *budget,
                "-o",
                recipe,
                "--json",
                *shape,
            ]
        if verb == "evaluate":
            return [
                "evaluate",
                path,
                self._written(model, "compress --int8", "int8.onnx"),
                "--data",
                held_out,
                "--json",
                *shape,
            ]
        if verb == "bench":
            runs = ["--warmup", "1", "--runs", str(TIMED_RUNS), "--threads", "2"]
            # the timed runs feed real data: silero-vad's sample rate picks its 16 kHz branch
            return ["bench", path, *runs, "--data", held_out, "--json", *shape]
        if verb == "compare":
            compressed = self._written(model, "compress --int8", "int8.onnx")
            return [
                "compare",
                path,
                compressed,
                "--data",
                held_out,
                "--samples",
                str(SWEEP_SAMPLES),
                "--json",
                *shape,
            ]
        if verb == "deploy":
            timing = ["--forms", "ort-fp32,ort-int8", "--rounds", "1", "--runs", str(TIMED_RUNS)]
            return [
                "deploy",
                path,
                "-o",
                str(out(model, "deploy")),
                "--data",
                held_out,
                *timing,
                "--json",
                *shape,
            ]
        if verb == "distill":
            student = self._written(model, "compress --prune", "prune.onnx")
            train = str(self.data_file(model, "train"))
            training = ["--data", train, "--eval-data", held_out, "--epochs", "1"]
            return [
                "distill",
                path,
                student,
                *training,
                "--int8",
                "-o",
                str(out(model, "distilled.onnx")),
                *_quiet(shape),
            ]
        raise ValueError(f"unknown verb {verb!r}")

    def _written(self, model: RealModel, verb: str, name: str) -> str:
        """The file a prerequisite cell wrote (it runs first if it has not); raises
        PrerequisiteFailed when that cell failed and so wrote nothing."""
        prerequisite = self.cell(model.name, verb)
        if prerequisite.exit_code != 0:
            raise PrerequisiteFailed(prerequisite)
        return str(self.output(model, name))


class PrerequisiteFailed(Exception):
    """A cell cannot run: the cell that writes its input file failed."""

    def __init__(self, prerequisite: Cell) -> None:
        super().__init__(prerequisite.reason)
        self.prerequisite = prerequisite

    def cell_for(self, model_name: str, verb: str) -> Cell:
        """The cell not run, with the prerequisite's exit code and its reason as its own."""
        before = self.prerequisite
        why = before.reason or f"exit {before.exit_code}"
        line = f"error: not run: its input comes from {before.verb}, which failed: {why}"
        return Cell(model_name, verb, before.exit_code, 0.0, "", line + "\n", ran=False)


def _sweep_caps() -> list[str]:
    return ["--samples", str(SWEEP_SAMPLES), "--layers", str(SWEEP_LAYERS), "--workers", "1"]


def _quiet(shape: list[str]) -> list[str]:
    return ["--json", "--no-latency", *shape]


def run_cli(model_name: str, verb: str, argv: list[str], folder: Path) -> Cell:
    """One command through the CLI's own entry point, its output captured, run in an empty
    `folder` as working directory: the tool writes nothing outside its output paths (the
    symbolic shape inference of onnxruntime saves files into the working directory)."""
    from compressor_gui.cli import main

    folder.mkdir(parents=True, exist_ok=True)
    stdout, stderr = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with (
        contextlib.chdir(folder),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        exit_code = main(argv)
    seconds = time.perf_counter() - start
    stray = tuple(sorted(path.name for path in folder.iterdir()))
    return Cell(model_name, verb, exit_code, seconds, stdout.getvalue(), stderr.getvalue(), stray)


def summary(cell: Cell) -> str:
    """The cell's key figure for the README table, or its exit code and reason."""
    result = cell.result
    if not cell.ran:
        return cell.reason
    if cell.exit_code != 0 or result is None:
        return f"exit {cell.exit_code}: {cell.reason or cell.stderr.strip()[-120:]}"
    verb = cell.verb
    if verb == "inspect":
        return f"{len(result['layers'])} layers"
    if verb.startswith("compress") or verb == "distill":
        ratio = result["after"]["size_bytes"] / result["before"]["size_bytes"]
        quality = result["after"]["eval"]
        top1 = quality.get("top1")
        text = f"{ratio:.2f}x, cos {quality['cosine']:.4f}"
        return text + (f", top-1 {100 * top1:.1f}%" if top1 is not None else "")
    if verb == "sensitivity":
        layers = {point["layer"] for point in result["points"]}
        return f"{len(layers)} layers swept"
    if verb == "autoplan":
        return f"plan {result['chosen']['predicted_ratio']:.1f}x"
    if verb == "evaluate":
        compressed = list(result["results"].values())[-1]
        return f"cos {compressed['cosine']:.4f}"
    if verb == "bench":
        return f"p50 {result['latency']['p50_ms']:.1f} ms"
    if verb == "compare":
        return f"worst: {result['keep_float'][0]}" if result["keep_float"] else "no layer"
    if verb == "deploy":
        return f"recommended {result['recommended']}"
    return "ok"


def markdown_table(cells: list[Cell]) -> str:
    """Verb rows x model columns, each cell its summary and seconds."""
    models = list(dict.fromkeys(cell.model for cell in cells))
    by_key = {(cell.model, cell.verb): cell for cell in cells}
    lines = ["| verb | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    for verb in dict.fromkeys(cell.verb for cell in cells):
        row = []
        for model in models:
            cell = by_key.get((model, verb))
            row.append(f"{summary(cell)} ({cell.seconds:.0f} s)" if cell else "")
        lines.append(f"| {verb} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the matrix (or `--models`/`--verbs` of it) and print the README table."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default=",".join(m.name for m in MODELS))
    parser.add_argument("--verbs", default=",".join(VERBS))
    args = parser.parse_args(argv)
    cache = Path(__file__).resolve().parents[2] / ".cache" / "models"
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["COMPRESSOR_GUI_CACHE_DIR"] = str(Path(scratch) / "cache")
        workspace = Workspace(cache, Path(scratch))
        cells = []
        for name in args.models.split(","):
            for verb in args.verbs.split(","):
                cells.append(workspace.cell(name, verb))
                print(f"{name} {verb}: {summary(cells[-1])}", file=sys.stderr, flush=True)
    print(markdown_table(cells))
    cpu_seconds = sum(
        usage.ru_utime + usage.ru_stime
        for usage in (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
    )
    wall_seconds = sum(cell.seconds for cell in cells)
    print(f"\n{wall_seconds:.0f} s wall, {cpu_seconds:.0f} s CPU (this process and its children)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
