"""Win accuracy back after compression: knowledge distillation, optionally quantization-aware.

The teacher is the original model (run by onnxruntime), the student the compressed graph
converted to torch (`torch_graph`). Loss: alpha * T^2 * KL(teacher_T || student_T) +
(1 - alpha) * CE(labels) (Hinton et al. 2015; defaults T=4, alpha=0.7); without labels only
the soft targets; optional FitNets hints: MSE between named intermediate tensors, through a
learned 1x1 regressor where the student has fewer channels. Pruned zeros stay zero; with QAT
the plan's bit widths are simulated (`qat`). A validation part of the TRAINING data picks
the best epoch (never the evaluation set); a cancel keeps the best so far. The result is the
student graph with its trained weights, for the existing writer to quantize as planned.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from compressor_gui.core.data import Dataset
from compressor_gui.core.errors import CompressorError
from compressor_gui.core.evaluate import make_session
from compressor_gui.core.hardware import MachineInfo, local_machine
from compressor_gui.core.jobs import CancelToken, EtaEstimator, Job, Progress
from compressor_gui.core.plan import CompressionPlan
from compressor_gui.core.qat import QatLayer, attach_fake_quant, training_form
from compressor_gui.core.torch_graph import GraphModule, to_torch, write_weights

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
    val_top1: float | None  # on the validation part, when it has labels
    val_agreement: float  # top-1 agreement with the teacher on the validation part
    seconds_left: float | None = None
    best: bool = False


@dataclass(frozen=True)
class DistillReport:
    history: tuple[EpochStats, ...]
    best_epoch: int
    cancelled: bool
    train_samples: int
    validation_samples: int
    seconds: float
    threads: int
    qat_layers: tuple[QatLayer, ...] = ()
    int8_form: str = ""  # the INT8 form QAT simulated ("" without INT8 QAT)
    teacher_val_top1: float | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

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


def distill_job(
    teacher: onnx.ModelProto,
    student: onnx.ModelProto,
    data: Dataset,
    options: DistillOptions | None = None,
    plan: CompressionPlan | None = None,
    cancel: CancelToken | None = None,
    *,
    machine: MachineInfo | None = None,
) -> Job[tuple[onnx.ModelProto, DistillReport]]:
    """Train `student` towards `teacher` on `data`; return the student graph with its best
    weights and a report. With `options.qat`, `plan` (resolved on the student) says which bit
    width each layer simulates; `machine` (default: this one) decides the INT8 form."""
    options = options or DistillOptions()
    cancel = cancel or CancelToken()
    threads = options.threads or os.cpu_count() or 1
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return (yield from _train(teacher, student, data, options, plan, cancel, machine, threads))
    finally:
        torch.set_num_threads(previous_threads)


def _train(teacher, student, data, options, plan, cancel, machine, threads):
    started = time.monotonic()
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    arrays, labels = _training_arrays(data, options)
    train_idx, val_idx = validation_split(len(data), options.validation_fraction, options.seed)
    module = to_torch(student)
    qat_layers, form_name = (), ""
    if options.qat and plan is not None:
        from compressor_gui.core.inventory import build_inventory

        form = training_form(plan, machine or local_machine())
        qat_layers = attach_fake_quant(
            module, student, plan.resolved(build_inventory(student)), form
        )
        form_name = form.name if any(q.bits == 8 for q in qat_layers) else ""
    teacher_run = _Teacher(teacher, options.features, threads)
    student_logits = logits_name(student)
    regressors = _regressors(module, teacher_run, arrays, options.features, student_logits)
    masks = _pruning_masks(module)
    val_feed = {n: a[val_idx] for n, a in arrays.items()}
    val_teacher = teacher_run(val_feed)
    val_labels = None if labels is None else labels[val_idx]
    steps_per_epoch = -(-len(train_idx) // options.batch_size)
    total = steps_per_epoch * options.epochs
    parameters = list(module.weights.values()) + list(regressors.parameters())
    optimizer = torch.optim.Adam(parameters, lr=options.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(total, 1))
    images = _image_inputs(arrays) if options.augment != "none" else []
    if qat_layers:
        _calibrate_activations(module, {n: a[train_idx[:256]] for n, a in arrays.items()})
    evaluate = _Validator(module, student_logits, val_feed, val_teacher, val_labels, options)
    history = [evaluate(0, None)]
    history[0] = _with_best(history[0], True)
    best_key, best_state = _key(history[0]), copy.deepcopy(module.state_dict())
    eta = EtaEstimator()
    yield Progress(0, total, _epoch_words(history[0]), payload=history[0])
    done, cancelled = 0, False
    for epoch in range(1, options.epochs + 1):
        module.train()
        losses = []
        for batch in _batches(train_idx, options.batch_size, rng):
            if cancel.cancelled:
                cancelled = True
                break
            feed = _augmented({n: a[batch] for n, a in arrays.items()}, images, options, rng)
            teacher_out = teacher_run(feed)
            batch_labels = None if labels is None else torch.from_numpy(labels[batch])
            values = module.run(_tensors(feed), (student_logits, *options.features))
            loss = _loss(values, teacher_out, batch_labels, regressors, student_logits, options)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            _apply_masks(module, masks)
            losses.append(float(loss.detach()))
            done += 1
            left = eta.seconds_left(done / total)
            yield Progress(
                done,
                total,
                f"epoch {epoch}/{options.epochs}: loss {losses[-1]:.4f}" + _eta_words(left),
            )
        if cancelled or not losses:
            break
        stats = evaluate(epoch, float(np.mean(losses)), eta.seconds_left(done / total))
        if _key(stats) > best_key:
            best_key, best_state = _key(stats), copy.deepcopy(module.state_dict())
            stats = _with_best(stats, True)
        history.append(stats)
        yield Progress(done, total, _epoch_words(stats), payload=stats)
    module.load_state_dict(best_state)
    best_epoch = next(s.epoch for s in reversed(history) if s.best)
    notes = []
    if cancelled:
        notes.append(
            f"cancelled after {len(history) - 1} of {options.epochs} epochs: kept the best "
            f"checkpoint (epoch {best_epoch})"
        )
    teacher_top1 = None if val_labels is None else _top1(val_teacher[0], val_labels)
    report = DistillReport(
        history=tuple(history),
        best_epoch=best_epoch,
        cancelled=cancelled,
        train_samples=len(train_idx),
        validation_samples=len(val_idx),
        seconds=time.monotonic() - started,
        threads=threads,
        qat_layers=qat_layers,
        int8_form=form_name,
        teacher_val_top1=teacher_top1,
        notes=tuple(notes),
    )
    return write_weights(student, module), report


# --- data ------------------------------------------------------------------------------------


def _training_arrays(data: Dataset, options: DistillOptions):
    if any(form != "batch" for form in data.forms.values()):
        raise CompressorError(
            f"distillation needs samples on the model's batch axis; {data.source or 'the data'} "
            "holds them one per call (sample form)"
        )
    if len(data) < 10:
        raise CompressorError(f"{len(data)} samples are too few to train and validate on")
    labels = data.labels if options.use_labels else None
    return dict(data.inputs), None if labels is None else labels.astype(np.int64)


def validation_split(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) sample indices: a seeded random `fraction` of the training data
    is held out to choose the best epoch."""
    order = np.random.default_rng(seed).permutation(count)
    held = max(1, int(round(count * fraction)))
    return np.sort(order[held:]), np.sort(order[:held])


def _batches(indices: np.ndarray, size: int, rng: np.random.Generator):
    shuffled = rng.permutation(indices)
    for start in range(0, len(shuffled), size):
        yield np.sort(shuffled[start : start + size])


def _image_inputs(arrays: Mapping[str, np.ndarray]) -> list[str]:
    """Inputs that look like image batches: float N x C x H x W with 1-4 channels."""
    return [
        name
        for name, a in arrays.items()
        if a.dtype.kind == "f" and a.ndim == 4 and a.shape[1] <= 4 and min(a.shape[2:]) >= 8
    ]


def _augmented(feed, images, options: DistillOptions, rng: np.random.Generator):
    """Random crops after edge padding by 1/16 of the side (and flips with crop+flip)."""
    out = dict(feed)
    for name in images:
        batch = feed[name]
        height, width = batch.shape[2:]
        pad_h, pad_w = max(1, height // 16), max(1, width // 16)
        padded = np.pad(batch, ((0, 0), (0, 0), (pad_h, pad_h), (pad_w, pad_w)), mode="edge")
        shifted = np.empty_like(batch)
        for i in range(len(batch)):
            top, left = rng.integers(0, 2 * pad_h + 1), rng.integers(0, 2 * pad_w + 1)
            sample = padded[i, :, top : top + height, left : left + width]
            if options.augment == "crop+flip" and rng.random() < 0.5:
                sample = sample[:, :, ::-1]
            shifted[i] = sample
        out[name] = shifted
    return out


def _tensors(feed: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in feed.items()}


# --- teacher, loss, validation ---------------------------------------------------------------


class _Teacher:
    """The teacher in onnxruntime, returning its logits and the hint tensors."""

    def __init__(self, model: onnx.ModelProto, features: tuple[str, ...], threads: int) -> None:
        wanted = [logits_name(model), *features]
        exposed = onnx.ModelProto()
        exposed.CopyFrom(model)
        outputs = {o.name for o in exposed.graph.output}
        for name in wanted:
            if name not in outputs:
                exposed.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
        self.names = wanted
        self.session = make_session(exposed, threads=threads)
        fixed = exposed.graph.input[0].type.tensor_type.shape.dim
        self.max_batch = fixed[0].dim_value if fixed and fixed[0].dim_value > 0 else None

    def __call__(self, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        count = len(next(iter(feed.values())))
        step = self.max_batch or count
        parts = [
            self.session.run(self.names, {n: a[i : i + step] for n, a in feed.items()})
            for i in range(0, count, step)
        ]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(self.names))]


def _regressors(module, teacher, arrays, features, logits) -> nn.ModuleDict:
    """FitNets regressors: a 1x1 conv (or linear map) from the student's channels to the
    teacher's, where they differ; identity where the shapes already agree."""
    regressors = nn.ModuleDict()
    if not features:
        return regressors
    sample = {n: a[:2] for n, a in arrays.items()}
    with torch.no_grad():
        values = module.eval().run(_tensors(sample), (logits, *features))
    hints = teacher(sample)[1:]
    for index, name in enumerate(features):
        got, want = tuple(values[name].shape), hints[index].shape
        if got == want:
            continue
        if len(got) != len(want) or got[2:] != want[2:]:
            raise CompressorError(
                f"hint {name}: student shape {got} and teacher shape {want} differ beyond "
                "the channel axis; choose a tensor with the same spatial size in both"
            )
        if len(got) == 4:
            regressors[str(index)] = nn.Conv2d(got[1], want[1], 1, bias=False)
        else:
            regressors[str(index)] = nn.Linear(got[-1], want[-1], bias=False)
    return regressors


def _loss(values, teacher_out, labels, regressors, logits_key, options: DistillOptions):
    student = values[logits_key].reshape(len(teacher_out[0]), -1)
    teacher = torch.from_numpy(teacher_out[0]).reshape(student.shape)
    loss = kd_loss(student, teacher, labels, options.temperature, options.alpha)
    for index, name in enumerate(options.features):
        hint = values[name]
        key = str(index)
        if key in regressors:
            hint = regressors[key](hint)
        loss = loss + options.feature_weight * F.mse_loss(
            hint, torch.from_numpy(teacher_out[index + 1])
        )
    return loss


def kd_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor | None,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE(labels);
    without labels the soft term alone. T^2 keeps the soft gradients' scale independent of T."""
    soft = F.kl_div(
        F.log_softmax(student / temperature, dim=1),
        F.log_softmax(teacher / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    ) * (temperature**2)
    if labels is None:
        return soft
    return alpha * soft + (1.0 - alpha) * F.cross_entropy(student, labels)


class _Validator:
    def __init__(self, module: GraphModule, logits, feed, teacher_out, labels, options) -> None:
        self.module, self.logits, self.options = module, logits, options
        self.feed, self.teacher, self.labels = _tensors(feed), teacher_out[0], labels

    def __call__(self, epoch: int, train_loss: float | None, seconds_left=None) -> EpochStats:
        self.module.eval()
        with torch.no_grad():
            out = self.module.run(self.feed, (self.logits,))[self.logits]
        student = out.reshape(len(self.teacher), -1)
        teacher = torch.from_numpy(self.teacher).reshape(student.shape)
        labels = None if self.labels is None else torch.from_numpy(self.labels)
        loss = kd_loss(student, teacher, labels, self.options.temperature, self.options.alpha)
        predicted = student.argmax(dim=1).numpy()
        return EpochStats(
            epoch=epoch,
            epochs=self.options.epochs,
            train_loss=train_loss,
            val_loss=float(loss),
            val_top1=None if self.labels is None else float(np.mean(predicted == self.labels)),
            val_agreement=float(
                np.mean(predicted == self.teacher.reshape(len(predicted), -1).argmax(1))
            ),
            seconds_left=seconds_left,
        )


def _key(stats: EpochStats) -> tuple[float, float]:
    """Best = highest validation top-1 (agreement without labels), then lowest loss."""
    score = stats.val_top1 if stats.val_top1 is not None else stats.val_agreement
    return (score, -stats.val_loss)


def _with_best(stats: EpochStats, best: bool) -> EpochStats:
    return dataclasses.replace(stats, best=best)


def _top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(logits.reshape(len(labels), -1).argmax(1) == labels))


def _calibrate_activations(module: GraphModule, feed: Mapping[str, np.ndarray]) -> None:
    """First ranges of the fake-quantized activations from training samples (only the
    observers run in training mode, so BatchNorm statistics are left alone)."""
    module.eval()
    for observer in module.value_transforms.values():
        observer.train()
    with torch.no_grad():
        module.run(_tensors(feed))
    module.eval()


# --- pruning masks ---------------------------------------------------------------------------


def _pruning_masks(module: GraphModule) -> dict[str, torch.Tensor]:
    """Where a weight (2+ dims) holds exact zeros, pruning put them there: they stay zero."""
    masks = {}
    for name in module.parameter_names():
        weight = module.stored(name)
        if weight.dim() >= 2 and bool((weight == 0).any()):
            masks[name] = (weight != 0).to(weight.dtype)
    return masks


def _apply_masks(module: GraphModule, masks: Mapping[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, mask in masks.items():
            module.stored(name).mul_(mask)


# --- words -----------------------------------------------------------------------------------


def _eta_words(seconds: float | None) -> str:
    return "" if seconds is None else f", about {seconds:.0f} s left"


def _epoch_words(stats: EpochStats) -> str:
    top1 = "" if stats.val_top1 is None else f", validation top-1 {stats.val_top1:.1%}"
    label = "before training" if stats.epoch == 0 else f"epoch {stats.epoch}/{stats.epochs}"
    return (
        f"{label}: validation loss {stats.val_loss:.4f}{top1}, agreement with the teacher "
        f"{stats.val_agreement:.1%}{' (best so far)' if stats.best else ''}"
        + _eta_words(stats.seconds_left)
    )
