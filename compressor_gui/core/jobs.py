"""Long work as generators that yield Progress and honour a cancel.

A job is a generator function: it yields `Progress` and *returns* its result. The GUI runs it
with superqt's `thread_worker` (quitting the worker closes the generator, which runs its
`finally` blocks); the CLI drives it with `run_job`. Jobs that wait outside Python (a child
process, an SSH channel) poll a `CancelToken` so a cancel from another thread stops them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from compressor_gui.core.errors import JobCancelled

T = TypeVar("T")
Job = Generator["Progress", None, T]


@dataclass(frozen=True)
class Progress:
    """One step of a job: `done` of `total` units, a message, and an optional live result."""

    done: float
    total: float
    message: str = ""
    payload: Any = None

    @property
    def fraction(self) -> float:
        return 0.0 if self.total <= 0 else min(1.0, max(0.0, self.done / self.total))


class CancelToken:
    """Thread-safe cancel flag shared between a job and whoever may stop it."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise JobCancelled("cancelled by the user")


def run_job(job: Job[T], on_progress: Callable[[Progress], None] | None = None) -> T:
    """Drive a job generator to completion (headless) and return its result."""
    while True:
        try:
            step = next(job)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(step)


class EtaEstimator:
    """Seconds left from the elapsed time and the fraction done (linear extrapolation)."""

    def __init__(self) -> None:
        self._start = time.monotonic()

    def seconds_left(self, fraction: float) -> float | None:
        if fraction <= 0.0:
            return None
        elapsed = time.monotonic() - self._start
        return elapsed * (1.0 - fraction) / fraction
