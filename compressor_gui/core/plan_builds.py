"""A candidate plan measured: simulated in one session (weights only), or built for real by
the compress job in a worker's own folder, recovery by distillation included. The automatic
plan measures every plan it considers through these, locally or on a cluster's workers."""

from __future__ import annotations

import dataclasses
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

import onnx

from compressor_gui.core.data import Dataset, demo_dataset, is_demo_model
from compressor_gui.core.distill_types import DistillOptions
from compressor_gui.core.hardware import MachineInfo, local_machine
from compressor_gui.core.jobs import run_job
from compressor_gui.core.model import LoadedModel
from compressor_gui.core.plan import CompressionPlan
from compressor_gui.core.sensitivity import (
    OverrideSession,
    Reference,
    SensitivityTable,
    measure,
    swept_layers,
)

# --- verification --------------------------------------------------------------------------


def simulated_verifier(loaded: LoadedModel, dataset: Dataset, table: SensitivityTable):
    """Measure a plan by running all its simulated weights in one session (no graph rebuild):
    weight-only, so INT8 activation quantization is not part of the figure."""
    model = loaded.onnx_model
    session = OverrideSession(model, swept_layers(model, table.layers), threads=2)
    batches = list(dataset.batches(256))
    reference = Reference(session.run(batches, {}), dataset.labels)

    def verify(plan: CompressionPlan) -> tuple[float, float, int | None]:
        value, drop, _ = measure(session, batches, reference, dict(plan.layers))
        return value, drop, None

    return verify


@dataclass(frozen=True)
class BuildWork:
    """What a worker needs to build and evaluate plans (sent once): the model as ONNX, the
    data, and the machine the model is for (the INT8 form is chosen for it, not the worker)."""

    name: str
    model_bytes: bytes
    dataset: Dataset
    calibration: Dataset | None
    target: MachineInfo
    recovery: DistillOptions | None = None  # how a plan with distill_epochs trains
    unlabeled: Dataset | None = None  # more training samples for recovery, without labels


@dataclass
class BuildState:
    folder: Path
    loaded: LoadedModel
    work: BuildWork
    built: int = 0


def build_work(
    loaded: LoadedModel,
    dataset: Dataset,
    calibration: Dataset | None,
    machine: MachineInfo | None = None,
    recovery: DistillOptions | None = None,
    unlabeled: Dataset | None = None,
) -> BuildWork:
    if calibration is None and is_demo_model(loaded.path):  # what compress_job would take
        calibration = demo_dataset(loaded.onnx_model, "calib")
    model_bytes = loaded.onnx_model.SerializeToString()
    target = machine or local_machine()
    return BuildWork(
        loaded.path.name, model_bytes, dataset, calibration, target, recovery, unlabeled
    )


def build_setup(work: BuildWork) -> BuildState:
    """A worker's own copy of the model file in a temporary folder (removed with the state)."""
    folder = tempfile.TemporaryDirectory(prefix="autoplan-worker-")
    path = Path(folder.name) / f"{Path(work.name).stem}.onnx"
    path.write_bytes(work.model_bytes)
    loaded = LoadedModel(path, "onnx", onnx.load_from_string(work.model_bytes))
    state = BuildState(path.parent, loaded, work)
    weakref.finalize(state, folder.cleanup)
    return state


def build_plan(state: BuildState, plan: CompressionPlan) -> tuple[float, float, int | None]:
    """(metric value, drop in points, written file size) of `plan` built for real."""
    from compressor_gui.core.compress import compress_job

    out = state.folder / f"candidate{state.built}.onnx"
    state.built += 1
    work = state.work
    recovery = None
    if plan.distill_epochs:
        recovery = dataclasses.replace(
            work.recovery or DistillOptions(qat=True), epochs=plan.distill_epochs
        )
    try:
        result = run_job(
            compress_job(
                state.loaded,
                plan,
                out,
                work.calibration,
                eval_data=work.dataset,
                latency=False,
                target=work.target,
                distill=recovery,
                unlabeled=work.unlabeled if recovery else None,
            )
        )
    finally:
        out.unlink(missing_ok=True)
    before, after = result.before.eval, result.after.eval
    key = "top1" if work.dataset.labels is not None else "agreement_top1"
    baseline = 1.0 if key == "agreement_top1" else getattr(before, key)
    value = getattr(after, key)
    return value, 100.0 * (baseline - value), result.after.size_bytes
