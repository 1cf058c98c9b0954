"""Evaluate on a target: its own runtime computes every output, and the scores are computed
here by core/evaluate.py's one rule, so the number shipped on is the number the device
computes, measured the same way as everywhere else in the app."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import onnx

from compressor_gui.core.data import Dataset
from compressor_gui.core.evaluate import EvalResult, score
from compressor_gui.core.hardware import MachineInfo
from compressor_gui.core.jobs import CancelToken, Job, Progress
from compressor_gui.targets.base import BenchConfig, Target


@dataclass(frozen=True)
class TargetEvaluation:
    """Accuracy and fidelity of each model (the first is the reference), and where they ran."""

    target: str
    machine: MachineInfo
    runtime: str
    data_source: str
    results: Mapping[str, EvalResult]

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "machine": self.machine.to_dict(),
            "machine_summary": self.machine.summary,
            "runtime": self.runtime,
            "data": self.data_source,
            "results": {label: asdict(result) for label, result in self.results.items()},
        }


def evaluate_on_target(
    target: Target,
    models: Sequence[tuple[str, onnx.ModelProto | Path]],
    dataset: Dataset,
    config: BenchConfig | None = None,
    cancel: CancelToken | None = None,
) -> Job[TargetEvaluation]:
    """Run every (label, model) on `target` over `dataset`; score each against the labels
    and the first model's outputs."""
    run = yield from target.model_outputs(models, dataset, config, cancel)
    results: dict[str, EvalResult] = {}
    reference = None
    for (label, _), outputs in zip(models, run.outputs, strict=True):
        results[label] = score(outputs, dataset, reference)
        reference = outputs if reference is None else reference
    yield Progress(1, 1, "scored")
    return TargetEvaluation(target.name, run.machine, run.runtime, dataset.source, results)
