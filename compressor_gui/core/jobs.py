"""Long work as generators that yield Progress and honour a cancel.

A job is a generator function: it yields `Progress` and *returns* its result. The GUI runs it
with superqt's `thread_worker` (quitting the worker closes the generator, which runs its
`finally` blocks); the CLI drives it with `run_job`. Jobs that wait outside Python (a child
process, an SSH channel) poll a `CancelToken` so a cancel from another thread stops them.

`job_in_child_process` runs a job in a spawned process: the work there (onnxruntime's
quantizer, shape inference, protobuf) often holds the GIL for hundreds of milliseconds, which
would freeze a GUI thread, and a native crash there must not take the app down.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from compressor_gui.core.errors import CompressorError, JobCancelled
from compressor_gui.core.logs import out_of_memory_text, quiet_libraries, record_internal_error

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
    """Thread-safe cancel flag shared between a job and whoever may stop it (across processes
    when built on a multiprocessing Event)."""

    def __init__(self, event: Any = None) -> None:
        self._event = event if event is not None else threading.Event()

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


def as_part(job: Job[T], start: float, total: float, label: str = "") -> Job[T]:
    """Pass on a sub-job's progress as the unit from `start` to `start + 1` of `total`
    (messages prefixed with `label`); return its result."""
    while True:
        try:
            step = next(job)
        except StopIteration as stop:
            return stop.value
        message = f"{label}: {step.message}" if label else step.message
        yield Progress(start + step.fraction, total, message, step.payload)


class EtaEstimator:
    """Seconds left from the elapsed time and the fraction done (linear extrapolation)."""

    def __init__(self) -> None:
        self._start = time.monotonic()

    def seconds_left(self, fraction: float) -> float | None:
        if fraction <= 0.0:
            return None
        elapsed = time.monotonic() - self._start
        return elapsed * (1.0 - fraction) / fraction


_POLL_S = 0.05
_CANCEL_GRACE_S = 10.0


def job_in_child_process(
    function: Callable[..., Job[T]],
    *args: Any,
    cancel: CancelToken | None = None,
    what: str = "the job",
    **kwargs: Any,
) -> Job[T]:
    """Run `function(*args, cancel=token, **kwargs)` (a job; module-level, so a spawned
    process can import it) in a child process; relay its progress, return its result, raise
    its error. A cancel asks the child to stop (its `finally` blocks clean up) and kills it if
    it has not after a grace period; a crash becomes a CompressorError."""
    context = multiprocessing.get_context("spawn")  # fork is unsafe with Qt and ORT threads
    stop = context.Event()
    parent_end, child_end = context.Pipe(duplex=False)
    # not a daemon: a daemonic process may not start processes, and a sweep in the child
    # starts its own pool; at exit a child still stopping is waited for (or reaped, below)
    process = context.Process(
        target=_child_job_main, args=(child_end, stop, function, args, kwargs), daemon=False
    )
    process.start()
    child_end.close()
    cancel_sent_at = None
    try:
        while True:
            if cancel is not None and cancel.cancelled and cancel_sent_at is None:
                stop.set()
                cancel_sent_at = time.monotonic()
            if cancel_sent_at is not None and time.monotonic() - cancel_sent_at > _CANCEL_GRACE_S:
                raise JobCancelled("cancelled by the user")
            if not parent_end.poll(_POLL_S):
                if not process.is_alive() and not parent_end.poll(0):
                    raise CompressorError(process_death_message(process.exitcode, what))
                continue
            try:
                kind, value = parent_end.recv()
            except EOFError:
                process.join(5)
                raise CompressorError(process_death_message(process.exitcode, what)) from None
            if kind == "progress":
                yield value
            elif kind == "error":
                raise value
            else:
                return value
    finally:
        parent_end.close()
        if process.is_alive():  # cancelled, or closed by the GUI: let it clean up, off-thread
            stop.set()
            threading.Thread(target=_reap, args=(process,), daemon=True).start()


def _reap(process) -> None:
    """Give a stopping child the grace period to run its `finally` blocks, then kill it."""
    process.join(_CANCEL_GRACE_S)
    if process.is_alive():
        process.kill()
        process.join(5)


class ParentGone(Exception):
    """The parent process closed its end of the pipe (it was killed): nobody is left to tell."""


def child_process_setup() -> None:
    """First thing in a child process: Ctrl-C reaches the whole process group, and the parent
    decides what a cancel does (it stops or kills the child), so the child ignores SIGINT
    rather than printing a KeyboardInterrupt traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    quiet_libraries()


def send_to_parent(connection: Any, message: Any) -> None:
    """`connection.send`, with a parent that is gone as ParentGone (a child then just ends)."""
    try:
        connection.send(message)
    except (OSError, EOFError) as exc:  # BrokenPipeError, ConnectionResetError
        raise ParentGone from exc


def _child_job_main(connection, stop, function, args, kwargs) -> None:
    child_process_setup()
    try:
        _serve_job(connection, function(*args, cancel=CancelToken(stop), **kwargs))
    except ParentGone:
        pass  # killed parent: the job's `finally` blocks have run as the generator closed
    except CompressorError as exc:
        _send_error(connection, exc)
    except MemoryError as exc:
        _send_error(connection, CompressorError(out_of_memory_text(exc)))
    except Exception as exc:  # a bug: its traceback exists only here, so it is logged here
        _send_error(connection, record_internal_error(exc, function.__name__))
    finally:
        connection.close()


def _serve_job(connection, job: Job[Any]) -> None:
    with contextlib.closing(job):
        while True:
            try:
                step = next(job)
            except StopIteration as done:
                send_to_parent(connection, ("result", done.value))
                return
            send_to_parent(connection, ("progress", step))


def _send_error(connection, exc: CompressorError) -> None:
    try:
        send_to_parent(connection, ("error", exc))
    except ParentGone:
        pass
    except Exception:  # an exception that does not pickle still reaches the user as text
        with contextlib.suppress(ParentGone):
            send_to_parent(connection, ("error", CompressorError(str(exc))))


def process_death_message(exitcode: int | None, what: str) -> str:
    """What to tell the user when a child process ended without an answer."""
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"{what} crashed: its process died of {name}{hint}"
    return f"{what} ended without a result (exit code {exitcode})"
