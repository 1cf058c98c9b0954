"""Deploy on a target: build every form of the plan (core/deploy.py, in a child process),
time each one there in interleaved rounds, compute each one's outputs there with its own
runtime, score them here by core's one rule, recommend one and write the deployment folder.

Interleaving matters on a shared machine: a burst of other work slows one round of every
form instead of every run of one form, and the median over rounds discards it.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from compressor_gui.core.data import Dataset, eval_dataset, load_dataset, tuning_split
from compressor_gui.core.deploy import (
    RECOVERY_EPOCHS,
    REFERENCE_KEY,
    Budget,
    BuiltForm,
    CandidateRow,
    DeployResult,
    build_forms_job,
    candidate_specs,
    default_plan,
    recommend,
)
from compressor_gui.core.errors import CompressorError, JobCancelled
from compressor_gui.core.evaluate import EvalResult, score
from compressor_gui.core.jobs import CancelToken, Job, Progress, job_in_child_process
from compressor_gui.core.model import ModelSource
from compressor_gui.core.plan import CompressionPlan
from compressor_gui.core.shapes import Shapes, dims_text, resolve_input_shapes
from compressor_gui.targets.base import BenchConfig, BenchResult, Target
from compressor_gui.targets.jetson import total_power_mw

T = TypeVar("T")
# Progress: reading the target, building, timing, quality, writing.
_SPANS = {"target": (0.0, 0.03), "build": (0.03, 0.4), "time": (0.4, 0.85), "quality": (0.85, 1)}


@dataclasses.dataclass(frozen=True)
class Timing:
    """How each form is timed on the target."""

    rounds: int = 3  # every form once per round, in turn
    runs: int = 50  # timed runs per form per round
    warmup: int = 5
    threads: int = 0  # 0: the runtime's default
    timeout_s: float = 600.0

    def describe(self, input_shapes: Mapping[str, Sequence[int]] | None = None) -> str:
        threads = f"{self.threads} threads" if self.threads else "the runtime's default threads"
        fed = ", ".join(f"{name} {dims_text(dims)}" for name, dims in (input_shapes or {}).items())
        return (
            f"median of {self.rounds} interleaved rounds x {self.runs} runs (after {self.warmup} "
            f"warm-up), batch 1, {threads}" + (f", input {fed}" if fed else "")
        )


def deploy_job(
    source: ModelSource,
    target: Target,
    work_dir: str | os.PathLike[str],
    plan: CompressionPlan | None = None,
    data: str | os.PathLike[str] | None = None,
    cancel: CancelToken | None = None,
    *,
    forms: Sequence[str] | None = None,
    budget: Budget | None = None,
    timing: Timing = Timing(),
    recovery_epochs: int = RECOVERY_EPOCHS,
    eval_data: str | os.PathLike[str] | None = None,
) -> Job[DeployResult]:
    """Build, time and score every form for `target`; return the table and the
    recommendation. The forms' files are written under `work_dir` (owned by the caller, so
    a form can still be exported after the job); `forms` limits the candidates by key;
    channel-pruned forms are distilled `recovery_epochs` where the data has labels. With
    `eval_data`, all of `data` calibrates and trains and the forms are scored on
    `eval_data`; without it, `data` is split in two."""
    cancel = cancel or CancelToken()
    plan = plan or default_plan()
    budget = budget or Budget(max_drop_pt=plan.max_drop_pt)
    yield Progress(0, 1, f"reading {target.name}")
    machine = target.machine()
    options = [(o.runtime, o.device, o.precision) for o in target.runtime_options()]
    specs = candidate_specs(options, plan)
    if forms:
        unknown = sorted(set(forms) - {s.key for s in specs})
        if unknown:
            offered = ", ".join(s.key for s in specs)
            raise CompressorError(f"{target.name} offers no {', '.join(unknown)}: use {offered}")
        specs = tuple(s for s in specs if s.key == REFERENCE_KEY or s.key in forms)
    loaded = source.open()
    if loaded.onnx_model is None:
        raise CompressorError(f"{source.path.name}: no ONNX graph to deploy; give --input-shape")
    everything = eval_dataset(source.path, loaded.onnx_model, data, source.input_shapes)
    if eval_data is None:
        calibration, held_out, split = tuning_split(loaded.onnx_model, everything)
    else:
        calibration = everything
        held_out = load_dataset(eval_data, loaded.onnx_model)
        split = f"tuned on {len(calibration)} samples, measured on {len(held_out)} others"
    # every form is timed and run at the user's shape (or the data's), not at dynamic dims of 1
    shapes = resolve_input_shapes(loaded.onnx_model, source.input_shapes, everything)
    build = job_in_child_process(
        build_forms_job,
        source,
        plan,
        specs,
        Path(work_dir),
        calibration,
        held_out,
        machine,
        cancel=cancel,
        recovery_epochs=recovery_epochs,
        what="building the forms",
    )
    built = yield from _part(build, "build")
    feed = _timing_feed(held_out, Path(work_dir))
    timed, errors = yield from _part(
        time_forms(target, built, timing, cancel, shapes, feed), "time"
    )
    quality, quality_errors = yield from _part(
        quality_on_target(target, built, held_out, timing, cancel, shapes), "quality"
    )
    errors = {**quality_errors, **errors}
    rows = tuple(candidate_row(form, timed.get(form.spec.key), quality, errors) for form in built)
    recommendation = recommend(rows, budget)
    notes = [f"data: {split}"]
    if any(form.spec.runtime == "trtexec" for form in built):
        notes.append(
            "TensorRT forms: trtexec returns no outputs, so their quality is not "
            "measured and they are not recommended; check them on the device"
        )
    return DeployResult(
        model_path=source.path,
        target=target.name,
        machine=machine,
        plan=plan,
        budget=budget,
        rows=rows,
        recommendation=recommendation,
        forms=built,
        data_source=held_out.source or everything.source,
        measurement=timing.describe(shapes),
        notes=tuple(notes),
    )


def _timing_feed(data: Dataset, folder: Path) -> Path:
    """The first sample of `data` as an .npz the runners feed the timed runs: made-up inputs
    miss what a model needs of its values (silero-vad's sample rate of 16000 or 8000: its
    Pad fails at 1) and time branches a real input does not take."""
    path = folder / "timing_feed.npz"
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{name: array[:1] for name, array in data.inputs.items()})
    return path


def time_forms(
    target: Target,
    forms: Sequence[BuiltForm],
    timing: Timing,
    cancel: CancelToken,
    input_shapes: Shapes | None = None,
    feed_data: Path | None = None,
) -> Job[tuple[dict[str, BenchResult], dict[str, str]]]:
    """Every built form timed once per round, forms in turn, fed `feed_data`'s sample (else
    made-up inputs at `input_shapes`), as `bench --data` feeds; per form
    the median of the rounds (latency percentiles, throughput, power), and the errors of
    forms that failed."""
    fed = {name: list(dims) for name, dims in input_shapes.items()} if input_shapes else None
    runs: dict[str, list[BenchResult]] = {}
    errors: dict[str, str] = {}
    live = [form for form in forms if form.path is not None]
    total = timing.rounds * max(len(live), 1)
    for round_index in range(timing.rounds):
        for index, form in enumerate(live):
            key = form.spec.key
            if key in errors:
                continue
            config = BenchConfig(
                warmup=timing.warmup,
                runs=timing.runs,
                threads=timing.threads,
                runtime=form.spec.runtime,
                provider=None if form.spec.runtime == "trtexec" else form.spec.device,
                precision=form.spec.bench_precision,
                timeout_s=timing.timeout_s,
                input_shapes=fed,
                feed_data=None if feed_data is None else str(feed_data),
            )
            done = round_index * len(live) + index
            message = f"timing {form.spec.label} (round {round_index + 1}/{timing.rounds})"
            try:
                job = target.benchmark(form.path, config, cancel)
                result = yield from _step(job, done, total, message)
            except JobCancelled:
                raise
            except CompressorError as exc:
                errors[key] = str(exc)
                continue
            runs.setdefault(key, []).append(result)
    return {key: _median_result(results) for key, results in runs.items()}, errors


def _median_result(results: list[BenchResult]) -> BenchResult:
    """One result whose numbers are the medians over rounds (power rail by rail)."""
    latency = dataclasses.replace(
        results[0].latency,
        runs=sum(r.runs for r in results),
        **{
            name: statistics.median(getattr(r.latency, name) for r in results)
            for name in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "max_ms")
        },
    )
    rails = {rail for r in results for rail in r.power_mw}
    power = {
        rail: statistics.median(r.power_mw[rail] for r in results if rail in r.power_mw)
        for rail in rails
    }
    return dataclasses.replace(
        results[0],
        latency=latency,
        throughput_per_s=statistics.median(r.throughput_per_s for r in results),
        power_mw=power,
    )


def quality_on_target(
    target: Target,
    forms: Sequence[BuiltForm],
    dataset: Dataset,
    timing: Timing,
    cancel: CancelToken,
    input_shapes: Shapes | None = None,
) -> Job[tuple[dict[str, EvalResult], dict[str, str]]]:
    """Each form's outputs over the held-out data computed by its own runtime on the target
    (a runtime that fixes dynamic dims first fixes them at `input_shapes`), scored against
    the reference form's outputs (onnxruntime FP32 of the original)."""
    fed = {name: list(dims) for name, dims in input_shapes.items()} if input_shapes else None
    groups: dict[tuple[str, str, str], list[BuiltForm]] = {}
    for form in forms:
        if form.path is not None and form.spec.runtime != "trtexec":
            spec = form.spec
            groups.setdefault((spec.runtime, spec.device, spec.bench_precision), []).append(form)
    reference_group = next(g for g, fs in groups.items() if fs[0].spec.key == REFERENCE_KEY)
    ordered = [reference_group, *(g for g in groups if g != reference_group)]
    outputs: dict[str, list] = {}
    errors: dict[str, str] = {}
    for index, group in enumerate(ordered):
        runtime, device, precision = group
        config = BenchConfig(
            runtime=runtime,
            provider=device,
            precision=precision,
            timeout_s=timing.timeout_s,
            input_shapes=fed,
        )
        members = groups[group]
        message = f"quality: {', '.join(f.spec.label for f in members)}"
        job = target.model_outputs([(f.spec.key, f.path) for f in members], dataset, config, cancel)
        try:
            run = yield from _step(job, index, len(ordered), message)
        except JobCancelled:
            raise
        except CompressorError as exc:
            if group == reference_group:
                raise
            errors.update({f.spec.key: str(exc) for f in members})
            continue
        outputs.update({f.spec.key: out for f, out in zip(members, run.outputs, strict=True)})
    reference = outputs[REFERENCE_KEY]
    scored = {}
    for key, value in outputs.items():
        try:
            scored[key] = score(value, dataset, None if key == REFERENCE_KEY else reference)
        except CompressorError as exc:
            errors[key] = str(exc)
    return scored, errors


def candidate_row(
    form: BuiltForm,
    timed: BenchResult | None,
    quality: dict[str, EvalResult],
    errors: dict[str, str],
) -> CandidateRow:
    spec = form.spec
    measured = quality.get(spec.key)
    reference = spec.key == REFERENCE_KEY
    return CandidateRow(
        key=spec.key,
        label=spec.label,
        runtime=spec.runtime,
        precision=spec.precision,
        plan=spec.plan,
        size_bytes=form.size_bytes,
        p50_ms=timed.latency.p50_ms if timed else None,
        p90_ms=timed.latency.p90_ms if timed else None,
        p99_ms=timed.latency.p99_ms if timed else None,
        throughput_per_s=timed.throughput_per_s if timed else None,
        power_mw=total_power_mw(dict(timed.power_mw)) if timed and timed.power_mw else None,
        top1=measured.top1 if measured else None,
        cosine=1.0 if reference and measured else (measured.cosine if measured else None),
        agreement_top1=measured.agreement_top1 if measured else None,
        sha256=form.sha256,
        note=form.note,
        error=form.error or errors.get(spec.key, ""),
    )


def _part(job: Job[T], span: str) -> Job[T]:
    """Pass on a stage's progress as its share of the whole deploy."""
    start, stop = _SPANS[span]
    while True:
        try:
            step = next(job)
        except StopIteration as done:
            return done.value
        yield Progress(start + (stop - start) * step.fraction, 1.0, step.message)


def _step(job: Job[T], done: int, total: int, message: str) -> Job[T]:
    """A sub-job as step `done` of `total`: its progress moves within that step."""
    while True:
        try:
            step = next(job)
        except StopIteration as finished:
            return finished.value
        yield Progress(done + step.fraction, total, message)


def default_work_dir() -> Path:
    """A fresh folder for one deploy's forms (the caller removes it)."""
    return Path(tempfile.mkdtemp(prefix="compressor-gui-deploy-"))
