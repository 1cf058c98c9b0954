"""The distillation training loop in torch (the job's interface is `distill`).

The student is the compressed graph as a `GraphModule`; the teacher runs in onnxruntime on
the same (augmented) batches. A classifier learns the teacher's softened logits (`kd_loss`),
judged by top-1 / agreement; any other model (detector, DB map, VAD, encoder) learns every
float output (`distill_objective`), judged by the output cosine. Adam with cosine decay; after
each step the pruning masks are re-applied; after each epoch the validation part is scored
and the best state kept.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from compressor_gui.core.data import Dataset
from compressor_gui.core.distill_objective import (
    Objective,
    choose_objective,
    dense_loss,
)
from compressor_gui.core.distill_types import (
    DistillOptions,
    DistillReport,
    EpochStats,
    fidelity_words,
    logits_name,
    validation_split,
)
from compressor_gui.core.errors import CompressorError
from compressor_gui.core.evaluate import fidelity, make_session
from compressor_gui.core.graph import real_inputs
from compressor_gui.core.hardware import MachineInfo, local_machine
from compressor_gui.core.inventory import build_inventory
from compressor_gui.core.jobs import CancelToken, EtaEstimator, Job, Progress
from compressor_gui.core.plan import CompressionPlan
from compressor_gui.core.qat import attach_fake_quant, training_form
from compressor_gui.core.torch_graph import GraphModule, to_torch, write_weights

CALIBRATION_SAMPLES = 256  # training samples that set the first fake-quantized ranges
UNLABELED = -1  # the label of a sample that has none (the teacher's soft targets alone)


def train_job(
    teacher: onnx.ModelProto,
    student: onnx.ModelProto,
    data: Dataset,
    options: DistillOptions,
    plan: CompressionPlan | None,
    stop: Sequence[CancelToken],
    machine: MachineInfo | None,
    unlabeled: Dataset | None = None,
    teacher_module: TorchTeacher | None = None,
) -> Job[tuple[onnx.ModelProto, DistillReport]]:
    """`distill.distill_job`'s work, with torch's thread count set for its duration."""
    threads = options.threads or os.cpu_count() or 1
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(options.seed)
        run = _Run(teacher, student, data, options, plan, machine, threads, unlabeled)
        run.start(teacher_module)
        return (yield from run.train(stop))
    finally:
        torch.set_num_threads(previous)


class _Run:
    """One training run: the student module, its teacher, the data split, the optimizer."""

    def __init__(self, teacher, student, data, options, plan, machine, threads, unlabeled):
        self.started = time.monotonic()
        self.student, self.options, self.threads = student, options, threads
        self.rng = np.random.default_rng(options.seed)
        self.arrays, self.labels = _training_arrays(data, unlabeled, options)
        # the validation part comes from every sample, unlabeled ones included: the teacher
        # labels those, and a handful of labels alone would pick the best epoch by luck
        count = len(next(iter(self.arrays.values())))
        self.train_idx, self.val_idx = validation_split(
            count, options.validation_fraction, options.seed
        )
        self.unlabeled_samples = count - len(data)
        self.module = to_torch(student)
        self.qat_layers, self.form_name = (), ""
        if options.qat and plan is not None:
            form = training_form(plan, machine or local_machine())
            settings = plan.resolved(build_inventory(student))
            self.qat_layers = attach_fake_quant(self.module, student, settings, form)
            self.form_name = form.name if any(q.bits == 8 for q in self.qat_layers) else ""
        self.teacher_model = teacher
        sample = _tensors({name: array[:1] for name, array in self.arrays.items()})
        self.objective = choose_objective(
            self.module, student, teacher, sample, self.labels is not None
        )
        self.classifier, self.targets = self.objective.classifier, self.objective.student
        if not self.classifier:
            self.labels = None  # class labels mean nothing to a dense output
        self.masks = _pruning_masks(self.module)
        self.images = _image_inputs(self.arrays) if options.augment != "none" else []
        # a graph that fixes its batch (PicoDet's Reshapes hold 1) would fold a larger one
        # into its maps and scramble the samples: it trains on batches of that size
        self.fixed_batch = _fixed_batch(student)
        self.batch_size = min(options.batch_size, self.fixed_batch or options.batch_size)
        self.total = -(-len(self.train_idx) // self.batch_size) * options.epochs
        self.eta = EtaEstimator()
        self.done = 0

    def start(self, teacher_module: TorchTeacher | None) -> None:
        """The teacher (the user's torch module when given, else the ONNX original in
        onnxruntime), the hint regressors, the optimizer and the validation part."""
        options = self.options
        if not (
            self.classifier
            and teacher_module
            and teacher_module.can_replace(self.teacher_model, options)
        ):
            teacher_module = None
        self.teacher = teacher_module or _Teacher(
            self.teacher_model, self.objective.teacher, options.features, self.threads
        )
        self.teacher_runtime = teacher_module.describe() if teacher_module else "onnxruntime"
        self.regressors = _regressors(
            self.module, self.teacher, self.arrays, options.features, self.targets
        )
        parameters = [*self.module.weights.values(), *self.regressors.parameters()]
        self.optimizer = torch.optim.Adam(parameters, lr=options.learning_rate)
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, self.total)
        if self.qat_layers:
            sample = self.train_idx[:CALIBRATION_SAMPLES]
            _calibrate_activations(self.module, {n: a[sample] for n, a in self.arrays.items()})
        val_feed = {n: a[self.val_idx] for n, a in self.arrays.items()}
        val_labels = None if self.labels is None else self.labels[self.val_idx]
        val_teacher = self.teacher(val_feed)
        self.validate = _Validator(
            self.module,
            self.objective,
            val_feed,
            val_teacher,
            val_labels,
            options,
            self.fixed_batch,
        )

    def train(self, stop: Sequence[CancelToken]):
        history = [dataclasses.replace(self.validate(0, None), best=True)]
        best_state = copy.deepcopy(self.module.state_dict())
        yield Progress(0, self.total, _epoch_words(history[0]), payload=history[0])
        stopped = False
        for epoch in range(1, self.options.epochs + 1):
            loss = yield from self._epoch(epoch, stop)
            if loss is None:
                stopped = True
                break
            stats = self.validate(epoch, loss, self.eta.seconds_left(self.done / self.total))
            if _key(stats) > max(_key(s) for s in history if s.best):
                best_state = copy.deepcopy(self.module.state_dict())
                stats = dataclasses.replace(stats, best=True)
            history.append(stats)
            yield Progress(self.done, self.total, _epoch_words(stats), payload=stats)
        self.module.load_state_dict(best_state)
        return write_weights(self.student, self.module), self._report(history, stopped)

    def _epoch(self, epoch: int, stop: Sequence[CancelToken]):
        """Train one epoch (yielding per batch); its mean loss, or None when stopped."""
        self.module.train()
        losses = []
        for batch in _batches(self.train_idx, self.batch_size, self.rng):
            if any(token.cancelled for token in stop):
                return None
            losses.append(self._step(batch))
            self.done += 1  # one message per epoch: a log line per batch would flood the log
            yield Progress(self.done, self.total, f"epoch {epoch}/{self.options.epochs}: training")
        return float(np.mean(losses))

    def _step(self, batch: np.ndarray) -> float:
        feed = {n: a[batch] for n, a in self.arrays.items()}
        feed = _augmented(feed, self.images, self.options, self.rng)
        teacher_out = self.teacher(feed)
        labels = None if self.labels is None else torch.from_numpy(self.labels[batch])
        values = self.module.run(_tensors(feed), (*self.targets, *self.options.features))
        loss = _loss(
            values,
            teacher_out,
            labels,
            self.regressors,
            self.objective,
            self.options,
        )
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.schedule.step()
        _apply_masks(self.module, self.masks)
        return float(loss.detach())

    def _report(self, history: list[EpochStats], stopped: bool) -> DistillReport:
        best_epoch = next(s.epoch for s in reversed(history) if s.best)
        notes = []
        if self.batch_size < self.options.batch_size:
            notes.append(
                f"trained {self.batch_size} sample(s) per step, not {self.options.batch_size}: "
                f"the model's graph fixes its batch at {self.fixed_batch}"
            )
        if stopped:
            notes.append(
                f"stopped after {len(history) - 1} of {self.options.epochs} epochs: kept the "
                f"best checkpoint (epoch {best_epoch})"
            )
        labels, teacher = self.validate.labels, self.validate.teacher[0]
        return DistillReport(
            history=tuple(history),
            best_epoch=best_epoch,
            stopped_early=stopped,
            train_samples=len(self.train_idx),
            unlabeled_samples=self.unlabeled_samples,
            validation_samples=len(self.val_idx),
            seconds=time.monotonic() - self.started,
            threads=self.threads,
            qat_layers=self.qat_layers,
            int8_form=self.form_name,
            teacher_val_top1=_top1(teacher, labels) if self.classifier else None,
            teacher_runtime=self.teacher_runtime,
            notes=tuple(notes),
            dense_outputs=() if self.classifier else self.objective.student,
        )


# --- data ------------------------------------------------------------------------------------


def _training_arrays(data: Dataset, unlabeled: Dataset | None, options: DistillOptions):
    """Inputs of `data` then of `unlabeled`, and labels (UNLABELED where a sample has none;
    None when no sample has one or labels are not to be used)."""
    for part in (data, unlabeled):
        if part is not None and any(form != "batch" for form in part.forms.values()):
            raise CompressorError(
                f"distillation needs samples on the model's batch axis; "
                f"{part.source or 'the data'} holds them one per call (sample form)"
            )
    if len(data) < 10:
        raise CompressorError(f"{len(data)} samples are too few to train and validate on")
    labels = (
        data.labels.astype(np.int64) if options.use_labels and data.labels is not None else None
    )
    if unlabeled is None or len(unlabeled) == 0:
        return dict(data.inputs), labels
    arrays = {}
    for name, array in data.inputs.items():
        extra = unlabeled.inputs.get(name)
        if extra is None or extra.shape[1:] != array.shape[1:] or extra.dtype != array.dtype:
            got = "missing" if extra is None else f"{extra.dtype} {tuple(extra.shape[1:])}"
            raise CompressorError(
                f"the unlabeled data's input {name!r} is {got}, the training data's "
                f"{array.dtype} {tuple(array.shape[1:])}: both must feed the same model"
            )
        arrays[name] = np.concatenate([array, extra])
    if labels is not None:
        labels = np.concatenate([labels, np.full(len(unlabeled), UNLABELED, np.int64)])
    return arrays, labels


def _fixed_batch(model: onnx.ModelProto) -> int | None:
    """The batch size the graph's first input fixes, None where it is dynamic."""
    inputs = real_inputs(model.graph)
    dims = inputs[0].type.tensor_type.shape.dim if inputs else ()
    return dims[0].dim_value if dims and dims[0].dim_value > 0 else None


def _run_in_steps(module: GraphModule, feed, names, step: int | None) -> dict:
    """`module.run` over `step` samples at a time, the named results joined on axis 0."""
    count = len(next(iter(feed.values())))
    if step is None or step >= count:
        return module.run(feed, names)
    parts = [
        module.run({n: t[i : i + step] for n, t in feed.items()}, names)
        for i in range(0, count, step)
    ]
    return {name: torch.cat([part[name] for part in parts]) for name in names}


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
    """The teacher in onnxruntime, returning its targets (logits, or every float output)
    then the hint tensors."""

    def __init__(self, model: onnx.ModelProto, targets, features, threads: int) -> None:
        wanted = [*targets, *features]
        exposed = onnx.ModelProto()
        exposed.CopyFrom(model)
        outputs = {o.name for o in exposed.graph.output}
        for name in wanted:
            if name not in outputs:
                exposed.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
        self.names = wanted
        self.session = make_session(exposed, threads=threads)
        self.inputs = [i.name for i in self.session.get_inputs()]
        fixed = exposed.graph.input[0].type.tensor_type.shape.dim
        self.max_batch = fixed[0].dim_value if fixed and fixed[0].dim_value > 0 else None

    def __call__(self, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        count = len(next(iter(feed.values())))
        step = self.max_batch or count
        arrays = list(feed.values())  # by position: the student's names may differ
        parts = [
            self.session.run(
                self.names, {n: a[i : i + step] for n, a in zip(self.inputs, arrays, strict=True)}
            )
            for i in range(0, count, step)
        ]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(self.names))]


class TorchTeacher:
    """The user's own torch module (TorchScript, or a torch.export program) as the teacher:
    its logits come straight from the module, with no ONNX round trip. It takes the
    student's inputs by position, as a torch module does. `max_batch`: the batch an exported
    program was traced with (it refuses others), None for any."""

    def __init__(self, module, kind: str, max_batch: int | None):
        self.module, self.kind, self.max_batch = module, kind, max_batch

    def can_replace(self, teacher: onnx.ModelProto, options: DistillOptions) -> bool:
        """Only for logits the module itself returns (no Softmax on top to look under) and
        without hint tensors (those are named in the ONNX graph)."""
        return not options.features and logits_name(teacher) == teacher.graph.output[0].name

    def describe(self) -> str:
        return f"torch ({self.kind} module, no ONNX round trip)"

    def __call__(self, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        count = len(next(iter(feed.values())))
        step = self.max_batch or count
        parts = []
        with torch.no_grad():
            for start in range(0, count, step):
                chunk = [array[start : start + step] for array in feed.values()]
                taken = len(chunk[0])
                if self.max_batch and taken < self.max_batch:  # padded to the traced batch
                    chunk = [np.concatenate([c, np.repeat(c[-1:], step - taken, 0)]) for c in chunk]
                out = self.module(*(torch.from_numpy(np.ascontiguousarray(c)) for c in chunk))
                out = out[0] if isinstance(out, tuple | list) else out
                parts.append(out.detach().float().numpy()[:taken])
        return [np.concatenate(parts)]


def _regressors(module, teacher, arrays, features, targets) -> nn.ModuleDict:
    """FitNets regressors: a 1x1 conv (or linear map) from the student's channels to the
    teacher's, where they differ; identity where the shapes already agree."""
    regressors = nn.ModuleDict()
    if not features:
        return regressors
    sample = {n: a[:2] for n, a in arrays.items()}
    with torch.no_grad():
        values = module.eval().run(_tensors(sample), (*targets, *features))
    hints = teacher(sample)[len(targets) :]
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


def _loss(values, teacher_out, labels, regressors, objective: Objective, options):
    targets = objective.student
    loss = _target_loss(values, teacher_out, labels, objective, options)
    for index, name in enumerate(options.features):
        hint = values[name]
        key = str(index)
        if key in regressors:
            hint = regressors[key](hint)
        loss = loss + options.feature_weight * F.mse_loss(
            hint, torch.from_numpy(teacher_out[len(targets) + index])
        )
    return loss


def _target_loss(values, teacher_out, labels, objective: Objective, options) -> torch.Tensor:
    """KD on the logits for a classifier, the dense loss over every output otherwise."""
    targets = objective.student
    if not objective.classifier:
        return dense_loss([values[n] for n in targets], teacher_out[: len(targets)])
    student = values[targets[0]].reshape(len(teacher_out[0]), -1)
    teacher = torch.from_numpy(teacher_out[0]).reshape(student.shape)
    return kd_loss(student, teacher, labels, options.temperature, options.alpha)


def kd_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor | None,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """Per sample alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) *
    CE(label), averaged over the batch; a sample without a label (UNLABELED, or no labels at
    all) has the soft term alone. T^2 keeps the soft gradients' scale independent of T."""
    soft = F.kl_div(
        F.log_softmax(student / temperature, dim=1),
        F.log_softmax(teacher / temperature, dim=1),
        reduction="none",
        log_target=True,
    ).sum(dim=1) * (temperature**2)
    if labels is None:
        return soft.mean()
    known = labels != UNLABELED
    hard = F.cross_entropy(student, labels.clamp(min=0), reduction="none")
    return torch.where(known, alpha * soft + (1.0 - alpha) * hard, soft).mean()


class _Validator:
    def __init__(
        self, module: GraphModule, objective: Objective, feed, teacher_out, labels, options, step
    ):
        self.module, self.objective, self.options = module, objective, options
        self.feed, self.labels, self.classifier = _tensors(feed), labels, objective.classifier
        self.targets = objective.student
        self.teacher = teacher_out[: len(self.targets)]
        self.step = step  # samples per run (the graph's fixed batch), None: all at once

    def __call__(self, epoch: int, train_loss: float | None, seconds_left=None) -> EpochStats:
        self.module.eval()
        with torch.no_grad():
            values = _run_in_steps(self.module, self.feed, self.targets, self.step)
        if not self.classifier:
            student = [values[name] for name in self.targets]
            _, cosine, _ = fidelity(self.teacher, [v.float().numpy() for v in student])
            return EpochStats(
                epoch=epoch,
                epochs=self.options.epochs,
                train_loss=train_loss,
                val_loss=float(dense_loss(student, self.teacher)),
                val_top1=None,
                val_agreement=None,
                seconds_left=seconds_left,
                val_cosine=cosine,
            )
        return self._classifier_stats(values[self.targets[0]], epoch, train_loss, seconds_left)

    def _classifier_stats(self, out, epoch, train_loss, seconds_left) -> EpochStats:
        teacher_logits = self.teacher[0]
        student = out.reshape(len(teacher_logits), -1)
        teacher = torch.from_numpy(teacher_logits).reshape(student.shape)
        labels = None if self.labels is None else torch.from_numpy(self.labels)
        loss = kd_loss(student, teacher, labels, self.options.temperature, self.options.alpha)
        predicted = student.argmax(dim=1).numpy()
        teacher_top1 = teacher_logits.reshape(len(predicted), -1).argmax(1)
        right = teacher_top1 if self.labels is None else self.labels
        right = np.where(right == UNLABELED, teacher_top1, right)
        return EpochStats(
            epoch=epoch,
            epochs=self.options.epochs,
            train_loss=train_loss,
            val_loss=float(loss),
            val_top1=_top1(student.numpy(), self.labels),
            val_agreement=float(np.mean(predicted == teacher_top1)),
            seconds_left=seconds_left,
            val_right=float(np.mean(predicted == right)),
        )


def _key(stats: EpochStats) -> tuple[float, float]:
    """Best = most validation samples right (their label, the teacher's top-1 where they
    have none: top-1 with all labels, agreement without any), then lowest loss; for a dense
    model the highest output cosine to the teacher, then lowest loss."""
    score = stats.val_right if stats.val_cosine is None else stats.val_cosine
    return (score, -stats.val_loss)


def _top1(logits: np.ndarray, labels: np.ndarray | None) -> float | None:
    """Top-1 over the samples that have a label (None when none has)."""
    if labels is None or not (labels != UNLABELED).any():
        return None
    known = labels != UNLABELED
    return float(np.mean(logits.reshape(len(labels), -1).argmax(1)[known] == labels[known]))


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
        f"{label}: validation loss {stats.val_loss:.4f}{top1}, {fidelity_words(stats)}"
        f"{' (best so far)' if stats.best else ''}" + _eta_words(stats.seconds_left)
    )
