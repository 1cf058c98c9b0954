"""onnxruntime vs OpenVINO (strict FP32, and its default: BF16 on AMX CPUs) on one model, side by
side, through the same child-process runner the app uses.

    .venv/bin/python benchmarks/runtimes.py [MODEL] [--runs 300] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compressor_gui.core.jobs import run_job  # noqa: E402
from compressor_gui.targets.base import BenchConfig  # noqa: E402
from compressor_gui.targets.local import LocalTarget  # noqa: E402

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "resources" / "demo.onnx"
VARIANTS = [("ort", "fp32"), ("openvino", "fp32"), ("openvino", "default"), ("openvino", "bf16")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=str(DEFAULT_MODEL))
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1)
    args = parser.parse_args()
    target = LocalTarget()
    print(f"model {Path(args.model).name}, batch {args.batch_size}, {args.threads} threads")
    print(
        f"{'runtime':10s} {'precision':9s} {'p50 ms':>8s} {'p90 ms':>8s} {'create ms':>9s}  notes"
    )
    base_ms = None
    for runtime, precision in VARIANTS:
        config = BenchConfig(
            runtime=runtime,
            precision=precision,
            runs=args.runs,
            threads=args.threads,
            batch_size=args.batch_size,
        )
        result = run_job(target.benchmark(args.model, config))
        base_ms = base_ms or result.latency.p50_ms
        print(
            f"{runtime:10s} {precision:9s} {result.latency.p50_ms:8.3f} "
            f"{result.latency.p90_ms:8.3f} {result.session_create_ms:9.1f}  "
            f"x{base_ms / result.latency.p50_ms:.2f} vs ORT; {'; '.join(result.notes)}"
        )


if __name__ == "__main__":
    main()
