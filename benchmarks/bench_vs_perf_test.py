"""Our median latency vs a plain `InferenceSession.run` loop (and onnxruntime_perf_test if it is
on PATH), same model, same threads, printed side by side. Goal: ours within 5% of the plain loop.

    .venv/bin/python benchmarks/bench_vs_perf_test.py [MODEL] [--runs 500] [--threads 2]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compressor_gui.core.jobs import run_job  # noqa: E402
from compressor_gui.targets.base import BenchConfig  # noqa: E402
from compressor_gui.targets.local import LocalTarget  # noqa: E402

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "resources" / "demo.onnx"


def plain_loop_median_ms(model: Path, runs: int, warmup: int, threads: int) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    feeds = {}
    for spec in session.get_inputs():
        dims = [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]
        feeds[spec.name] = np.random.default_rng(0).standard_normal(dims).astype(np.float32)
    for _ in range(warmup):
        session.run(None, feeds)
    samples = []
    for _ in range(runs):
        begin = time.perf_counter()
        session.run(None, feeds)
        samples.append((time.perf_counter() - begin) * 1000.0)
    return statistics.median(samples)


def perf_test_median_ms(model: Path, runs: int, threads: int) -> float | None:
    tool = shutil.which("onnxruntime_perf_test")
    if tool is None:
        return None
    out = subprocess.run(
        [tool, "-e", "cpu", "-m", "times", "-r", str(runs), "-x", str(threads), str(model)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    match = re.search(r"P50 Latency: ([\d.e-]+) s", out)
    return float(match.group(1)) * 1000.0 if match else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=str(DEFAULT_MODEL))
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="alternate ours/plain this often")
    args = parser.parse_args()
    model = Path(args.model)
    ours, plain = [], []
    config = BenchConfig(warmup=args.warmup, runs=args.runs, threads=args.threads)
    for _ in range(args.rounds):  # alternate so that machine noise hits both alike
        ours.append(run_job(LocalTarget().benchmark(model, config)).latency.p50_ms)
        plain.append(plain_loop_median_ms(model, args.runs, args.warmup, args.threads))
    ours_ms, plain_ms = statistics.median(ours), statistics.median(plain)
    perf_ms = perf_test_median_ms(model, args.runs, args.threads)
    print(f"model {model.name}, {args.runs} runs x {args.rounds} rounds, {args.threads} threads")
    print(f"{'compressor-gui bench (child process)':40s} median {ours_ms:8.3f} ms")
    print(f"{'plain InferenceSession.run loop':40s} median {plain_ms:8.3f} ms")
    if perf_ms is None:
        print(f"{'onnxruntime_perf_test':40s} not on PATH (not in the onnxruntime wheel)")
    else:
        print(f"{'onnxruntime_perf_test':40s} median {perf_ms:8.3f} ms")
    ratio = ours_ms / plain_ms
    verdict = "OK" if abs(ratio - 1) <= 0.05 else "OUTSIDE 5%"
    print(f"ours / plain loop = {ratio:.3f} ({verdict}); per round ours {ours}, plain {plain}")


if __name__ == "__main__":
    main()
