"""Win accuracy back after compression: knowledge distillation, optionally quantization-aware.

The teacher is the original model (run by onnxruntime, or by its own torch module when it
came from TorchScript or .pt2), the student the compressed graph converted to torch
(`torch_graph`). Loss: alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(labels)
(Hinton et al. 2015; defaults T=4, alpha=0.7); a sample without a label has the soft term
alone, so unlabeled data (which fine-tuning on labels cannot use) teaches too. A model that
is not a classifier (detector, DB text map, VAD, encoder) learns every float output instead
(`distill_objective`) and is judged by the output cosine to the original; optional
FitNets hints: MSE between named intermediate tensors, through a learned 1x1 regressor
where the student has fewer channels. Pruned zeros stay zero; with QAT the plan's bit widths
are simulated (`qat`). A validation part of the TRAINING data, unlabeled samples included,
picks the best epoch (never the evaluation set); stopping early keeps the best so far. The
result is the student graph with its trained weights, for the existing writer to quantize.

This module is the job's entry and needs no torch (the desktop bundle leaves torch out); its
options and results are `distill_types`, the training loop is `trainer`.
"""

from __future__ import annotations

import onnx

from compressor_gui.core.data import Dataset
from compressor_gui.core.distill_types import DistillOptions, DistillReport
from compressor_gui.core.errors import CompressorError
from compressor_gui.core.hardware import MachineInfo
from compressor_gui.core.jobs import CancelToken, Job
from compressor_gui.core.model import LoadedModel
from compressor_gui.core.plan import CompressionPlan


def distill_job(
    teacher: onnx.ModelProto,
    student: onnx.ModelProto,
    data: Dataset,
    options: DistillOptions | None = None,
    plan: CompressionPlan | None = None,
    cancel: CancelToken | None = None,
    *,
    finish: CancelToken | None = None,
    machine: MachineInfo | None = None,
    unlabeled: Dataset | None = None,
    teacher_module: LoadedModel | None = None,
) -> Job[tuple[onnx.ModelProto, DistillReport]]:
    """Train `student` towards `teacher` on `data`; return the student graph with its best
    weights and a report. `unlabeled`: more samples of the same inputs, without labels, that
    the teacher labels (soft targets), which fine-tuning on labels alone could not use. With
    `options.qat`, `plan` (resolved on the student) says which bit width each layer
    simulates; `machine` (default: this one) decides the INT8 form. `teacher_module`: the
    teacher as opened from a TorchScript or .pt2 file, whose torch module then computes the
    soft targets itself. `cancel` or `finish` stop the training at the next batch; the best
    epoch so far is returned."""
    try:
        from compressor_gui.core.trainer import TorchTeacher, train_job
    except ImportError as exc:
        raise CompressorError(
            f"distillation needs PyTorch ({exc}); the desktop bundle leaves it out: use the "
            "pip-installed compressor-gui"
        ) from exc
    stop = [token for token in (cancel, finish) if token is not None]
    options = options or DistillOptions()
    module = None
    if teacher_module is not None and teacher_module.format in TORCH_TEACHERS:
        module = TorchTeacher(*teacher_callable(teacher_module))
    return (
        yield from train_job(
            teacher, student, data, options, plan, stop, machine, unlabeled, module
        )
    )


TORCH_TEACHERS = ("torchscript", "pt2")


def teacher_callable(loaded: LoadedModel):
    """(module, kind, max_batch) of a TorchScript module or an exported program (which keeps
    the batch it was exported with)."""
    if loaded.format == "pt2":
        shapes = loaded.input_shapes
        return loaded.torch_module.module(), "torch.export", shapes[0][0] if shapes else None
    return loaded.torch_module, "TorchScript", None
