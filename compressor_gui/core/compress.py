"""The compression pipeline as one job: prune -> (distill) -> fuse -> quantize -> write ->
evaluate.

Plan layer names refer to the model the user opened; fusion removes BatchNorm rows (their
settings lapse) while Conv names survive, so the plan is checked once against the original
and then narrowed to what is left before each later step.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import onnx

from compressor_gui.core.advice import (
    AVOID_U8S8_SATURATION,
    FIND_LOSSY_LAYERS,
    GIVE_DATA,
    GIVE_EVAL_DATA,
    OTHER_CALIBRATION,
    SMALLER_PRUNING,
)
from compressor_gui.core.data import (
    RANDOM_SOURCE,
    Dataset,
    demo_dataset,
    is_demo_model,
    load_dataset,
    random_dataset,
)
from compressor_gui.core.distill import distill_job
from compressor_gui.core.distill_types import DistillOptions, DistillReport
from compressor_gui.core.errors import CompressionError, CompressorError
from compressor_gui.core.evaluate import (
    EvalResult,
    evaluate,
    make_session,
    measure_latency,
    sample_feed,
)
from compressor_gui.core.hardware import MachineInfo, local_machine
from compressor_gui.core.inventory import build_inventory
from compressor_gui.core.jobs import CancelToken, Job, Progress
from compressor_gui.core.latency import LatencyStats
from compressor_gui.core.model import LoadedModel, ModelSource, file_size_bytes, save_onnx
from compressor_gui.core.plan import CompressionPlan
from compressor_gui.core.quant_passes import SIMULATED, Int8Options, LayerAction
from compressor_gui.core.quantize import quantize_model
from compressor_gui.core.shapes import resolve_input_shapes
from compressor_gui.core.sizes import compressed_size_bytes, size_report
from compressor_gui.core.weights import already_quantized, lift_weights

MIN_COSINE = 0.99  # output cosine under this is warned, whatever the labels say
MIN_AGREEMENT = 0.99  # a distilled model without labels: top-1 agreement under this is warned
SLOWER_MARGIN = 1.10  # warn when the compressed model's p50 is over 10% above the original's
_STEPS = 6


@dataclass(frozen=True)
class ModelMetrics:
    """One model measured: file size, quality on the eval data, latency on this CPU."""

    size_bytes: int
    eval: EvalResult | None
    latency: LatencyStats | None
    # The file after zip/deflate, where zeroed weights save space; None over protobuf's 2 GB.
    deflated_size_bytes: int | None = None


@dataclass(frozen=True)
class CompressResult:
    input_path: Path
    output_path: Path
    before: ModelMetrics
    after: ModelMetrics
    predicted_size_bytes: int
    predicted_sparse_size_bytes: int
    actions: tuple[LayerAction, ...]
    steps: tuple[str, ...]  # one line per pipeline step: what it did
    warnings: tuple[str, ...]
    data_source: str = ""
    # The written model with its 2:4 weights stored as kept values + 2-bit indices (measured
    # on the file's tensors); None when no weight is 2:4 sparse.
    sparse_format_size_bytes: int | None = None
    int8_form: str = ""  # the INT8 form used and why ("" when nothing went INT8)
    measured_on: MachineInfo | None = None  # the machine that measured accuracy and latency
    target: MachineInfo | None = None  # the machine the model was made for
    distill: DistillReport | None = None  # the recovery training, when there was one

    @property
    def simulated(self) -> bool:
        return any(action.simulated for action in self.actions)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_path"], data["output_path"] = str(self.input_path), str(self.output_path)
        data["simulated"] = self.simulated
        data["simulated_label"] = SIMULATED if self.simulated else ""
        data["size_ratio"] = self.after.size_bytes / self.before.size_bytes
        for key in ("measured_on", "target"):
            machine = getattr(self, key)
            data[key] = machine.to_dict() if machine else None
        return data


def compress_source_job(
    source: ModelSource, plan: CompressionPlan, out_path, data=None, cancel=None, **options
) -> Job[CompressResult]:
    """`compress_job` on a model opened from `source`: what a child process runs."""
    return (yield from compress_job(source.open(), plan, out_path, data, cancel, **options))


def compress_job(
    loaded: LoadedModel,
    plan: CompressionPlan,
    out_path: str | os.PathLike[str],
    data: Dataset | str | os.PathLike[str] | None = None,
    cancel: CancelToken | None = None,
    *,
    eval_data: Dataset | str | os.PathLike[str] | None = None,
    options: Int8Options | None = None,
    latency: bool = True,
    target: MachineInfo | None = None,
    distill: DistillOptions | None = None,
    teacher: LoadedModel | None = None,
    finish_training: CancelToken | None = None,
    unlabeled: Dataset | str | os.PathLike[str] | None = None,
) -> Job[CompressResult]:
    """Apply `plan` to the loaded model and write it to `out_path` atomically. `data`
    calibrates (and evaluates, unless `eval_data` is given); the bundled demo model uses its
    own calibration and held-out splits when no data is given. `target` is the machine the
    model is for (None: this one): its CPU family decides the INT8 form. With `distill` (or
    the plan's `distill_epochs`), the pruned model is trained on `data` towards `teacher`
    (default: the original) before it is fused and quantized; a given teacher is also what
    the result is measured against, `unlabeled` data adds samples the teacher alone labels,
    and `finish_training` ends the training early with its best epoch and goes on to write."""
    cancel = cancel or CancelToken()
    here = local_machine()
    target = target or here
    options = dataclasses.replace(options or Int8Options(), machine=target)
    original = _onnx_graph(loaded)
    out_path = Path(out_path)
    warnings: list[str] = []
    steps: list[str] = []
    yield Progress(0, _STEPS, "checking the plan")
    inventory, prediction, settings = _checked_plan(plan, original)
    reference = teacher or loaded  # the model measured as "before" and distilled towards
    calib, evald, source = _datasets(reference.path, original, data, eval_data, loaded)
    shapes = resolve_input_shapes(original, loaded.input_shapes, calib or evald)
    before, reference_outputs = yield from _original_measured(reference, evald, latency, cancel)
    distill = distill or _recipe_recovery(plan, settings)
    unlabeled = _opened(unlabeled, original)
    _check_not_quantized_twice(loaded, plan, settings, distill is not None, warnings)
    training = (distill, calib, unlabeled, evald, target, (cancel, finish_training))
    model, plan, n_m_weights, report = yield from _reshaped(
        original, plan, inventory, shapes, reference, training, steps, warnings
    )
    cancel.raise_if_cancelled()
    yield Progress(3, _STEPS, "quantizing")
    other_work = distill is not None or any(s.prune_ratio > 0 for s in settings.values())
    model, actions, int8_form = _quantized(
        model, plan, settings, (calib, shapes), options, other_work, (steps, warnings)
    )
    cancel.raise_if_cancelled()
    if other_work and distill is None and not actions:
        _check_pruning_shrinks(model, loaded, settings)
    yield Progress(4, _STEPS, f"writing {out_path.name}")
    save_onnx(model, out_path)
    yield Progress(5, _STEPS, "evaluating")
    after, _ = _measured(
        out_path, file_size_bytes(out_path), evald, reference_outputs, latency, cancel
    )
    distilled = report is not None and report.classifier  # a dense model keeps its scale
    warnings.extend(_result_warnings(plan, before, after, actions, target, here, distilled))
    yield Progress(6, _STEPS, "done")
    return CompressResult(
        input_path=loaded.path,
        output_path=out_path,
        before=before,
        after=after,
        predicted_size_bytes=prediction.size_bytes,
        predicted_sparse_size_bytes=prediction.sparse_size_bytes,
        actions=actions,
        steps=tuple(steps),
        warnings=tuple(warnings),
        data_source=source,
        sparse_format_size_bytes=_sparse_size(model, n_m_weights),
        int8_form=int8_form,
        measured_on=here,
        target=target,
        distill=report,
    )


def _checked_plan(plan: CompressionPlan, model: onnx.ModelProto):
    """(inventory, prediction, per-layer settings) of `plan` on `model`, which it must fit."""
    inventory = build_inventory(model)
    plan.validate(inventory)
    return inventory, plan.predict(inventory), plan.resolved(inventory)


def _onnx_graph(loaded: LoadedModel) -> onnx.ModelProto:
    if loaded.onnx_model is None:
        raise CompressionError(
            f"{loaded.path.name} has no ONNX graph to compress ({'; '.join(loaded.notes)})"
        )
    return loaded.onnx_model


def _recipe_recovery(plan: CompressionPlan, settings) -> DistillOptions | None:
    """The recipe's recovery step (`distill_epochs`), with QAT when the plan quantizes."""
    if not plan.distill_epochs:
        return None
    return DistillOptions(
        epochs=plan.distill_epochs, qat=any(s.bits < 32 for s in settings.values())
    )


def _quantized(model, plan, settings, inputs, options, other_work, notes):
    """The quantize step: (model, what was done per layer, the INT8 form used or "").
    `inputs` are the calibration data and the resolved input shapes; `other_work`: pruning
    or training changed the model, so it is written even when no layer could be quantized."""
    (calib, shapes), (steps, warnings) = inputs, notes
    if not any(s.bits < 32 for s in settings.values()):
        return model, (), ""
    result = quantize_model(
        model, _narrowed(plan, model), calib, options=options, input_shapes=shapes
    )
    warnings.extend(result.warnings)
    _check_quantized(settings, result.actions, result.warnings, other_work, warnings)
    steps.append(_summary(result.actions))
    if result.int8_form:
        steps.append(f"INT8 form: {result.int8_form}")
    return result.model, result.actions, result.int8_form


def _reshaped(original, plan, inventory, shapes, reference, training, steps, warnings):
    """Prune, distill (when asked) and fuse: the float model that quantization starts from,
    the plan (pinned to the INT8 form QAT trained for), the 2:4 weights and the training
    report."""
    distill, calib, unlabeled, evald, target, (cancel, finish_training) = training
    # Weights in Constant nodes or subgraphs become initializers of the main graph, where
    # pruning, BatchNorm folding and quantization reach them (same computation, same size).
    model = lift_weights(original, fold_casts=False)
    # Prune before fusing: BatchNorm scales are still there for `bn_scale` importance, and the
    # fold then scales whole output channels, which keeps every zero (and 2:4 pattern) intact.
    cancel.raise_if_cancelled()
    yield Progress(1, _STEPS, "pruning")
    n_m_weights: tuple[str, ...] = ()
    if any(s.prune_ratio > 0 for s in plan.resolved(inventory).values()):
        model, n_m_weights = _prune(model, plan, shapes, steps, warnings)

    report = None
    if distill is not None:
        model, plan, report = yield from _distilled(
            reference,
            model,
            plan,
            (calib, unlabeled),
            distill,
            target,
            steps,
            (cancel, finish_training),
        )
        warnings.extend(_distill_warnings(report, calib, evald))

    cancel.raise_if_cancelled()
    yield Progress(2, _STEPS, "fusing")
    if plan.fuse:
        model = _fuse(model, shapes, calib or evald, steps, warnings)
    return model, plan, n_m_weights, report


def _result_warnings(plan, before, after, actions, target, here, distilled) -> list[str]:
    """What the measurements say the user should know: simulated layers, a slower model, a
    drop over budget (for a `distilled` model judged by top-1, not cosine), a model measured
    on another CPU family than it was made for."""
    found = []
    if any(a.simulated for a in actions):
        found.append(
            f"1/2-bit layers are {SIMULATED}: their weights are stored packed and unpacked to "
            "float when the model loads; accuracy and size are real, compute is float"
        )
    if (
        before.latency
        and after.latency
        and after.latency.p50_ms > before.latency.p50_ms * (SLOWER_MARGIN)
    ):
        found.append(
            f"the compressed model is slower on this CPU: p50 {after.latency.p50_ms:.2f} ms vs "
            f"{before.latency.p50_ms:.2f} ms; onnxruntime's kernels for these choices do not "
            "pay off here (try FP16/INT4 weight-only for size, or keep depthwise/activation-"
            "heavy layers float)"
        )
    found.extend(
        quality_warnings(plan, before.eval, after.eval, actions, target, distilled=distilled)
    )
    if target.isa_class != here.isa_class or target.arch != here.arch:
        found.append(
            f"measured on {here.cpu_model} ({here.isa_class}), made for {target.cpu_model} "
            f"({target.isa_class}): INT8 accuracy and speed differ between CPU families; "
            "evaluate it on the target before shipping"
        )
    return found


def quality_warnings(
    plan: CompressionPlan,
    before: EvalResult | None,
    after: EvalResult | None,
    actions: tuple[LayerAction, ...],
    target: MachineInfo,
    *,
    distilled: bool = False,
) -> list[str]:
    """Warnings when the measured loss is over the plan's budget (top-1 points) or the output
    cosine under 0.99, with the likely cause and what to try. A `distilled` classifier was
    trained to match the original's softened outputs, not its logits' scale: its cosine says
    little, so it is judged by top-1 on labels, else by top-1 agreement with the original. A
    distilled dense model (detector, encoder) learnt the outputs themselves: pass False, its
    cosine judges it."""
    if before is None or after is None:
        return []
    found = []
    labelled = before.top1 is not None and after.top1 is not None
    if labelled:
        drop = 100 * (before.top1 - after.top1)
        if drop > plan.max_drop_pt:
            found.append(
                f"top-1 fell {drop:.2f} pt, over the plan's budget of {plan.max_drop_pt:g} pt"
            )
    if distilled:
        agreement = after.agreement_top1
        if not labelled and agreement is not None and agreement < MIN_AGREEMENT:
            found.append(f"top-1 agreement with the original {agreement:.2%} is under 99%")
    elif after.cosine is not None and after.cosine < MIN_COSINE:
        found.append(f"output cosine {after.cosine:.4f} is under {MIN_COSINE}")
    if not found:
        return []
    hints = []
    if target.u8s8_saturates and any(_plain_u8s8(action) for action in actions):
        hints.append(
            f"{target.cpu_model} has no VNNI, where u8s8 INT8 sums saturate: "
            f"{AVOID_U8S8_SATURATION.cli}."
        )
    hints.append(
        f"{FIND_LOSSY_LAYERS.cli}, or use per-channel weights, {OTHER_CALIBRATION.cli}, "
        "or fewer low-bit/pruned layers"
    )
    return ["; ".join(found) + ". " + " ".join(hints)]


def _plain_u8s8(action: LayerAction) -> bool:
    return (
        action.bits == 8 and "s8 weights" in action.method and "reduce_range" not in action.method
    )


def _opened(data: Dataset | str | os.PathLike[str] | None, model) -> Dataset | None:
    """`data` as a dataset checked against `model` (a path is loaded)."""
    if data is None or isinstance(data, Dataset):
        return data
    return load_dataset(data, model)


def _datasets(path, model, data, eval_data, loaded) -> tuple[Dataset | None, Dataset | None, str]:
    calib, evald = _opened(data, model), _opened(eval_data, model)
    if calib is None and is_demo_model(path):
        calib = demo_dataset(model, "calib")
        evald = evald or demo_dataset(model, "eval")
        return calib, evald, "bundled demo: calibration split, held-out eval split"
    if evald is None and calib is None:
        # the one place a missing shape is asked for: before any work is done
        shapes = resolve_input_shapes(model, loaded.input_shapes)
        return None, random_dataset(model, shapes=shapes), RANDOM_SOURCE
    return calib, evald or calib, (calib or evald).source


def _check_not_quantized_twice(loaded, plan, settings, other_work: bool, warnings) -> None:
    """An already-quantized model asked for fewer bits: its float layers only, said first;
    CompressionError when it has none and nothing else is asked (a 1.00x file is no result)."""
    quantized = already_quantized(loaded.onnx_model)
    asked = [plan.default, *plan.layers.values(), *(s for _, s in plan.patterns)]
    if not quantized or all(s.bits == 32 for s in asked):
        return
    name, how = next(iter(quantized.items()))
    floats = [n for n, s in settings.items() if s.bits < 32]
    pruned = any(s.prune_ratio > 0 for s in settings.values())
    if not floats and not pruned and not other_work:
        raise CompressionError(
            f"{loaded.path.name} is already quantized ({len(quantized)} layers, e.g. {name}: "
            f"{how}) and has no float layer left to quantize; start from the float model"
        )
    warnings.insert(
        0,
        f"{len(quantized)} layers are already quantized and stay as they are (e.g. {name}: "
        f"{how}); {len(floats)} float layers are quantized",
    )


def _check_quantized(settings, actions, reasons, other_work, warnings) -> None:
    """Layers planned for fewer bits that stayed float are said first, with why; when none
    could be quantized and nothing else changed, CompressionError (nothing is written)."""
    planned = {name for name, setting in settings.items() if setting.bits < 32}
    stayed = [a.name for a in actions if a.bits == 32 and a.name in planned]
    if not stayed:
        return
    why = "; ".join(reasons) or "no quantization path took them"
    if len(stayed) == len(planned) and not other_work:
        raise CompressionError(f"no layer could be quantized, so nothing was written: {why}")
    shown = ", ".join(stayed[:5]) + (f" and {len(stayed) - 5} more" if len(stayed) > 5 else "")
    warnings.insert(0, f"{len(stayed)} of {len(planned)} layers stayed float32 ({shown}): {why}")


def _check_pruning_shrinks(model: onnx.ModelProto, loaded: LoadedModel, settings) -> None:
    """A pruned model no smaller than the original is no compression: CompressionError (nothing
    is written), saying why (zeros in place keep a dense tensor's size) and what would help."""
    ratio = model.ByteSize() / max(_original_size(loaded), 1)
    if ratio < 1:
        return
    patterns = sorted({s.prune_pattern for s in settings.values() if s.prune_ratio > 0})
    raise CompressionError(
        f"pruning ({', '.join(patterns)}) would write a file {ratio:.2f}x the original, so "
        f"nothing was written: zeroed weights keep their dense size; {SMALLER_PRUNING.cli}"
    )


def _narrowed(plan: CompressionPlan, model: onnx.ModelProto) -> CompressionPlan:
    """The plan restricted to layers the (fused) model still has."""
    names = {layer.name for layer in build_inventory(model).layers}
    return dataclasses.replace(
        plan,
        layers={n: s for n, s in plan.layers.items() if n in names},
        patterns=tuple(
            (p, s) for p, s in plan.patterns if any(fnmatch.fnmatchcase(n, p) for n in names)
        ),
    )


def _distilled(teacher, model, plan, data, options, target, steps, tokens):
    """The distillation step: train the pruned (still unfused, so BatchNorm trains) model
    towards the teacher (a loaded model: a torch source teaches with its own module). After
    QAT of INT8 layers the plan's form is pinned to the one trained for, so the file is
    quantized as it was simulated."""
    calib, unlabeled = data
    if calib is None:
        raise CompressorError(f"distillation needs training data: {GIVE_DATA.cli}; labels optional")
    cancel, finish = tokens
    narrowed = _narrowed(plan, model)
    job = distill_job(
        teacher.onnx_model,
        model,
        calib,
        options,
        narrowed,
        cancel,
        finish=finish,
        machine=target,
        unlabeled=unlabeled,
        teacher_module=teacher,
    )
    while True:
        try:
            step = next(job)
        except StopIteration as finished:
            trained, report = finished.value
            break
        yield Progress(1 + step.fraction, _STEPS, f"distilling: {step.message}", step.payload)
    best = report.best
    words = f"validation top-1 {_percent(report.before.val_top1)} -> {_percent(best.val_top1)}"
    if best.val_cosine is not None:
        words = (
            f"cosine to the original {report.before.val_cosine:.4f} -> {best.val_cosine:.4f} "
            f"over every output ({', '.join(report.dense_outputs)})"
        )
    elif best.val_top1 is None:
        words = f"agreement {report.before.val_agreement:.1%} -> {best.val_agreement:.1%}"
    epochs = len(report.history) - 1
    steps.append(
        f"distilled: {epochs} epoch{'s' * (epochs != 1)} on {report.train_samples} samples "
        + (f"({report.unlabeled_samples} of them unlabeled) " if report.unlabeled_samples else "")
        + f"({report.validation_samples} held for validation), best epoch {report.best_epoch}, "
        f"{words}, {report.seconds:.0f} s on {report.threads} threads"
        + (f", QAT on {len(report.qat_layers)} layers" if report.qat_layers else "")
        + f"; teacher run by {report.teacher_runtime}"
    )
    if report.int8_form and plan.int8_form == "auto":
        plan = dataclasses.replace(plan, int8_form=report.int8_form)
        steps.append(f"INT8 form {report.int8_form}: the one QAT trained for")
    return trained, plan, report


def _distill_warnings(report, calib, evald) -> list[str]:
    found = list(report.notes)
    if evald is calib:
        found.append(
            "accuracy is measured on the data the model was trained on (no held-out "
            f"evaluation data): expect less on new data; {GIVE_EVAL_DATA.cli}"
        )
    return found


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _fuse(model: onnx.ModelProto, shapes, data, steps: list[str], warnings: list[str]):
    from compressor_gui.core.fuse import check_feeds, fuse_model

    try:
        fused, report = fuse_model(model, shapes, check_feeds(data))
    except CompressorError as exc:
        warnings.append(f"fusion skipped: {exc}")
        return model
    steps.append(
        f"fused: {len(report.folded)} BatchNorm folded, nodes {report.nodes_before} -> "
        f"{report.nodes_after} (max output change {report.max_abs_diff:.1e})"
    )
    warnings.extend(report.notes)
    return fused


def _prune(model, plan, shapes, steps, warnings) -> onnx.ModelProto:
    from compressor_gui.core.prune import apply_pruning

    pruned, report = apply_pruning(model, plan, shapes)
    line = (
        f"pruned: {len(report.layers)} layers, params {report.params_before} -> "
        f"{report.params_after}, MACs {report.macs_before} -> {report.macs_after}"
    )
    zeroed = [layer for layer in report.layers if layer.pattern != "channel"]
    if zeroed:
        # unstructured and N:M keep every parameter (zeros) in a dense tensor of the same size
        weights = sum(layer.weight_count for layer in zeroed)
        zeros = sum(layer.sparsity * layer.weight_count for layer in zeroed)
        line += (
            f"; {len(zeroed)} layers zeroed in place, {zeros / max(weights, 1):.1%} of their "
            f"{weights} weights now zero (dense size unchanged)"
        )
    steps.append(line)
    warnings.extend(f"not pruned: {s.name} ({s.reason})" for s in report.skipped)
    warnings.extend(report.notes)
    if report.n_m_weights:
        steps.append(f"2:4 sparse weights: {len(report.n_m_weights)} (dense in the file)")
    return pruned, report.n_m_weights


def _summary(actions: tuple[LayerAction, ...]) -> str:
    counts: dict[str, int] = {}
    for action in actions:
        counts[action.method] = counts.get(action.method, 0) + 1
    return "quantized: " + "; ".join(f"{n} x {m}" for m, n in counts.items())


def _original_measured(reference: LoadedModel, evald, latency, cancel):
    """The original's metrics and outputs, measured first: a model that cannot run on the
    evaluation data (random inputs at a shape it does not take, a made-up sample rate) is
    refused before any work is done or file written."""
    yield Progress(0, _STEPS, "measuring the original")
    size = _original_size(reference)
    return _measured(reference.onnx_model, size, evald, None, latency, cancel)


def _sparse_size(model: onnx.ModelProto, n_m_weights) -> int | None:
    return size_report(model, n_m_weights).sparse_format_size_bytes if n_m_weights else None


def _measured(source, size, evald, reference, latency, cancel):
    """A model's metrics and outputs on the evaluation data (fidelity against `reference`)
    and, with `latency`, its timing on one sample of it."""
    session = make_session(source)
    result, outputs = evaluate(session, evald, reference, cancel=cancel)
    timing = measure_latency(session, sample_feed(source, evald)) if latency else None
    return ModelMetrics(size, result, timing, _deflated_size(source)), outputs


def _deflated_size(source: onnx.ModelProto | Path) -> int | None:
    try:
        return compressed_size_bytes(source)
    except ValueError:  # a model over 2 GB cannot be serialized in one piece
        return None


def _original_size(loaded: LoadedModel) -> int:
    if loaded.format == "onnx":
        return loaded.file_size_bytes
    return loaded.onnx_model.ByteSize()
