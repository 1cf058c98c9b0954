"""The application layer's work: open a model, choose its data, build the jobs.

The window and the command line are two doors to these functions: the same model, plan and
data give the same rule and the same numbers in both. A job here is a generator yielding
`Progress` (core/jobs.py); the GUI runs the heavy ones in a child process (`in_child`), the
CLI in its own process. Targets (local, SSH) are passed in as objects: core never imports
targets/.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compressor_gui.core.advice import GIVE_DATA
from compressor_gui.core.compress import CompressResult, compress_job, compress_source_job
from compressor_gui.core.data import (
    Dataset,
    compress_data_file,
    demo_dataset,
    eval_data_beside,
    eval_dataset,
    is_demo_model,
    load_dataset,
)
from compressor_gui.core.distill_types import DistillOptions
from compressor_gui.core.errors import CompressorError, error_text
from compressor_gui.core.executors import Placement
from compressor_gui.core.graph import make_session
from compressor_gui.core.inventory import ModelInventory, build_inventory, build_tensor_inventory
from compressor_gui.core.jobs import CancelToken, Job, Progress, job_in_child_process
from compressor_gui.core.model import LoadedModel, load_model
from compressor_gui.core.plan import CompressionPlan
from compressor_gui.core.search import AutoPlanResult, Budget, autoplan_job, autoplan_source_job
from compressor_gui.core.sensitivity import (
    OPTIONS,
    SensitivityOption,
    SensitivityTable,
    sensitivity_job,
    sensitivity_source_job,
)
from compressor_gui.core.shapes import (
    ShapeQuestion,
    dims_text,
    random_feed,
    resolve_input_shapes,
    shape_question,
)

if TYPE_CHECKING:
    from compressor_gui.core.hardware import MachineInfo

NO_DATA_FOR_SWEEP = f"no data to measure accuracy on: {GIVE_DATA.cli}, labels y optional"


@dataclass(frozen=True)
class OpenedModel:
    """A model and its inventory, as the window shows it and the CLI lists it."""

    loaded: LoadedModel
    inventory: ModelInventory


# --- opening ------------------------------------------------------------------------------------


def inventory_of(
    loaded: LoadedModel, input_shapes: Sequence[Sequence[int]] | None = None
) -> ModelInventory:
    """The inventory of whatever was opened: the ONNX graph, else the torch weights (a
    module's parameters and buffers named by their module type, or a bare state_dict)."""
    if loaded.onnx_model is not None:
        shapes = input_shapes or loaded.input_shapes
        resolved = resolve_input_shapes(loaded.onnx_model, shapes, probe=False) if shapes else {}
        given = dict(list(resolved.items())[: len(shapes or ())])  # the rest stay assumptions
        return build_inventory(loaded.onnx_model, input_shapes=given)
    tensors = loaded.state_dict
    module_types = {}
    if tensors is None:
        module = loaded.torch_module
        tensors = {**dict(module.named_parameters()), **dict(module.named_buffers())}
        module_types = {
            name: getattr(sub, "original_name", type(sub).__name__)
            for name, sub in module.named_modules()
        }
    arrays = {name: _as_array(t) for name, t in tensors.items()}
    return build_tensor_inventory(arrays, module_types)


def _as_array(tensor: Any) -> np.ndarray:
    return tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)


def open_model_job(
    path: str | os.PathLike[str],
    trust_pickle: bool = False,
    input_shapes: Sequence[Sequence[int]] | None = None,
) -> Job[OpenedModel]:
    """Load a model and count its layers (big models take seconds: the GUI runs this in a
    worker, the CLI inline)."""
    path = Path(path)
    yield Progress(0, 2, f"reading {path.name}")
    loaded = load_model(path, trust_pickle=trust_pickle, input_shapes=input_shapes)
    yield Progress(1, 2, "counting layers, bytes and MACs")
    inventory = inventory_of(loaded, input_shapes)
    yield Progress(2, 2, f"{len(inventory.layers)} layers")
    return OpenedModel(loaded, inventory)


def with_input_shapes_job(opened: OpenedModel, shapes: Sequence[Sequence[int]]) -> Job[OpenedModel]:
    """The open model with the user's input shapes (one per real input, in order): run once at
    them, so a shape the model does not take is refused now rather than by every job, and its
    layers counted again (MACs grow with the image)."""
    loaded = dataclasses.replace(
        require_graph(opened.loaded), input_shapes=tuple(tuple(int(d) for d in s) for s in shapes)
    )
    resolved = resolve_input_shapes(loaded.onnx_model, loaded.input_shapes)
    yield Progress(
        0, 2, f"running the model once at {', '.join(map(dims_text, resolved.values()))}"
    )
    session = make_session(loaded.onnx_model)
    try:
        session.run(None, random_feed(loaded.onnx_model, resolved))
    except Exception as exc:  # onnxruntime raises its own types for shape errors
        raise CompressorError(
            f"the model does not run at that shape (onnxruntime: {error_text(exc, 300)})"
        ) from exc
    yield Progress(1, 2, "counting MACs at that shape")
    return OpenedModel(loaded, inventory_of(loaded))


def require_graph(loaded: LoadedModel) -> LoadedModel:
    """The model, if it has an ONNX graph to run; else the reason in words."""
    if loaded.onnx_model is None:
        raise CompressorError(f"{loaded.path.name} has no ONNX graph ({'; '.join(loaded.notes)})")
    return loaded


# --- data: one rule for both doors ---------------------------------------------------------------


def has_own_data(model_path: str | os.PathLike[str], chosen: str | os.PathLike[str] | None) -> bool:
    """Whether a job finds real data without asking: chosen data, `<stem>_eval.npz` beside the
    model, or the bundled demo's splits. Without it the GUI asks before it runs on random
    inputs (fidelity only) and the CLI says so in its data line."""
    return (
        chosen is not None or is_demo_model(model_path) or eval_data_beside(model_path) is not None
    )


def sized_at_opening(opened: OpenedModel) -> tuple[OpenedModel, ShapeQuestion | None, str | None]:
    """The model as it opens, what to ask about its dynamic input dims, and a note when the
    data beside it answers instead: every job reads that data, so its sample shapes become
    the input shapes (as if the user had given them) and nothing is asked."""
    loaded = require_graph(opened.loaded)
    beside = None if loaded.input_shapes else eval_data_beside(loaded.path)
    if beside is not None:
        try:
            dataset = load_dataset(beside, loaded.onnx_model)
            question = shape_question(loaded.onnx_model, None, dataset)
        except CompressorError:
            pass  # the data does not fit: the jobs will say why
        else:
            if question is not None:
                return opened, question, None
            shapes = resolve_input_shapes(loaded.onnx_model, None, dataset, probe=False)
            sized = dataclasses.replace(loaded, input_shapes=tuple(shapes.values()))
            text = ", ".join(dims_text(shape) for shape in shapes.values())
            note = f"input shape {text}: from the data beside the model ({beside.name})"
            return OpenedModel(sized, inventory_of(sized)), None, note
    return opened, shape_question(loaded.onnx_model, loaded.input_shapes), None


def evaluation_data(loaded: LoadedModel, chosen: str | os.PathLike[str] | None) -> Dataset:
    """What Evaluate (and Deploy's scoring) runs on: chosen data, the data beside the model,
    the demo's held-out split, else random inputs of the resolved input shapes (the model's
    `--input-shape` answer) labelled "fidelity only"."""
    model = require_graph(loaded).onnx_model
    return eval_dataset(loaded.path, model, chosen, loaded.input_shapes)


def evaluation_models(
    loaded: LoadedModel, compressed: str | os.PathLike[str] | None
) -> list[tuple[str, Any]]:
    """(label, model) pairs Evaluate runs, the original first (its outputs are the reference
    for fidelity): an ONNX file by path, a converted torch model as its graph."""
    original = loaded.path if loaded.format == "onnx" else require_graph(loaded).onnx_model
    models: list[tuple[str, Any]] = [("original", original)]
    if compressed is not None:
        models.append(("compressed", Path(compressed)))
    return models


def compress_data(loaded: LoadedModel, chosen: str | os.PathLike[str] | None) -> Path | None:
    """The file Compress calibrates on (None: the demo's splits, else random inputs)."""
    return compress_data_file(loaded.path, chosen)


def sweep_data(
    loaded: LoadedModel, chosen: str | os.PathLike[str] | None, samples: int = 256
) -> Dataset:
    """The first `samples` of the data Sensitivity and Auto plan measure accuracy on. Their
    drops are top-1 points (or agreement with the original): on random inputs they would
    mean nothing, so without data they refuse."""
    model = require_graph(loaded).onnx_model
    if samples < 1:
        raise CompressorError(f"samples must be at least 1, not {samples}")
    data = chosen or eval_data_beside(loaded.path)
    if data is not None:
        dataset = load_dataset(data, model)
    elif is_demo_model(loaded.path):
        dataset = demo_dataset(model, "eval")
    else:
        raise CompressorError(NO_DATA_FOR_SWEEP)
    return dataset.subset(samples)


def calibration_data(
    loaded: LoadedModel, chosen: str | os.PathLike[str] | None, dataset: Dataset
) -> Dataset:
    """What Auto plan calibrates INT8 on: the demo's calibration split when no data was
    chosen for it, else the measuring data itself."""
    if chosen is None and is_demo_model(loaded.path):
        return demo_dataset(loaded.onnx_model, "calib")
    return dataset


# --- job builders --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompressRequest:
    """One Compress (or Distill) as either door asks for it."""

    plan: CompressionPlan
    output: Path
    data: Path | None = None  # chosen by the user; None: the data rule decides
    eval_data: Path | None = None
    latency: bool = True
    distill: DistillOptions | None = None
    unlabeled: Path | None = None  # more training samples without labels, for `distill`


def compress_work(
    loaded: LoadedModel,
    request: CompressRequest,
    target: Any,
    cancel: CancelToken | None = None,
    *,
    in_child: bool = False,
    teacher: LoadedModel | None = None,
    finish_training: CancelToken | None = None,
) -> Job[CompressResult]:
    """Compress `loaded` as `request` says, for `target` (an object with `.machine()`, read
    when the job runs: over SSH that takes a moment)."""
    data = compress_data(loaded, request.data)
    options = dict(
        eval_data=request.eval_data,
        latency=request.latency,
        target=target.machine(),
        distill=request.distill,
        finish_training=finish_training,
        unlabeled=request.unlabeled,
    )
    local = functools.partial(compress_job, teacher=teacher)
    what = "distill" if request.distill else "compress"
    job = _start(
        in_child,
        loaded,
        local,
        compress_source_job,
        request.plan,
        request.output,
        data,
        cancel=cancel,
        what=what,
        **options,
    )
    return (yield from job)


@dataclass(frozen=True)
class SweepRequest:
    """Sensitivity's options: which layers and changes, where the work runs."""

    layers: tuple[str, ...] | None = None  # None: every layer
    options: tuple[SensitivityOption, ...] = OPTIONS
    placement: Placement = Placement()
    use_cache: bool = True


def sensitivity_work(
    loaded: LoadedModel,
    dataset: Dataset,
    request: SweepRequest,
    machine: MachineInfo | None = None,
    cancel: CancelToken | None = None,
    *,
    in_child: bool = False,
) -> Job[SensitivityTable]:
    """Each layer's drop per single change, measured on `dataset` (see `sweep_data`)."""
    options = dict(
        layers=request.layers,
        options=request.options,
        workers=request.placement.workers,
        cluster=request.placement.cluster,
        use_cache=request.use_cache,
        machine=machine,
    )
    job = _start(
        in_child,
        loaded,
        sensitivity_job,
        sensitivity_source_job,
        dataset,
        first=loaded.onnx_model,
        cancel=cancel,
        what="sensitivity",
        **options,
    )
    return (yield from job)


def autoplan_work(
    loaded: LoadedModel,
    dataset: Dataset,
    calibration: Dataset,
    budget: Budget,
    verification: str,
    placement: Placement,
    machine: MachineInfo | None = None,
    cancel: CancelToken | None = None,
    *,
    in_child: bool = False,
    recovery: DistillOptions | None = None,
    unlabeled: Dataset | None = None,
    layers: Sequence[str] | None = None,
) -> Job[AutoPlanResult]:
    """A plan under `budget`, chosen on `dataset` (sweeping `layers`, default all), built and
    measured (`verification`); with `recovery`, plans also built with distillation on
    `calibration` (plus `unlabeled`)."""
    options = dict(
        layers=layers,
        calibration=calibration,
        verification=verification,
        workers=placement.workers,
        cluster=placement.cluster,
        machine=machine,
        recovery=recovery,
        unlabeled=unlabeled,
    )
    job = _start(
        in_child,
        loaded,
        autoplan_job,
        autoplan_source_job,
        dataset,
        budget,
        cancel=cancel,
        what="auto plan",
        **options,
    )
    return (yield from job)


def _start(
    in_child: bool,
    loaded: LoadedModel,
    local: Callable[..., Job[Any]],
    child: Callable[..., Job[Any]],
    *args: Any,
    first: Any = None,
    cancel: CancelToken | None,
    what: str,
    **options: Any,
) -> Job[Any]:
    """`local(first or loaded, *args)` in this process, or `child(loaded.source, *args)` in a
    child process that opens the model again: a native crash or an out-of-memory there
    leaves the window standing."""
    if in_child:
        return job_in_child_process(
            child, loaded.source, *args, cancel=cancel, what=what, **options
        )
    return local(loaded if first is None else first, *args, cancel=cancel, **options)


def bench_input_shapes(loaded: LoadedModel) -> dict[str, list[int]]:
    """The shapes a benchmark feeds (BenchConfig.input_shapes), by the one shape policy:
    the user's answer, else the model's own dims (InputShapeNeeded when they do not run)."""
    shapes = resolve_input_shapes(require_graph(loaded).onnx_model, loaded.input_shapes)
    return {name: list(shape) for name, shape in shapes.items()}


def bench_models_job(
    target: Any, models: Sequence[tuple[str, Path]], config: Any, cancel: CancelToken
) -> Job[tuple[dict[str, Any], MachineInfo]]:
    """Benchmark several models on `target` (a targets.base.Target) one after another as one
    job with one progress bar; returns label -> BenchResult and the machine that ran them."""
    results: dict[str, Any] = {}
    for index, (label, path) in enumerate(models):
        job = target.benchmark(path, config, cancel)
        while True:
            try:
                step = next(job)
            except StopIteration as stop:
                results[label] = stop.value
                break
            yield Progress(index + step.fraction, len(models), f"{label}: {step.message}")
    return results, target.machine()
