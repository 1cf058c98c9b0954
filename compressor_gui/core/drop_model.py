"""From output noise to accuracy drop: the curve the automatic plan predicts with, fitted on
what was measured (single-layer sweep points and whole plans really built)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from compressor_gui.core.sensitivity import SensitivityPoint, SensitivityTable


def output_noise(point: SensitivityPoint) -> float:
    """A measured point's output noise / signal energy (from its output SQNR; 1 without)."""
    return 10 ** (-(point.output_sqnr_db if point.output_sqnr_db is not None else 0.0) / 10)


@dataclass(frozen=True)
class DropModel:
    """Predicted drop (points) from total output noise, fitted on measured points: the
    sweep's single-layer points and measured whole plans (a float sweep corrected by
    measured checks). A non-decreasing curve through (noise, drop) by weighted
    pool-adjacent-violators, read with interpolation in log-noise; a measured plan weighs
    as much as the layers it changes. No constant is assumed."""

    log_noise: tuple[float, ...]
    drops: tuple[float, ...]

    @classmethod
    def fit(
        cls, table: SensitivityTable, checks: Sequence[tuple[float, float, int]] = ()
    ) -> DropModel:
        """`checks`: (total noise, measured drop, layers changed) of plans really built."""
        pairs = [
            (math.log10(max(output_noise(p), 1e-20)), max(p.drop, 0.0), 1.0)
            for p in table.points
            if p.measured
        ]
        pairs += [(math.log10(max(n, 1e-20)), max(d, 0.0), float(max(w, 1))) for n, d, w in checks]
        if not pairs:
            return cls((0.0,), (0.0,))
        blocks: list[list[float]] = []  # [weighted x, weighted drop, weight], non-decreasing
        for x, drop, weight in sorted(pairs):
            blocks.append([x * weight, drop * weight, weight])
            while len(blocks) > 1 and blocks[-2][1] / blocks[-2][2] > blocks[-1][1] / blocks[-1][2]:
                last = blocks.pop()
                blocks[-1] = [a + b for a, b in zip(blocks[-1], last, strict=True)]
        return cls(tuple(b[0] / b[2] for b in blocks), tuple(b[1] / b[2] for b in blocks))

    def drop(self, noise: float) -> float:
        """Predicted drop for a total noise (0 noise: 0 points)."""
        if noise <= 0:
            return 0.0
        return float(np.interp(math.log10(noise), self.log_noise, self.drops, left=0.0))

    def noise_for(self, drop: float) -> float:
        """The largest total noise whose predicted drop is at most `drop`."""
        allowed = [x for x, d in zip(self.log_noise, self.drops, strict=True) if d <= drop]
        if not allowed:
            return 0.0
        higher = [x for x in self.log_noise if x > allowed[-1]]
        if not higher:
            return 10 ** allowed[-1]
        # between the last knot within the budget and the next one, interpolate
        x0, x1 = allowed[-1], higher[0]
        d0, d1 = self.drop(10**x0), self.drop(10**x1)
        x = x0 if d1 <= d0 else x0 + (x1 - x0) * (drop - d0) / (d1 - d0)
        return 10 ** min(x, x1)
