"""Benchmarks on several targets at once, into one table with the target as one more axis.

Each machine gets its own worker thread: SSH boxes and Jetsons run side by side, while the
runs that share one machine (several local runtimes, or targets on one host) go one after
another there, so no figure is taken while another benchmark loads the same cores. A target
that fails or drops its link becomes one row with the reason; the others go on.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from compressor_gui.core.data import Dataset
from compressor_gui.core.errors import CompressorError, JobCancelled
from compressor_gui.core.evaluate import EvalResult
from compressor_gui.core.jobs import CancelToken, Job, Progress, run_job
from compressor_gui.core.logs import record_internal_error
from compressor_gui.formatting import MEASURED_COLUMNS, aligned, measured_cells
from compressor_gui.targets.base import BenchConfig, BenchResult, Target
from compressor_gui.targets.evaluate import evaluate_on_target
from compressor_gui.targets.jetson import total_power_mw

POLL_S = 0.05
STOP_WAIT_S = 15.0  # how long a cancelled fan-out waits for its workers to clean up
COLUMNS = (
    "target",
    "model",
    "runtime",
    "device",
    "precision",
    "batch",
    *MEASURED_COLUMNS,
    "machine",
    "status",
)


@dataclass(frozen=True)
class Leg:
    """One target with the settings it runs with."""

    target: Target
    config: BenchConfig


@dataclass(frozen=True)
class FanoutRow:
    """One model on one target: its result, or why there is none (`error`)."""

    target: str
    model: str
    config: BenchConfig
    result: BenchResult | None = None
    machine: str = ""  # the machine's one-line summary, when it could be read
    error: str = ""
    quality: EvalResult | None = None  # on the fan-out's data, computed by this target
    note: str = ""  # why a timed row has no quality

    @property
    def ok(self) -> bool:
        return self.result is not None

    def cells(self) -> tuple[str, ...]:
        """The row as COLUMNS shows it; a failed row keeps its settings and says why."""
        config, result = self.config, self.result
        settings = (self.target, self.model, config.runtime)
        if result is None:
            device, batch = config.provider or "", str(config.batch_size)
            failed = ("",) * 7 + (self.machine, f"failed: {self.error}")
            return (*settings, device, config.precision, batch, *failed)
        power = total_power_mw(dict(result.power_mw)) if result.power_mw else None
        lat, quality = result.latency, self.quality
        return (
            *settings,
            result.device,
            result.precision,
            str(result.batch_size),
            *measured_cells(
                lat.p50_ms,
                lat.p90_ms,
                lat.p99_ms,
                result.throughput_per_s,
                power,
                quality.top1 if quality else None,
                quality.cosine if quality else None,
            ),
            self.machine,
            f"ok; {self.note}" if self.note else "ok",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "model": self.model,
            "config": self.config.to_dict(),
            "machine": self.machine,
            "ok": self.ok,
            "error": self.error or None,
            "result": self.result.to_dict() if self.result else None,
            "quality": asdict(self.quality) if self.quality else None,
            "note": self.note or None,
        }


def bench_fanout_job(
    legs: Sequence[Leg],
    models: Sequence[tuple[str, Path]],
    cancel: CancelToken | None = None,
    dataset: Dataset | None = None,
) -> Job[list[FanoutRow]]:
    """Benchmark every (label, model file) on every leg, one worker per machine, and with a
    `dataset` score the models there too (evaluate-on-target); yields each finished row as a
    Progress payload and returns every row in leg-then-model order."""
    work = [(leg, label, Path(path)) for leg in legs for label, path in models]
    if not work:
        return []
    stop = CancelToken()  # ours: the caller's token, or closing this job, sets it
    events: queue.Queue[tuple[int, Progress | FanoutRow | str]] = queue.Queue()
    places: dict[str, list[int]] = {}
    for index, (leg, _, _) in enumerate(work):
        places.setdefault(leg.target.place, []).append(index)
    workers = [
        threading.Thread(
            target=_run_place, args=(work, indices, dataset, stop, events), daemon=True
        )
        for indices in places.values()
    ]
    rows: dict[int, FanoutRow] = {}
    fractions = [0.0] * len(work)
    try:
        for worker in workers:
            worker.start()
        yield Progress(0, len(work), f"benchmarking on {len(places)} machine(s) at once")
        while len(rows) < len(work):
            if cancel is not None and cancel.cancelled:
                raise JobCancelled("benchmark cancelled by the user")
            try:
                index, event = events.get(timeout=POLL_S)
            except queue.Empty:
                if not any(worker.is_alive() for worker in workers) and events.empty():
                    break
                continue
            leg, label, _ = work[index]
            payload = None
            if isinstance(event, FanoutRow):
                rows[index] = payload = event
                fractions[index] = 1.0
                message = f"{event.target}: " + ("done" if event.ok else f"failed: {event.error}")
            elif isinstance(event, Progress):
                fractions[index] = event.fraction
                message = f"{leg.target.name} {label}: {event.message}"
            else:
                message = f"{leg.target.name}: {event}"
            yield Progress(sum(fractions), len(work), message, payload)
    finally:
        stop.cancel()
        deadline = time.monotonic() + STOP_WAIT_S
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
    return [rows.get(i) or _lost(work[i]) for i in range(len(work))]


def _run_place(
    work: list[tuple[Leg, str, Path]],
    indices: list[int],
    dataset: Dataset | None,
    stop: CancelToken,
    events: queue.Queue,
) -> None:
    """One machine's share of the work, leg after leg; every outcome goes to `events`."""
    by_leg: dict[int, list[int]] = {}
    for index in indices:
        by_leg.setdefault(id(work[index][0]), []).append(index)
    for leg_indices in by_leg.values():
        rows = {}
        for index in leg_indices:
            if stop.cancelled:
                return
            rows[index] = _bench_one(work[index], stop, lambda step, i=index: events.put((i, step)))
            if rows[index] is None:
                return
        if dataset is not None:
            rows = _with_quality(rows, work, dataset, stop, events)
            if rows is None:
                return
        if any(row.ok and not row.machine for row in rows.values()):  # once per leg
            machine = _machine(work[leg_indices[0]][0])
            rows = {i: replace(row, machine=machine) for i, row in rows.items()}
        for index, row in rows.items():
            events.put((index, row))


def _bench_one(item: tuple[Leg, str, Path], stop: CancelToken, on_step) -> FanoutRow | None:
    """One model on one target as a row (failed with the reason); None when cancelled."""
    leg, label, path = item
    row = FanoutRow(leg.target.name, label, leg.config)
    try:
        result = run_job(leg.target.benchmark(path, leg.config, stop), on_step)
    except JobCancelled:
        return None
    except CompressorError as exc:
        return replace(row, error=str(exc))
    except Exception as exc:  # a bug on one target must not end the others' runs
        return replace(row, error=str(record_internal_error(exc, "fan-out")))
    return replace(row, result=result)


def _with_quality(
    rows: dict[int, FanoutRow],
    work: list[tuple[Leg, str, Path]],
    dataset: Dataset,
    stop: CancelToken,
    events: queue.Queue,
) -> dict[int, FanoutRow] | None:
    """The leg's timed rows with accuracy (labels) and cosine to its first model, computed
    by the target's own runtime; a target that cannot score keeps its timings and says why.
    None when cancelled."""
    timed = [index for index, row in rows.items() if row.ok]
    if not timed:
        return rows
    leg = work[timed[0]][0]
    models = [(work[index][1], work[index][2]) for index in timed]
    try:
        job = evaluate_on_target(leg.target, models, dataset, leg.config, stop)
        scored = run_job(job, lambda step: events.put((timed[0], f"scoring: {step.message}")))
    except JobCancelled:
        return None
    except CompressorError as exc:
        unscored = {"note": f"not scored: {exc}"}
        return {i: replace(r, **unscored) if r.ok else r for i, r in rows.items()}
    machine = scored.machine.summary  # read in the same visit as the scores
    return {
        index: replace(row, quality=scored.results.get(row.model), machine=machine)
        for index, row in rows.items()
    }


def _machine(leg: Leg) -> str:
    """The target's machine in one line; empty if it cannot be read now (the link dropped)."""
    with contextlib.suppress(CompressorError, OSError):
        return leg.target.machine().summary
    return ""


def _lost(item: tuple[Leg, str, Path]) -> FanoutRow:
    leg, label, _ = item
    return FanoutRow(leg.target.name, label, leg.config, error="its worker stopped early")


def format_table(rows: Sequence[FanoutRow]) -> str:
    """The rows as a plain-text table (the GUI shows the same cells)."""
    return "\n".join(aligned([COLUMNS, *(row.cells() for row in rows)], rule=True))
