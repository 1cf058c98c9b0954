"""Deploy on this machine, side by side in one run: what `compressor-gui deploy` recommends
against the best peer (OpenVINO + NNCF INT8 with its defaults), on a generated
ResNet-18-style 224, a small transformer encoder block and the bundled demo.

    .venv/bin/python benchmarks/deploy.py [--rounds 5] [--runs 30] [--threads 2]
        [--models resnet,encoder,demo] [--recovery-epochs 10]

Every form is built (the channel-pruned ones too), timed on this machine in interleaved
rounds (median of rounds) and scored against onnxruntime FP32: the generated models have no
labels, so on random inputs by output cosine (budget >= 0.99) and their pruned forms are not
trained back; the demo has labelled splits, so top-1 (budget 1 pt) and its pruned forms are
distilled first. The header names the CPU, so figures from different machines can be put
side by side honestly.
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

DEMO = REPO / "resources" / "demo.onnx"

PEER = "ov-int8"  # OpenVINO + NNCF INT8 post-training quantization, default settings


def show(name: str, result: DeployResult, seconds: float) -> None:
    base = result.row("ort-fp32")
    chosen = result.row(result.recommendation.key)
    print(f"\n{name} ({seconds:.0f} s to build, time and score {len(result.rows)} forms)")
    peer = next((r for r in result.rows if r.key == PEER and r.p50_ms), None)
    print(
        f"{'form':<36} {'p50 ms':>8} {'p90 ms':>8} {'vs FP32':>8} {'vs peer':>8} "
        f"{'top-1':>7} {'cosine':>8} {'MiB':>6}"
    )
    for row in sorted(result.rows, key=lambda r: r.p50_ms or 1e9):
        mark = "*" if row.key == chosen.key else " "
        speed = f"{base.p50_ms / row.p50_ms:.2f}x" if row.p50_ms else "n/a"
        over_peer = f"{peer.p50_ms / row.p50_ms:.2f}x" if row.p50_ms and peer else "n/a"
        top1 = f"{100 * row.top1:.2f}" if row.top1 is not None else "n/a"
        cosine = f"{row.cosine:.4f}" if row.cosine is not None else "n/a"
        p50 = f"{row.p50_ms:.2f}" if row.p50_ms else "n/a"
        p90 = f"{row.p90_ms:.2f}" if row.p90_ms else "n/a"
        print(
            f"{mark}{row.label:<35} {p50:>8} {p90:>8} {speed:>8} {over_peer:>8} {top1:>7} "
            f"{cosine:>8} {row.size_bytes / 2**20:6.2f}"
            + (f"  {row.error[:60]}" if row.error else "")
        )
    print(f"recommended: {result.recommendation.reason}")
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
    parser.add_argument("--models", default="resnet,encoder,demo")
    parser.add_argument("--recovery-epochs", type=int, default=10)
    args = parser.parse_args()
    machine = local_machine()
    print(f"CPU: {machine.summary}; INT8 family {machine.isa_class}")
    timing = Timing(rounds=args.rounds, runs=args.runs, threads=args.threads)
    print(f"latency: {timing.describe()}")
    folder = Path(tempfile.mkdtemp(prefix="deploy-bench-"))
    try:
        makers = {
            "resnet": ("ResNet-18-style 224, batch 1", lambda: resnet18_style(folder / "m")),
            "encoder": ("transformer encoder (seq 32, dim 64)", lambda: transformer_block(folder)),
            "demo": ("bundled demo, 32x32 digits, labelled splits", lambda: DEMO),
        }
        models = [(makers[key][0], makers[key][1]()) for key in args.models.split(",")]
        for index, (name, path) in enumerate(models):
            work = folder / f"work{index}"
            work.mkdir()
            started = time.perf_counter()
            job = deploy_job(
                ModelSource(path),
                LocalTarget(),
                work,
                timing=timing,
                recovery_epochs=args.recovery_epochs,
            )
            result = run_job(job)
            show(name, result, time.perf_counter() - started)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
