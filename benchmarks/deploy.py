"""Deploy on this machine, side by side in one run: what `compressor-gui deploy` recommends
against the best peer (OpenVINO + NNCF INT8 with its defaults), on a generated
ResNet-18-style 224 and on a small transformer encoder block.

    .venv/bin/python benchmarks/deploy.py [--rounds 5] [--runs 30] [--threads 2]

Every form is built, timed on this machine in interleaved rounds (median of rounds) and
scored on random inputs against onnxruntime FP32 (output cosine, budget >= 0.99: generated
models have no labels). The header names the CPU, so figures from different machines can
be put side by side honestly.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from compressor_gui.core.deploy import DeployResult  # noqa: E402
from compressor_gui.core.hardware import local_machine  # noqa: E402
from compressor_gui.core.jobs import run_job  # noqa: E402
from compressor_gui.core.model import ModelSource  # noqa: E402
from compressor_gui.targets.deploy import Timing, deploy_job  # noqa: E402
from compressor_gui.targets.local import LocalTarget  # noqa: E402
from tests.torchmodels import resnet18_style, transformer_block  # noqa: E402

PEER = "ov-int8"  # OpenVINO + NNCF INT8 post-training quantization, default settings


def show(name: str, result: DeployResult, seconds: float) -> None:
    base = result.row("ort-fp32")
    chosen = result.row(result.recommendation.key)
    print(f"\n{name} ({seconds:.0f} s to build, time and score {len(result.rows)} forms)")
    print(f"{'form':<22} {'p50 ms':>8} {'p90 ms':>8} {'vs FP32':>8} {'cosine':>8} {'MiB':>6}")
    for row in sorted(result.rows, key=lambda r: r.p50_ms or 1e9):
        mark = "*" if row.key == chosen.key else " "
        speed = f"{base.p50_ms / row.p50_ms:.2f}x" if row.p50_ms else "n/a"
        cosine = f"{row.cosine:.4f}" if row.cosine is not None else "n/a"
        p50 = f"{row.p50_ms:.2f}" if row.p50_ms else "n/a"
        p90 = f"{row.p90_ms:.2f}" if row.p90_ms else "n/a"
        print(
            f"{mark}{row.label:<21} {p50:>8} {p90:>8} {speed:>8} {cosine:>8} "
            f"{row.size_bytes / 2**20:6.2f}" + (f"  {row.error[:60]}" if row.error else "")
        )
    print(f"recommended: {result.recommendation.reason}")
    peer = next((r for r in result.rows if r.key == PEER and r.p50_ms), None)
    if peer is not None:
        print(
            f"recommended vs {peer.label} (peer, NNCF defaults): "
            f"{peer.p50_ms / chosen.p50_ms:.2f}x ({chosen.p50_ms:.2f} vs {peer.p50_ms:.2f} ms)"
        )
    print(f"recommended vs onnxruntime FP32: {base.p50_ms / chosen.p50_ms:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    machine = local_machine()
    print(f"CPU: {machine.summary}; INT8 family {machine.isa_class}")
    timing = Timing(rounds=args.rounds, runs=args.runs, threads=args.threads)
    print(f"latency: {timing.describe()}")
    folder = Path(tempfile.mkdtemp(prefix="deploy-bench-"))
    try:
        models = [
            ("ResNet-18-style 224, batch 1", resnet18_style(folder / "models")),
            ("transformer encoder block (seq 32, dim 64)", transformer_block(folder / "models")),
        ]
        for index, (name, path) in enumerate(models):
            work = folder / f"work{index}"
            work.mkdir()
            started = time.perf_counter()
            job = deploy_job(ModelSource(path), LocalTarget(), work, timing=timing)
            result = run_job(job)
            show(name, result, time.perf_counter() - started)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
