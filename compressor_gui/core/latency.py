"""The one latency type: percentiles of timed runs, as every door and target reports them.

A compress job's timing on this CPU, a benchmark on a local runtime, a remote runner, trtexec
on a Jetson and a deploy's median over rounds all end in `LatencyStats`, so a figure means
the same wherever it was measured and says how many runs at how many threads made it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from compressor_gui.core.errors import TargetError


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-run latencies in milliseconds; `threads` 0: the runtime's default."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    runs: int
    threads: int = 0

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float], threads: int = 0) -> LatencyStats:
        if not samples_ms:
            raise TargetError("the benchmark produced no timed runs")
        ordered = sorted(samples_ms)
        return cls(
            p50_ms=percentile(ordered, 50),
            p90_ms=percentile(ordered, 90),
            p99_ms=percentile(ordered, 99),
            mean_ms=sum(ordered) / len(ordered),
            min_ms=ordered[0],
            max_ms=ordered[-1],
            runs=len(ordered),
            threads=threads,
        )


def percentile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile of already sorted values (numpy's default method)."""
    position = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
