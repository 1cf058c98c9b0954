"""How fast the plan's live prediction is (it runs on every slider move): 200 and 2,000 layers.

Run: .venv/bin/python benchmarks/plan_predict.py   (prints ms per prediction; say the CPU)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compressor_gui.core.hardware import local_machine  # noqa: E402
from compressor_gui.core.plan import CompressionPlan  # noqa: E402
from tests.core.test_plan import many_conv_layers  # noqa: E402


def per_prediction_ms(layer_count: int, repeats: int = 20) -> float:
    inventory = many_conv_layers(layer_count)
    plan = CompressionPlan.from_dict(
        {"default": 8, "layers": {"*layer1*": 4, "/layer7/conv/Conv": {"prune_ratio": 0.5}}}
    )
    plan.predict(inventory)
    start = time.perf_counter()
    for _ in range(repeats):
        plan.predict(inventory)
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    print(f"machine: {local_machine().summary}")
    for count in (200, 2000):
        print(f"{count:>5} layers: {per_prediction_ms(count):7.2f} ms per prediction")


if __name__ == "__main__":
    main()
