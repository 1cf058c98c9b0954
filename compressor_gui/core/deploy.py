"""Deploy: the forms one plan can take on a target (runtime x precision x plan), how each is
built, and the rule that picks one from what the target measured.

Which form is fastest changes with the CPU, the model and the runtime (on an AVX2 EPYC
onnxruntime INT8 can be slower than FP32 while OpenVINO + NNCF INT8 is twice as fast), so
nothing here guesses: every form is built (`build_forms_job`, in a child process), measured
on the target (targets/deploy.py) and `recommend` picks the fastest within the accuracy
budget, never one measured slower than the original.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compressor_gui.core.data import Dataset
from compressor_gui.core.errors import CompressorError, JobCancelled
from compressor_gui.core.hardware import MachineInfo
from compressor_gui.core.jobs import CancelToken, Job, Progress
from compressor_gui.core.model import ModelSource, file_size_bytes, model_files, save_onnx
from compressor_gui.core.plan import CompressionPlan, LayerSetting
from compressor_gui.formatting import measured_cells

MIN_COSINE = 0.99  # without labels, a form must keep this output cosine to the original
TIE_FRACTION = 0.02  # latencies within 2% of the fastest are a tie: the smaller file wins
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
REFERENCE_KEY = "ort-fp32"
# When the plan does not prune, these shares of channels are tried too, in the INT8 forms
# (channel pruning removes work in every runtime; recovered by distillation on labelled data)
CHANNEL_SHARES = (0.25, 0.5)
PRUNED_INT8 = ("ort-int8", "ov-int8")
RECOVERY_EPOCHS = 10


@dataclass(frozen=True)
class FormSpec:
    """One candidate: which runtime runs it, at what precision, from which plan."""

    key: str  # e.g. "ov-int8", "ort-int8-pruned"
    runtime: str  # ort | openvino | trtexec (as BenchConfig names them)
    precision: str  # what the form computes in: fp32 | fp16 | bf16 | int8 | default
    device: str  # ORT provider, OpenVINO device, or GPU for trtexec
    plan: str = "original"  # original | pruned (the plan's pruning) | channels-25 (25% cut)
    bench_precision: str = "fp32"  # the runner's precision setting for this file
    of: str = ""  # the unpruned form this one is a pruned variant of

    @property
    def kind(self) -> str:
        """How its file is made (the builder's method), shared by its pruned variants."""
        return _FILE_KIND[self.of or self.key]

    @property
    def label(self) -> str:
        runtime = {"ort": "onnxruntime", "openvino": "OpenVINO", "trtexec": "TensorRT"}
        precision = "default" if self.precision == "default" else self.precision.upper()
        words = f"{runtime[self.runtime]} {precision}"
        if self.runtime == "ort" and self.device not in ("", "CPUExecutionProvider"):
            words += f" ({self.device.removesuffix('ExecutionProvider')})"
        if self.plan.startswith("channels-"):
            return f"{words} {self.plan.removeprefix('channels-')}% channels pruned"
        return words + (" pruned" if self.plan == "pruned" else "")


def candidate_specs(
    options: Iterable[tuple[str, str, str]], plan: CompressionPlan
) -> tuple[FormSpec, ...]:
    """The forms worth measuring on a target offering `options` (runtime, device, precision)
    for `plan`: ORT FP32 (the reference) and INT8 on CPU, FP16 where a GPU provider is,
    OpenVINO FP32 / its default / BF16 where offered / NNCF INT8, TensorRT FP16 and INT8
    where trtexec is; pruned variants of the main ones when the plan prunes, else the INT8
    forms with CHANNEL_SHARES of their channels pruned."""
    options = list(options)
    providers = [device for runtime, device, _ in options if runtime == "ort"]
    specs = [
        FormSpec(REFERENCE_KEY, "ort", "fp32", "CPUExecutionProvider"),
        FormSpec("ort-int8", "ort", "int8", "CPUExecutionProvider"),
    ]
    gpu = next((p for p in GPU_PROVIDERS if p in providers), None)
    if gpu:
        specs.append(FormSpec("ort-fp16", "ort", "fp16", gpu))
    if any(runtime == "openvino" for runtime, _, _ in options):
        specs += [
            FormSpec("ov-fp32", "openvino", "fp32", "CPU", bench_precision="fp32"),
            FormSpec("ov-default", "openvino", "default", "CPU", bench_precision="default"),
        ]
        if ("openvino", "CPU", "bf16") in options:
            specs.append(FormSpec("ov-bf16", "openvino", "bf16", "CPU", bench_precision="bf16"))
        specs.append(FormSpec("ov-int8", "openvino", "int8", "CPU", bench_precision="default"))
    if any(runtime == "trtexec" for runtime, _, _ in options):
        specs += [
            FormSpec("trt-fp16", "trtexec", "fp16", "GPU", bench_precision="fp16"),
            FormSpec("trt-int8", "trtexec", "int8", "GPU", bench_precision="int8"),
        ]
    if prunes(plan):
        pruned_of = ("ort-fp32", "ort-int8", "ov-default", "ov-int8", "trt-int8")
        return (*specs, *(_pruned(s, "pruned", "pruned") for s in specs if s.key in pruned_of))
    for share in CHANNEL_SHARES:
        percent = round(100 * share)
        int8 = [s for s in specs if s.key in PRUNED_INT8]
        specs += [_pruned(s, f"c{percent}", f"channels-{percent}") for s in int8]
    return tuple(specs)


def _pruned(spec: FormSpec, suffix: str, plan: str) -> FormSpec:
    return dataclasses.replace(spec, key=f"{spec.key}-{suffix}", plan=plan, of=spec.key)


# --- plans for each form -------------------------------------------------------------------


def default_plan() -> CompressionPlan:
    """Without a recipe: every layer INT8 (the INT8 form chosen for the target)."""
    return CompressionPlan(default=LayerSetting(bits=8))


def prunes(plan: CompressionPlan) -> bool:
    settings = [plan.default, *plan.layers.values(), *(s for _, s in plan.patterns)]
    return any(s.prune_ratio > 0 for s in settings)


def _mapped(plan: CompressionPlan, change: Callable[[LayerSetting], LayerSetting], **fields):
    """The plan with `change` applied to its default, every layer and every pattern."""
    return dataclasses.replace(
        plan,
        default=change(plan.default),
        layers={name: change(s) for name, s in plan.layers.items()},
        patterns=tuple((p, change(s)) for p, s in plan.patterns),
        **fields,
    )


def without_pruning(plan: CompressionPlan) -> CompressionPlan:
    return _mapped(plan, lambda s: dataclasses.replace(s, prune_ratio=0.0))


def pruning_only(plan: CompressionPlan) -> CompressionPlan:
    """The plan's pruning with every layer left float (no fusion: runtimes fold BN)."""
    return _mapped(plan, lambda s: dataclasses.replace(s, bits=32), fuse=False)


def channel_pruned(plan: CompressionPlan, share: float) -> CompressionPlan:
    """`share` of the channels of every layer the plan compresses cut (layers it keeps float
    stay whole): the pruned candidates tried when the plan does not prune."""

    def cut(setting: LayerSetting) -> LayerSetting:
        if setting.bits >= 32:
            return setting
        return dataclasses.replace(setting, prune_ratio=share, prune_pattern="channel")

    return _mapped(plan, cut)


def half_precision(plan: CompressionPlan) -> CompressionPlan:
    """Every layer the plan makes smaller than 32 bits at 16 bits instead (a GPU form)."""
    return _mapped(plan, lambda s: dataclasses.replace(s, bits=16 if s.bits < 32 else 32))


# --- building ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltForm:
    """A candidate's files on disk (or why it could not be built)."""

    spec: FormSpec
    path: Path | None
    size_bytes: int = 0
    sha256: Mapping[str, str] = field(default_factory=dict)  # file name -> digest
    note: str = ""  # how it was made (INT8 form, NNCF settings)
    error: str = ""


def file_digests(path: Path) -> dict[str, str]:
    """SHA-256 of each of the form's files, by name."""
    digests = {}
    for file in model_files(path):
        digest = hashlib.sha256()
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digests[file.name] = digest.hexdigest()
    return digests


def build_forms_job(
    source: ModelSource,
    plan: CompressionPlan,
    specs: Sequence[FormSpec],
    folder: Path,
    calibration: Dataset,
    evaluation: Dataset,
    machine: MachineInfo,
    cancel: CancelToken | None = None,
    recovery_epochs: int = RECOVERY_EPOCHS,
) -> Job[tuple[BuiltForm, ...]]:
    """Build every form into `folder` (what a child process runs). A form that fails is
    returned with its error; the others go on. Channel-pruned forms are trained back
    towards the original for `recovery_epochs` where the calibration data has labels."""
    cancel = cancel or CancelToken()
    loaded = source.open()
    if loaded.onnx_model is None:
        raise CompressorError(f"{source.path.name} has no ONNX graph ({'; '.join(loaded.notes)})")
    builder = _Builder(
        loaded, plan, Path(folder), (calibration, evaluation), machine, cancel, recovery_epochs
    )
    built = []
    for index, spec in enumerate(specs):
        cancel.raise_if_cancelled()
        yield Progress(index, len(specs), f"building {spec.label}")
        try:
            path, note = builder.build(spec)
        except JobCancelled:
            raise
        except CompressorError as exc:
            built.append(BuiltForm(spec, None, error=str(exc)))
            continue
        size = file_size_bytes(path)
        built.append(BuiltForm(spec, path, size, file_digests(path), note))
    yield Progress(len(specs), len(specs), "built")
    return tuple(built)


class _Builder:
    """Makes each form once; forms that share a file (OpenVINO hints) share it, and the INT8
    forms of a pruned plan quantize the same pruned (and recovered) float model."""

    def __init__(self, loaded, plan, folder, data, machine, cancel, recovery_epochs) -> None:
        self.loaded, self.plan, self.folder = loaded, plan, folder
        self.calibration, self.evaluation = data
        self.machine, self.cancel = machine, cancel
        self.recovery_epochs = recovery_epochs
        self._made: dict[str, tuple[Path, str]] = {}

    def build(self, spec: FormSpec) -> tuple[Path, str]:
        key = f"{spec.kind}-{spec.plan}"
        if key not in self._made:
            self._made[key] = getattr(self, f"_{spec.kind}")(spec.plan, key)
        return self._made[key]

    def _plan_named(self, name: str) -> CompressionPlan:
        if name == "original":
            return without_pruning(self.plan)
        if name == "pruned":
            return self.plan
        share = int(name.removeprefix("channels-")) / 100
        return channel_pruned(without_pruning(self.plan), share)

    def _base(self, plan_name: str, _key: str = "") -> tuple[Path, str]:
        """The float model of a plan: the original, or pruned (and, with labelled data,
        trained back towards the original by distillation)."""
        if plan_name == "original":
            path = save_onnx(self.loaded.onnx_model, self.folder / "original.onnx")
            return path, "the model as given"
        recovery = None
        labelled = self.calibration.labels is not None
        if labelled and plan_name.startswith("channels-") and self.recovery_epochs > 0:
            from compressor_gui.core.distill import DistillOptions

            recovery = DistillOptions(epochs=self.recovery_epochs)
        plan = pruning_only(self._plan_named(plan_name))
        return self._compressed(plan, f"{plan_name}.onnx", distill=recovery)

    def _int8(self, plan_name: str, key: str) -> tuple[Path, str]:
        if not plan_name.startswith("channels-"):
            return self._compressed(self._plan_named(plan_name), f"{key}.onnx")
        base, how = self.build(FormSpec("base", "ort", "fp32", "", plan_name))
        path, note = self._compressed(without_pruning(self.plan), f"{key}.onnx", source=base)
        return path, f"{how}; then {note}"

    def _fp16(self, plan_name: str, key: str) -> tuple[Path, str]:
        return self._compressed(half_precision(self._plan_named(plan_name)), f"{key}.onnx")

    def _qdq_s8(self, plan_name: str, key: str) -> tuple[Path, str]:
        """TensorRT reads symmetric s8 activations and s8 weights only."""
        from compressor_gui.core.quantize import Int8Options

        plan = dataclasses.replace(self._plan_named(plan_name), int8_form="u8s8")
        return self._compressed(plan, f"{key}.onnx", Int8Options(activations="s8"))

    def _ir(self, plan_name: str, key: str) -> tuple[Path, str]:
        from compressor_gui.core.openvino_export import export_ir

        base, _ = self.build(FormSpec("base", "ort", "fp32", "", plan_name))
        ir = export_ir(base, self.folder / f"{key}.xml")
        return ir.xml_path, ir.note

    def _nncf(self, plan_name: str, key: str) -> tuple[Path, str]:
        from compressor_gui.core.inventory import build_inventory
        from compressor_gui.core.openvino_export import float_layers, nncf_int8

        base, how = self.build(FormSpec("base", "ort", "fp32", "", plan_name))
        inventory = build_inventory(self.loaded.onnx_model)
        validation = self.calibration if self.calibration.labels is not None else None
        ir = nncf_int8(
            base,
            self.folder / f"{key}.xml",
            self.calibration,
            ignored=float_layers(without_pruning(self.plan), inventory),
            validation=validation,
            max_drop_pt=self.plan.max_drop_pt,
        )
        return ir.xml_path, ir.note if plan_name == "original" else f"{how}; then {ir.note}"

    def _compressed(
        self, plan, name: str, options=None, *, source: Path | None = None, distill=None
    ) -> tuple[Path, str]:
        """`plan` applied to the original (or to the model at `source`), written as `name`."""
        from compressor_gui.core.compress import compress_job
        from compressor_gui.core.model import load_model

        job = compress_job(
            self.loaded if source is None else load_model(source),
            plan,
            self.folder / name,
            self.calibration,
            self.cancel,
            eval_data=self.evaluation,
            options=options,
            latency=False,
            target=self.machine,
            distill=distill,
        )
        while True:  # the caller reports progress per form, not the steps inside one
            try:
                next(job)
            except StopIteration as done:
                result = done.value
                break
        note = "; ".join(s for s in result.steps if not s.startswith("INT8 form"))
        if result.int8_form:
            note += f"; INT8 form {result.int8_form}"
        return result.output_path, note


# spec key (of an unpruned form) -> the builder method that makes its file
_FILE_KIND = {
    "base": "base",
    "ort-fp32": "base",
    "ort-int8": "int8",
    "ort-fp16": "fp16",
    "ov-fp32": "ir",
    "ov-default": "ir",
    "ov-bf16": "ir",
    "ov-int8": "nncf",
    "trt-fp16": "base",
    "trt-int8": "qdq_s8",
}


# --- measured rows and the recommendation --------------------------------------------------


@dataclass(frozen=True)
class CandidateRow:
    """One form as the target measured it; latency fields None when it could not run."""

    key: str
    label: str
    runtime: str
    precision: str
    plan: str
    size_bytes: int
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    throughput_per_s: float | None = None
    power_mw: float | None = None  # total of the board's rails, where tegrastats gives it
    top1: float | None = None
    cosine: float | None = None
    agreement_top1: float | None = None
    sha256: Mapping[str, str] = field(default_factory=dict)
    note: str = ""
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["sha256"] = dict(self.sha256)
        return data

    @property
    def measured_cells(self) -> tuple[str, ...]:
        """The figures under formatting.MEASURED_COLUMNS, as every comparison table shows them."""
        return measured_cells(
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.throughput_per_s,
            self.power_mw,
            self.top1,
            self.cosine,
        )


@dataclass(frozen=True)
class Budget:
    """How much quality a faster form may cost."""

    max_drop_pt: float = 1.0  # top-1 points, where there are labels
    min_cosine: float = MIN_COSINE  # output cosine to the original, where there are none


@dataclass(frozen=True)
class Recommendation:
    key: str
    reason: str  # one line


def recommend(
    rows: Sequence[CandidateRow], budget: Budget = Budget(), reference: str = REFERENCE_KEY
) -> Recommendation:
    """The fastest form within the accuracy budget, never one slower than the reference
    (the original in onnxruntime FP32); latencies within TIE_FRACTION are a tie, won by the
    smaller file. Forms whose quality was not measured cannot win."""
    by_key = {row.key: row for row in rows}
    base = by_key.get(reference)
    if base is None or base.p50_ms is None:
        raise CompressorError(f"the reference {reference} was not measured: nothing to compare")
    labelled = base.top1 is not None
    eligible = [
        row
        for row in rows
        if row.key != reference
        and row.p50_ms is not None
        and row.p50_ms < base.p50_ms
        and _within(row, base, budget)
    ]
    if not eligible:
        return Recommendation(reference, _none_reason(rows, base, budget, labelled))
    fastest = min(row.p50_ms for row in eligible)
    tied = [row for row in eligible if row.p50_ms <= fastest * (1 + TIE_FRACTION)]
    chosen = min(tied, key=lambda row: (row.size_bytes, row.p50_ms))
    speed = base.p50_ms / chosen.p50_ms
    quality = _quality_words(chosen, base, budget, labelled)
    reason = (
        f"{chosen.label}: {speed:.2f}x faster than {base.label} (p50 {chosen.p50_ms:.3g} vs "
        f"{base.p50_ms:.3g} ms), {quality}"
    )
    if len(tied) > 1:
        reason += f"; tied within {TIE_FRACTION:.0%} with {len(tied) - 1} other(s), smaller file"
    return Recommendation(chosen.key, reason)


def _within(row: CandidateRow, base: CandidateRow, budget: Budget) -> bool:
    if base.top1 is not None:
        return row.top1 is not None and 100 * (base.top1 - row.top1) <= budget.max_drop_pt
    return row.cosine is not None and row.cosine >= budget.min_cosine


def _quality_words(row: CandidateRow, base: CandidateRow, budget: Budget, labelled: bool) -> str:
    if labelled:
        drop = 100 * (base.top1 - row.top1)
        return f"top-1 {100 * row.top1:.2f}% ({-drop:+.2f} pt, budget {budget.max_drop_pt:g} pt)"
    return f"output cosine {row.cosine:.4f} (>= {budget.min_cosine})"


def _none_reason(rows, base: CandidateRow, budget: Budget, labelled: bool) -> str:
    faster = [r for r in rows if r.p50_ms is not None and r.p50_ms < base.p50_ms]
    if not faster:
        return f"{base.label} as given: no other form ran faster on this target"
    what = f"{budget.max_drop_pt:g} pt top-1" if labelled else f"cosine {budget.min_cosine}"
    return (
        f"{base.label} as given: the {len(faster)} faster form(s) lost more than {what} "
        "or were not measured for quality"
    )


def copy_form(path: Path, folder: Path, stem: str = "model") -> Path:
    """Copy a form's files into `folder` as `<stem>.<suffix>` (ONNX external data keeps
    the name the model refers to)."""
    files = model_files(path)
    target = folder / f"{stem}{path.suffix}"
    shutil.copyfile(files[0], target)
    for extra in files[1:]:
        name = target.with_suffix(".bin").name if path.suffix == ".xml" else extra.name
        shutil.copyfile(extra, folder / name)
    return target


@dataclass(frozen=True)
class DeployResult:
    """Every form as the target measured it, the one recommended and why, and where."""

    model_path: Path
    target: str
    machine: MachineInfo
    plan: CompressionPlan
    budget: Budget
    rows: tuple[CandidateRow, ...]
    recommendation: Recommendation
    forms: tuple[BuiltForm, ...]  # the built files (alive while the job's work folder is)
    data_source: str
    measurement: str  # how latency was taken: rounds, runs, threads
    output_dir: Path | None = None
    notes: tuple[str, ...] = ()

    def row(self, key: str) -> CandidateRow:
        return next(row for row in self.rows if row.key == key)

    def form(self, key: str) -> BuiltForm:
        return next(form for form in self.forms if form.spec.key == key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": str(self.model_path),
            "target": self.target,
            "machine": self.machine.to_dict(),
            "machine_summary": self.machine.summary,
            "runtime_versions": dict(self.machine.runtimes),
            "plan": self.plan.to_dict(),
            "budget": dataclasses.asdict(self.budget),
            "candidates": [row.to_dict() for row in self.rows],
            "recommended": self.recommendation.key,
            "reason": self.recommendation.reason,
            "data": self.data_source,
            "measurement": self.measurement,
            "output_dir": str(self.output_dir) if self.output_dir else None,
            "notes": list(self.notes),
        }
