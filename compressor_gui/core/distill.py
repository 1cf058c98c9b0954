"""Win accuracy back after compression: knowledge distillation, optionally quantization-aware.

The teacher is the original model (run by onnxruntime, or by its own torch module when it
came from TorchScript or .pt2), the student the compressed graph converted to torch
(`torch_graph`). Loss: alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(labels)
(Hinton et al. 2015; defaults T=4, alpha=0.7); a sample without a label has the soft term
alone, so unlabeled data (which fine-tuning on labels cannot use) teaches too; optional
FitNets hints: MSE between named intermediate tensors, through a learned 1x1 regressor
where the student has fewer channels. Pruned zeros stay zero; with QAT the plan's bit widths
are simulated (`qat`). A validation part of the TRAINING data, unlabeled samples included,
picks the best epoch (never the evaluation set); stopping early keeps the best so far. The
result is the student graph with its trained weights, for the existing writer to quantize.

This module is the job's interface and needs no torch (the desktop bundle leaves torch out;
the GUI unpickles these results); the training loop is `trainer`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from compressor_gui.core.data import Dataset
from compressor_gui.core.errors import CompressorError
from compressor_gui.core.hardware import MachineInfo
from compressor_gui.core.jobs import CancelToken, Job
from compressor_gui.core.model import LoadedModel
from compressor_gui.core.plan import CompressionPlan

AUGMENTATIONS = ("auto", "none", "crop", "crop+flip")


@dataclass(frozen=True)
class DistillOptions:
    """How to train. `threads` None: all cores. `augment` "auto": random crops (shifts of
    1/16 of the side) where the data is images; flips only when asked ("crop+flip"), since
    a mirrored digit or page is not always the same class."""

    epochs: int = 10
    temperature: float = 4.0
    alpha: float = 0.7
    learning_rate: float = 3e-3  # Adam, cosine decay to 0 over the run
    batch_size: int = 32
    qat: bool = False
    features: tuple[str, ...] = ()  # FitNets hints: tensor names present in both graphs
    feature_weight: float = 1.0
    validation_fraction: float = 0.1
    augment: str = "auto"
    use_labels: bool = True  # False: soft targets only, even when the data has labels
    threads: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise CompressorError(f"epochs must be at least 1, not {self.epochs}")
        if not 0.0 <= self.alpha <= 1.0:
            raise CompressorError(f"alpha must be within 0..1, not {self.alpha}")
        if self.temperature <= 0:
            raise CompressorError(f"temperature must be above 0, not {self.temperature}")
        if self.augment not in AUGMENTATIONS:
            raise CompressorError(f"augment is one of {AUGMENTATIONS}, not {self.augment!r}")
        if not 0.0 < self.validation_fraction < 0.5:
            raise CompressorError("validation_fraction must be within 0..0.5")


@dataclass(frozen=True)
class EpochStats:
    """One epoch, as the live curve shows it (epoch 0: the student before training)."""

    epoch: int
    epochs: int
    train_loss: float | None
    val_loss: float
    val_top1: float | None  # on the validation samples that have labels
    val_agreement: float  # top-1 agreement with the teacher on the validation part
    seconds_left: float | None = None
    best: bool = False
    val_right: float = 0.0  # samples right: their label, else the teacher's top-1 (picks best)


@dataclass(frozen=True)
class QatLayer:
    """One layer trained with its quantization simulated, in words for the report."""

    name: str
    bits: int
    simulated: str


@dataclass(frozen=True)
class DistillReport:
    history: tuple[EpochStats, ...]
    best_epoch: int
    stopped_early: bool
    train_samples: int  # unlabeled ones included
    validation_samples: int
    seconds: float
    threads: int
    qat_layers: tuple[QatLayer, ...] = ()
    int8_form: str = ""  # the INT8 form QAT simulated ("" without INT8 QAT)
    teacher_val_top1: float | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    unlabeled_samples: int = 0  # extra samples the teacher alone labelled (soft targets)
    teacher_runtime: str = "onnxruntime"  # what computed the teacher's logits

    @property
    def before(self) -> EpochStats:
        return self.history[0]

    @property
    def best(self) -> EpochStats:
        return self.history[self.best_epoch]


def logits_name(model: onnx.ModelProto) -> str:
    """The tensor to distill on: the first output, or the input of the Softmax producing it
    (probabilities hide the teacher's dark knowledge; KD wants logits)."""
    output = model.graph.output[0].name
    producer = next((n for n in model.graph.node if output in n.output), None)
    if producer is not None and producer.op_type in ("Softmax", "LogSoftmax"):
        return producer.input[0]
    return output


def validation_split(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) sample indices: a seeded random `fraction` of the training data
    is held out to choose the best epoch."""
    order = np.random.default_rng(seed).permutation(count)
    held = max(1, int(round(count * fraction)))
    return np.sort(order[held:]), np.sort(order[:held])


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
