"""Automatic plan: per-layer settings under a budget, chosen from the sensitivity table, then
verified by really building and measuring the plan, and repaired when the measured drop is over.

The choice is an exact multiple-choice knapsack solved by dynamic programming (one option per
layer; sizes or drops rounded up to 1/4000 of the budget, so a chosen plan never exceeds its
predicted budget). Greedy by drop per byte saved is optimal only when each layer's size/drop
curve is convex, which bit-width curves are not (INT4 is often free where INT2 is a cliff); the
DP costs milliseconds for hundreds of layers, so there is no reason to settle for greedy. The
real approximation is elsewhere: single-layer drops are assumed to add up, which is why every
chosen plan is measured.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from compressor_gui.core.data import Dataset, tuning_split
from compressor_gui.core.distill_types import DistillOptions
from compressor_gui.core.drop_model import DropModel, output_noise
from compressor_gui.core.errors import CompressorError
from compressor_gui.core.executors import ClusterConfig, Placement, run_all
from compressor_gui.core.hardware import MachineInfo
from compressor_gui.core.inventory import ModelInventory, build_inventory
from compressor_gui.core.jobs import CancelToken, Job, Progress
from compressor_gui.core.model import LoadedModel, ModelSource
from compressor_gui.core.plan import CompressionPlan, LayerSetting
from compressor_gui.core.plan_builds import (
    BuildState,
    BuildWork,
    build_plan,
    build_setup,
    build_work,
    simulated_verifier,
)
from compressor_gui.core.sensitivity import (
    OPTIONS_BY_NAME,
    SensitivityTable,
    options_named,
    sensitivity_job,
)

SEARCH_OPTIONS = options_named(["int8", "int4", "int2", "int1", "channel25", "channel50"])
_BUCKETS = 4000
_REPAIR_ROUNDS = 3
_FP32 = LayerSetting()


@dataclass(frozen=True)
class Budget:
    """What the plan must meet: a size (ratio of the original, or bytes) and/or a drop."""

    size_ratio: float | None = None  # compressed / original size, e.g. 1/6 for 6x smaller
    size_bytes: int | None = None
    max_drop: float | None = None  # percentage points of top-1 (or of agreement)

    def __post_init__(self) -> None:
        if self.size_ratio is None and self.size_bytes is None and self.max_drop is None:
            raise CompressorError("give a budget: a size ratio, a size in bytes or a maximum drop")
        if self.size_ratio is not None and not 0 < self.size_ratio <= 1:
            raise CompressorError(f"size ratio must be within (0, 1], not {self.size_ratio}")
        if self.max_drop is not None and self.max_drop < 0:
            raise CompressorError(f"maximum drop must be 0 or more points, not {self.max_drop}")

    def file_size_bytes(self, reference_bytes: float) -> float | None:
        """The size a plan must fit: the smaller of `size_bytes` and `size_ratio` of
        `reference_bytes` (None: no size budget). A size budget is about the file the user
        gets: with real verification the reference is the original file and each written
        candidate is checked (the prediction counts weights only); a simulated verification
        writes no file, so the reference is the weights."""
        if self.size_ratio is None:
            return self.size_bytes
        return min(self.size_bytes or math.inf, self.size_ratio * reference_bytes)


@dataclass(frozen=True)
class Candidate:
    """A plan that was built and measured (one point of the Pareto scatter)."""

    label: str
    plan: CompressionPlan
    predicted_size_bytes: int
    predicted_drop: float
    measured_value: float  # top-1 (labels) or top-1 agreement, fraction
    measured_drop: float  # points
    measured_size_bytes: int | None  # the written file; None for a simulated verification
    verification: str  # "real" (compress_job + evaluate) | "simulated" (weights simulated)
    recovered_from: str | None = None  # the candidate this one is, plus distillation

    @property
    def recovered(self) -> bool:
        return self.recovered_from is not None


@dataclass(frozen=True)
class AutoPlanResult:
    chosen: Candidate
    candidates: tuple[Candidate, ...]
    original_size_bytes: int
    baseline: float
    metric: str
    notes: tuple[str, ...] = field(default_factory=tuple)
    at_int8_size: Candidate | None = None  # the plan chosen for uniform INT8's file size

    @property
    def pareto(self) -> tuple[Candidate, ...]:
        """Candidates no other one beats on both predicted size and measured drop."""
        return tuple(
            c
            for c in self.candidates
            if not any(
                o.predicted_size_bytes <= c.predicted_size_bytes
                and o.measured_drop <= c.measured_drop
                and (o.predicted_size_bytes, o.measured_drop)
                != (c.predicted_size_bytes, c.measured_drop)
                for o in self.candidates
            )
        )


@dataclass(frozen=True)
class _Choices:
    """Per swept layer: the settings it may take, their sizes (bytes) and costs (points)."""

    layers: tuple[str, ...]
    settings: tuple[tuple[LayerSetting, ...], ...]
    sizes: tuple[tuple[float, ...], ...]
    costs: tuple[tuple[float, ...], ...]
    fixed_size_bytes: int  # layers the search does not touch


def choices_from_table(table: SensitivityTable, inventory: ModelInventory) -> _Choices:
    """Each layer keeps FP32 or one measured option. A point's cost is the output noise it
    adds (noise-to-signal energy of the outputs, 10^(-SQNR/10)): independent noises add up
    where top-1 drops do not (a drop is a threshold effect: many layers at 0 pt each can
    still sum to a large drop together), so the knapsack adds noise and `DropModel` maps
    the total to a predicted drop."""
    base = CompressionPlan().predict(inventory)
    layers, settings, sizes, costs = [], [], [], []
    for name in table.layers:
        layer_settings, layer_sizes, layer_costs = [_FP32], [base.layers[name].size_bytes], [0.0]
        for point in table.curve(name):
            option = OPTIONS_BY_NAME.get(point.option)
            if option is None or not point.measured:
                continue
            setting = option.setting
            size = CompressionPlan(layers={name: setting}).predict(inventory).layers[name]
            if size.size_bytes >= layer_sizes[0]:
                continue  # saves nothing in the file (unstructured and 2:4 stay dense)
            layer_settings.append(setting)
            layer_sizes.append(size.size_bytes)
            layer_costs.append(output_noise(point))
        layers.append(name)
        settings.append(tuple(layer_settings))
        sizes.append(tuple(layer_sizes))
        costs.append(tuple(layer_costs))
    fixed = base.size_bytes - sum(base.layers[name].size_bytes for name in layers)
    return _Choices(tuple(layers), tuple(settings), tuple(sizes), tuple(costs), fixed)


def knapsack(
    minimize: Sequence[Sequence[float]], weights: Sequence[Sequence[float]], capacity: float
) -> list[int] | None:
    """Exact multiple-choice knapsack: one index per group minimizing the sum of `minimize`
    with the sum of `weights` <= capacity (weights rounded up to capacity/_BUCKETS)."""
    if capacity < 0:
        return None
    unit = capacity / _BUCKETS if capacity > 0 else 1.0
    best = np.full(_BUCKETS + 1, np.inf)
    best[0] = 0.0
    picks = []
    for values, group_weights in zip(minimize, weights, strict=True):
        new = np.full_like(best, np.inf)
        pick = np.zeros(len(best), dtype=np.int32)
        for index, (value, weight) in enumerate(zip(values, group_weights, strict=True)):
            step = math.ceil(weight / unit - 1e-9)
            if step > _BUCKETS:
                continue
            shifted = np.full_like(best, np.inf)
            shifted[step:] = best[: len(best) - step] + value
            better = shifted < new
            new[better] = shifted[better]
            pick[better] = index
        picks.append(pick)
        best = new
    if not np.isfinite(best).any():
        return None
    position = int(np.argmin(best))
    chosen = []
    for group in reversed(range(len(picks))):
        index = int(picks[group][position])
        chosen.append(index)
        position -= math.ceil(weights[group][index] / unit - 1e-9)
    return chosen[::-1]


def solve(choices: _Choices, *, size_bytes: float | None = None, max_cost: float | None = None):
    """The plan with the least predicted cost within `size_bytes`, or the smallest one within
    `max_cost` points; None when no plan fits."""
    if size_bytes is not None:
        picked = knapsack(choices.costs, choices.sizes, size_bytes - choices.fixed_size_bytes)
    else:
        picked = knapsack(choices.sizes, choices.costs, max_cost)
    if picked is None:
        return None
    settings = {
        name: choices.settings[g][i]
        for g, (name, i) in enumerate(zip(choices.layers, picked, strict=True))
        if i
    }
    cost = sum(choices.costs[g][i] for g, i in enumerate(picked))
    return CompressionPlan(layers=settings), cost


def uniform_plan(table: SensitivityTable, bits: int) -> CompressionPlan:
    return CompressionPlan(layers={name: LayerSetting(bits=bits) for name in table.layers})


# --- the job -------------------------------------------------------------------------------


def autoplan_job(
    loaded: LoadedModel,
    dataset: Dataset,
    budget: Budget,
    *,
    calibration: Dataset | None = None,
    table: SensitivityTable | None = None,
    verification: str = "real",
    front_points: int = 3,
    layers: Sequence[str] | None = None,
    workers: int = 2,
    cluster: ClusterConfig | None = None,
    machine: MachineInfo | None = None,
    recovery: DistillOptions | None = None,
    unlabeled: Dataset | None = None,
    cancel: CancelToken | None = None,
) -> Job[AutoPlanResult]:
    """Sweep (or reuse `table`), choose a plan under `budget`, build and measure it, repair it
    if its measured drop is over, and build a few more plans for the size/accuracy front
    (uniform INT8 and INT4 always among them). The sweep (of `layers`, default all) tunes on
    one part of `dataset` and plans are measured on the other (see `tuning_split`); `machine`
    is the target. The sweep runs on `workers` processes or on `cluster`; on a cluster, with
    real verification, so do the plans that depend on nothing measured (uniform INT8/INT4
    and the front). With `recovery`, the chosen plan and the smaller front plans are also
    built with distillation (`recovery.epochs` on the calibration data, plus `unlabeled`),
    and a recovered plan that meets the budget better is chosen: the plan then says
    `distill_epochs`."""
    cancel = cancel or CancelToken()
    model = _plannable(loaded, verification, recovery)
    notes: list[str] = []
    if table is None:
        table, dataset, calibration = yield from _swept(
            model, dataset, calibration, notes, layers, workers, cluster, machine, cancel
        )
    notes.extend(table.notes)
    inventory = build_inventory(model)
    choices = choices_from_table(table, inventory)
    drops = DropModel.fit(table)
    original = inventory.total_bytes
    with tempfile.TemporaryDirectory(prefix="autoplan-") as tmp:
        state = None
        if verification == "real":
            work = build_work(loaded, dataset, calibration, machine, recovery, unlabeled)
            state = BuildState(Path(tmp), loaded, work)
        verify = _verifier(state, loaded, dataset, table, notes)
        built: list[Candidate] = []

        def candidate(label: str, plan: CompressionPlan, noise: float, measured) -> Candidate:
            predicted = plan.predict(inventory).size_bytes
            return Candidate(label, plan, predicted, drops.drop(noise), *measured, verification)

        def build(label: str, plan: CompressionPlan, noise: float) -> Candidate:
            cancel.raise_if_cancelled()
            plan = _pinned(plan, table)
            built.append(candidate(label, plan, noise, verify(plan)))
            return built[-1]

        independent = _independent_plans(table, choices, inventory, front_points)
        total = len(independent) + 2
        pooled = state if cluster is not None else None
        measured = yield from _measure_independent(
            independent, verify, pooled, cluster, cancel, total
        )
        uniform = [candidate(*independent[i], measured[i]) for i in range(2)]
        built.extend(uniform)
        checks = [(independent[i][2], uniform[i].measured_drop, len(table.layers)) for i in (0, 1)]
        drops = DropModel.fit(table, checks)
        reference = loaded.file_size_bytes if verification == "real" else original
        target_size = budget.file_size_bytes(reference)
        chosen = _choose_and_repair(choices, drops, budget, target_size, build, notes)
        yield Progress(total - 1, total, f"chosen plan: measured drop {chosen.measured_drop:.2f}")
        at_int8 = _at_int8_size(choices, drops, uniform[0], build, notes)
        built.extend(candidate(*independent[i], measured[i]) for i in range(2, len(independent)))
        if recovery is not None:
            recovered = yield from _recovered(built, chosen, recovery.epochs, work, verify)
            built.extend(recovered)
            chosen = _best_within(budget, target_size, [chosen, *recovered], notes)
    return AutoPlanResult(
        chosen, tuple(built), original, table.baseline, table.metric, tuple(notes), at_int8
    )


def _plannable(
    loaded: LoadedModel, verification: str, recovery: DistillOptions | None
) -> onnx.ModelProto:
    """The ONNX graph to plan for, or why there is none to plan this way."""
    if loaded.onnx_model is None:
        raise CompressorError(f"{loaded.path.name} has no ONNX graph to plan for")
    if recovery is not None and verification != "real":
        raise CompressorError(
            "recovery by distillation is measured by building plans: use real verification"
        )
    return loaded.onnx_model


def _verifier(state: BuildState | None, loaded, dataset: Dataset, table, notes: list[str]):
    """How a plan is measured: built for real from `state`, else simulated."""
    if state is not None:
        return functools.partial(build_plan, state)
    notes.append("simulated verification: weights simulated in one session, weight-only")
    return simulated_verifier(loaded, dataset, table)


def _at_int8_size(choices: _Choices, drops, int8: Candidate, build, notes: list[str]) -> Candidate:
    """The plan at uniform INT8's predicted size (sizes compared as predicted, like the
    front) that is also at least as accurate as INT8 measured."""
    return _choose_and_repair(
        choices,
        drops,
        Budget(max_drop=max(int8.measured_drop, 0.0)),
        int8.predicted_size_bytes,
        build,
        notes,
        label="auto at uniform INT8 size",
        file_budget=False,
    )


def _pinned(plan: CompressionPlan, table: SensitivityTable) -> CompressionPlan:
    """`plan` built in the INT8 form the sweep measured, so predictions and builds agree."""
    return dataclasses.replace(plan, int8_form=table.int8_form or "auto")


def _independent_plans(
    table: SensitivityTable, choices: _Choices, inventory: ModelInventory, front_points: int
) -> list[tuple[str, CompressionPlan, float]]:
    """(label, plan, predicted cost) of the plans that depend on nothing measured: uniform
    INT8 and INT4 first (the measured checks that correct the sweep's additive-noise
    prediction before a plan is chosen), then `front_points` plans down to the smallest."""
    independent = [
        (f"uniform INT{bits}", _pinned(plan, table), _predicted_cost(choices, plan))
        for bits in (8, 4)
        for plan in [uniform_plan(table, bits)]
    ]
    int8_size = independent[0][1].predict(inventory).size_bytes
    smallest = choices.fixed_size_bytes + sum(min(s) for s in choices.sizes)
    for index, size in enumerate(np.geomspace(int8_size, smallest, front_points + 1)[1:]):
        solved = solve(choices, size_bytes=size)
        if solved is not None:
            independent.append((f"front {index + 1}", _pinned(solved[0], table), solved[1]))
    return independent


def _measure_independent(
    independent,
    verify,
    pooled: BuildState | None,
    cluster: ClusterConfig | None,
    cancel: CancelToken,
    total: int,
) -> Job[dict[int, tuple]]:
    """Each independent plan's measurement by its index: real builds side by side on
    `cluster` from `pooled`'s work, else one after another here through `verify`."""
    # Only a cluster gets them: a fresh local process pays seconds of imports before its
    # first build (onnxruntime.tools imports torch), more than a build of most models
    # takes once warm (demo, 2 cores: 11 s per pooled build vs 0.4-2.4 s in this process).
    if pooled is not None:
        plans = [(plan,) for _, plan, _ in independent]
        where = Placement(cluster=cluster)
        results = run_all(where, build_setup, pooled.work, build_plan, plans, cancel)
    else:
        results = ((i, verify(plan)) for i, (_, plan, _) in enumerate(independent))
    measured: dict[int, tuple] = {}
    for index, result in results:
        measured[index] = result
        yield Progress(len(measured), total, f"{independent[index][0]} measured")
    return measured


def _swept(model, dataset, calibration, notes, layers, workers, cluster, machine, cancel):
    """(sensitivity table, held-out data, calibration data): the sweep of `layers` tunes on
    one part of `dataset` (also the calibration data unless other was given); plans are
    measured on the other. The rest is where and for which machine the sweep runs."""
    tune, held_out, how = tuning_split(model, dataset)
    notes.append(how)
    if calibration is None or calibration is dataset:
        calibration = tune
    table = yield from sensitivity_job(
        model,
        tune,
        options=SEARCH_OPTIONS,
        layers=layers,
        workers=workers,
        cluster=cluster,
        machine=machine,
        cancel=cancel,
    )
    return table, held_out, calibration


def autoplan_source_job(
    source: ModelSource, dataset: Dataset, budget: Budget, cancel=None, **options
) -> Job[AutoPlanResult]:
    """`autoplan_job` on a model opened from `source`: what a child process runs."""
    return (yield from autoplan_job(source.open(), dataset, budget, cancel=cancel, **options))


def _recovered(built, chosen, epochs: int, work: BuildWork, verify) -> Job[list[Candidate]]:
    """The chosen plan and the smaller front plans built again with `epochs` of distillation
    on the calibration data (never on the data the plans are measured on)."""
    if work.calibration is None:
        raise CompressorError(
            "recovery by distillation needs training data: give calibration data (labels "
            "optional) apart from the evaluation data"
        )
    recovered, todo = [], _to_recover(built, chosen)
    for index, before in enumerate(todo):
        yield Progress(index, len(todo), f"distilling {before.label} ({epochs} epochs)")
        plan = dataclasses.replace(before.plan, distill_epochs=epochs)
        value, drop, size = verify(plan)
        recovered.append(
            dataclasses.replace(
                before,
                label=f"{before.label} + distill {epochs} epochs",
                plan=plan,
                measured_value=value,
                measured_drop=drop,
                measured_size_bytes=size,
                recovered_from=before.label,
            )
        )
    return recovered


def _to_recover(built: Sequence[Candidate], chosen: Candidate) -> list[Candidate]:
    """The chosen plan and the front plans smaller than it: where recovery may buy size."""
    smaller = [c for c in built if c.label.startswith("front ")]
    smaller = [c for c in smaller if c.predicted_size_bytes < chosen.predicted_size_bytes]
    return [chosen, *sorted(smaller, key=lambda c: -c.predicted_size_bytes)]


def _best_within(
    budget: Budget, target_size: float | None, measured: Sequence[Candidate], notes: list[str]
) -> Candidate:
    """Under a drop limit the smallest plan measured within it; under a size budget alone the
    most accurate plan whose file fits; the first (the plan chosen without recovery) when
    nothing fits better."""

    def fits(c: Candidate) -> bool:
        over_size = (
            target_size is not None
            and c.measured_size_bytes is not None
            and c.measured_size_bytes > target_size
        )
        return not over_size and (budget.max_drop is None or c.measured_drop <= budget.max_drop)

    fitting = [c for c in measured if fits(c)]
    if not fitting:
        return measured[0]
    if budget.max_drop is not None:
        best = min(fitting, key=lambda c: (c.predicted_size_bytes, c.measured_drop))
    else:
        best = min(fitting, key=lambda c: (c.measured_drop, c.predicted_size_bytes))
    if best is not measured[0]:
        notes.append(
            f"chosen with recovery: {best.label} (measured drop {best.measured_drop:.2f} pts) "
            f"over {measured[0].label} ({measured[0].measured_drop:.2f} pts)"
        )
    return best


def _predicted_cost(choices: _Choices, plan: CompressionPlan) -> float:
    cost = 0.0
    for group, name in enumerate(choices.layers):
        setting = plan.layers.get(name, _FP32)
        if setting in choices.settings[group]:
            cost += choices.costs[group][choices.settings[group].index(setting)]
    return cost


def _choose_and_repair(
    choices, drops, budget, target_size, build, notes, label="auto", file_budget=True
) -> Candidate:
    """Solve and measure. Under a drop limit the knapsack adds output noise up to the noise
    the drop model allows; while the measured drop is over, the noise limit is divided by
    how much more noise the measurement implies (errors that compound rather than add). A
    size budget is hard and checked on the written file; while the file is over, solve again
    for a smaller predicted size. When a plan under a size budget measures over the drop
    limit, the costs of the options it chose are scaled by measured/predicted drop (the
    evidence that they hurt more together than alone) and it is solved again; the best plan
    measured is returned."""
    limit = budget.max_drop
    noise_limit = drops.noise_for(limit) if limit is not None else None
    file_target = target_size
    fitting: list[Candidate] = []
    for round_ in range(_REPAIR_ROUNDS + 1):
        if target_size is not None:
            solved = solve(choices, size_bytes=target_size)
        else:
            solved = solve(choices, max_cost=noise_limit)
        if solved is None:
            smallest = choices.fixed_size_bytes + sum(min(s) for s in choices.sizes)
            raise CompressorError(
                f"no plan fits the budget: the smallest plan the sweep allows is "
                f"{smallest / 1024:.1f} KiB"
            )
        plan, noise = solved
        name = label if round_ == 0 else f"{label} (repair {round_})"
        candidate = build(name, plan, noise)
        written = candidate.measured_size_bytes
        if (
            file_budget
            and target_size is not None
            and written is not None
            and written > file_target
        ):
            # The file carries more than the predicted weights (biases, graph): aim lower.
            target_size *= 0.995 * file_target / written
            notes.append(
                f"{name}: written file {written} B > budget {file_target:.0f} B; "
                f"predicted-size target lowered to {target_size:.0f} B"
            )
            continue
        if limit is None or candidate.measured_drop <= limit:
            return candidate
        if target_size is not None:
            fitting.append(candidate)
            factor = max(candidate.measured_drop / max(candidate.predicted_drop, 1e-3), 1.25)
            choices = _with_costs_scaled(choices, plan, factor)
            notes.append(
                f"{name}: measured drop {candidate.measured_drop:.2f} pts > {limit:g} at this "
                f"size; the costs of the options it chose scaled by {factor:.2f}"
            )
            continue
        factor = max(drops.noise_for(candidate.measured_drop) / max(noise, 1e-12), 1.25)
        noise_limit /= factor
        notes.append(
            f"repair {round_ + 1}: measured {candidate.measured_drop:.2f} pts > {limit:g}; "
            f"output-noise limit divided by {factor:.2f}"
        )
    notes.append(f"{label}: still over budget after {_REPAIR_ROUNDS} repairs")
    if fitting:  # the size budget is hard: the most accurate plan that met it
        return min(fitting, key=lambda c: c.measured_drop)
    return candidate


def _with_costs_scaled(choices: _Choices, plan: CompressionPlan, factor: float) -> _Choices:
    """`choices` with the cost of each option `plan` took (FP32 aside) multiplied by `factor`."""
    costs = []
    for group, name in enumerate(choices.layers):
        taken = plan.layers.get(name, _FP32)
        costs.append(
            tuple(
                cost * factor if setting == taken and setting != _FP32 else cost
                for setting, cost in zip(choices.settings[group], choices.costs[group], strict=True)
            )
        )
    return dataclasses.replace(choices, costs=tuple(costs))
