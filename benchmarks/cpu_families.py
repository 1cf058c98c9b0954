"""INT8 on the machine that runs it: each INT8 form and the automatic choice, side by side.

Run: .venv/bin/python benchmarks/cpu_families.py [--skip-autoplan]

One run sees one CPU; the header names it (model, INT8 family, flags), so figures from
different machines can be put side by side honestly. On the demo (450 held-out digits) it
compresses with each INT8 form and with `auto` (the form measured for this CPU), then
evaluates and times every result in the same run with the same feed and threads; then it
runs the auto plan at --max-drop 1 (tuned on the calibration split, measured on the eval
split) and prints the first solve's predicted drop beside the measured one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from compressor_gui.core.compress import compress_job  # noqa: E402
from compressor_gui.core.data import demo_dataset  # noqa: E402
from compressor_gui.core.hardware import local_machine  # noqa: E402
from compressor_gui.core.jobs import run_job  # noqa: E402
from compressor_gui.core.model import load_model  # noqa: E402
from compressor_gui.core.plan import CompressionPlan, LayerSetting  # noqa: E402
from compressor_gui.core.search import Budget, autoplan_job  # noqa: E402

DEMO = REPO / "resources" / "demo.onnx"


def forms_table(folder: Path) -> None:
    loaded = load_model(DEMO)
    print(
        f"{'INT8 form':<9}  {'size':>7}  {'top-1':>7}  {'drop':>8}  {'cosine':>7}  "
        f"{'p50 ms':>7}  {'vs FP32':>8}  chosen / why"
    )
    for form in ("u8s8", "u8s8-rr", "u8u8", "auto"):
        plan = CompressionPlan(default=LayerSetting(bits=8), int8_form=form)
        started = time.perf_counter()
        result = run_job(compress_job(loaded, plan, folder / f"{form}.onnx"))
        seconds = time.perf_counter() - started
        before, after = result.before, result.after
        drop = 100 * (before.eval.top1 - after.eval.top1)
        speed = before.latency.p50_ms / after.latency.p50_ms
        why = result.int8_form if form == "auto" else ""
        print(
            f"{form:<9}  {after.size_bytes / before.size_bytes:6.2f}x  {after.eval.top1:7.2%}  "
            f"{drop:+7.2f}pt  {after.eval.cosine:7.4f}  {after.latency.p50_ms:7.3f}  "
            f"{speed:7.2f}x  {why} ({seconds:.1f} s)"
        )
    print(f"FP32 top-1 {before.eval.top1:.2%}, p50 {before.latency.p50_ms:.3f} ms")


def autoplan_table() -> None:
    loaded = load_model(DEMO)
    evald = demo_dataset(loaded.onnx_model, "eval")
    started = time.perf_counter()
    result = run_job(
        autoplan_job(
            loaded,
            evald,
            Budget(max_drop=1.0),
            calibration=demo_dataset(loaded.onnx_model, "calib"),
        )
    )
    seconds = time.perf_counter() - started
    file_bytes = loaded.file_size_bytes
    print(f"auto plan --max-drop 1 on the demo ({seconds:.0f} s):")
    print(f"  {'candidate':<26} {'file vs FP32':>12} {'pred. drop':>10} {'meas. drop':>10}")
    for c in result.candidates:
        mark = "*" if c is result.chosen else " "
        ratio = file_bytes / c.measured_size_bytes if c.measured_size_bytes else float("nan")
        print(
            f" {mark}{c.label:<26} {ratio:11.2f}x {c.predicted_drop:9.2f}  {c.measured_drop:9.2f}"
        )
    first = next(c for c in result.candidates if c.label == "auto")
    gap = abs(first.predicted_drop - first.measured_drop)
    print(
        f"  first solve: predicted {first.predicted_drop:.2f} pt, measured "
        f"{first.measured_drop:.2f} pt (|diff| {gap:.2f})"
    )
    for note in result.notes:
        print(f"  note: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-autoplan", action="store_true")
    args = parser.parse_args()
    machine = local_machine()
    print(f"CPU: {machine.summary}")
    print(f"INT8 family: {machine.isa_class} (u8s8 sums saturate: {machine.u8s8_saturates})\n")
    with tempfile.TemporaryDirectory() as tmp:
        forms_table(Path(tmp))
    if not args.skip_autoplan:
        print()
        autoplan_table()


if __name__ == "__main__":
    main()
