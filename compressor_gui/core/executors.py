"""Where independent pieces of work run: in this process, on a local process pool, or on a
Dask distributed cluster the user named.

A piece of work is `function(state, *args)`. `state` is built once per worker by
`setup(payload)` (for a sweep: an onnxruntime session over the model), and `payload` (the
model and the data) is sent to each worker once: to a pool through its initializer, to a
cluster by one `scatter`. Results come back as each piece finishes, so a job can keep
yielding one Progress per piece; a cancel drops the pieces not yet started.

Pools use the spawn start method everywhere: forking a process that has onnxruntime or Qt
threads is unsafe, and spawn behaves the same on Linux, macOS and Windows. Workers start
fresh interpreters, so `setup` and `function` must be module-level functions.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from compressor_gui.core.errors import CompressorError, error_text
from compressor_gui.core.jobs import CancelToken

S = TypeVar("S")
R = TypeVar("R")

_POLL_S = 0.05
_RETRIES = 2  # a piece that raises on a worker is tried again this many times
CLUSTER_SCHEMES = ("tcp://", "tls://")


@dataclass(frozen=True)
class ClusterConfig:
    """An existing Dask scheduler the user named, and the TLS files to reach it with.

    Only this address is contacted: data goes through the scheduler (`direct=False`), never
    straight to worker addresses the scheduler reports."""

    address: str
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    connect_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.address.startswith(CLUSTER_SCHEMES) or ":" not in self.address[6:]:
            raise CompressorError(
                f"cluster address {self.address!r} is not a Dask scheduler address: "
                "write it as tcp://HOST:PORT or tls://HOST:PORT (the scheduler's default port "
                "is 8786)"
            )
        tls_files = (self.tls_ca_file, self.tls_cert_file, self.tls_key_file)
        if any(tls_files) and not self.address.startswith("tls://"):
            raise CompressorError(
                f"TLS files were given but {self.address} is not a tls:// address"
            )
        if self.address.startswith("tls://") and not (self.tls_ca_file and self.tls_cert_file):
            raise CompressorError(
                f"{self.address} uses TLS, which Dask makes mutual: give the CA certificate "
                "the scheduler's is signed by and this client's certificate (and its key, "
                "unless the certificate file holds it)"
            )
        for file in filter(None, tls_files):
            if not Path(file).is_file():
                raise CompressorError(f"TLS file {file} does not exist")

    def security(self) -> Any:
        """`distributed.Security` for a tls:// address (encryption required), else None."""
        if not self.address.startswith("tls://"):
            return None
        from distributed import Security

        return Security(
            tls_ca_file=self.tls_ca_file,
            tls_client_cert=self.tls_cert_file,
            tls_client_key=self.tls_key_file,
            require_encryption=True,
        )


@dataclass(frozen=True)
class Placement:
    """Where a job's pieces run: `workers` local processes (1: this process), or a cluster."""

    workers: int = 1
    cluster: ClusterConfig | None = None

    @property
    def elsewhere(self) -> bool:
        """Whether the pieces run outside this process."""
        return self.cluster is not None or self.workers > 1

    def describe(self) -> str:
        if self.cluster is not None:
            return f"Dask cluster at {self.cluster.address}"
        if self.workers > 1:
            return f"{self.workers} local processes"
        return "this process"


@dataclass(frozen=True)
class _Shared:
    """What every worker receives once: a token naming this job, the setup and its payload."""

    token: str
    setup: Callable[[Any], Any]
    payload: Any


def run_all(
    placement: Placement,
    setup: Callable[[Any], S],
    payload: Any,
    function: Callable[..., R],
    calls: Sequence[tuple],
    cancel: CancelToken,
) -> Iterator[tuple[int, R]]:
    """Run `function(setup(payload), *args)` for every `args` in `calls` where `placement`
    says; yield `(index into calls, result)` as each finishes (in no fixed order), each
    exactly once. A cancel stops the stream at the next result, even when the rest have
    already finished (a pool or cluster hands back finished results in batches)."""
    if not calls:
        return
    for item in _results(placement, setup, payload, function, calls, cancel):
        cancel.raise_if_cancelled()
        yield item


def _results(
    placement, setup, payload, function, calls, cancel, started=None
) -> Iterator[tuple[int, Any]]:
    started = started or threading.Event()
    shared = _Shared(uuid.uuid4().hex, setup, payload)
    if placement.cluster is not None:
        yield from _on_cluster(placement.cluster, shared, function, calls, cancel, started)
    elif placement.workers > 1 and len(calls) > 1:
        workers = min(placement.workers, len(calls))
        yield from _on_pool(workers, shared, function, calls, cancel, started)
    else:
        started.set()
        state = setup(payload)
        for index, args in enumerate(calls):
            cancel.raise_if_cancelled()
            yield index, function(state, *args)


class RunningBehind:
    """`run_all` on a thread of this process, so that this thread can meanwhile do work that
    must stay here (for a sweep: onnxruntime's quantizer, which calibrates once and keeps
    its calibration on disk) instead of doing it before the pieces start or after they end.

    Entering returns once every piece is submitted, so the pool's processes are spawned
    before this thread changes anything process-wide (`graph.contained` changes the working
    directory, which a process spawned later would inherit). Leaving stops what is left.
    """

    def __init__(self, placement: Placement, setup, payload, function, calls, cancel) -> None:
        self._stop = CancelToken()
        self._cancel = cancel
        self._started = threading.Event()
        self._results: queue.Queue = queue.Queue()
        self._done = False
        args = (placement, setup, payload, function, calls, self._stop, self._started)
        self._thread = threading.Thread(target=self._pump, args=args, daemon=True)

    def __enter__(self) -> RunningBehind:
        self._thread.start()
        self._started.wait()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.cancel()
        self._thread.join()

    def _pump(self, *args) -> None:
        started = args[-1]
        try:
            for item in _results(*args):
                self._results.put(item)
        except BaseException as exc:  # raised again in the thread that reads the results
            self._results.put(_Failed(exc))
        finally:
            started.set()
            self._results.put(_FINISHED)

    def finished_so_far(self) -> Iterator[tuple[int, Any]]:
        """The results that have arrived, without waiting."""
        while not self._done and not self._results.empty():
            yield from self._take(self._results.get())

    def the_rest(self) -> Iterator[tuple[int, Any]]:
        """Every result still to come, as it arrives; a cancel stops the wait."""
        while not self._done:
            self._cancel.raise_if_cancelled()
            with contextlib.suppress(queue.Empty):
                yield from self._take(self._results.get(timeout=_POLL_S * 4))

    def _take(self, entry: Any) -> Iterator[tuple[int, Any]]:
        if entry is _FINISHED:
            self._done = True
        elif isinstance(entry, _Failed):
            self._done = True
            raise entry.error
        else:
            yield entry


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_FINISHED = object()


# --- worker side ----------------------------------------------------------------------------

# One job's state per worker process: a new token replaces (and frees) the previous one. A
# Dask worker may run several tasks at once on threads, hence the lock.
_worker_state: tuple[str, Any, BaseException | None] | None = None
_worker_lock = threading.Lock()


def _state_for(shared: _Shared) -> Any:
    global _worker_state
    with _worker_lock:
        if _worker_state is None or _worker_state[0] != shared.token:
            _worker_state = None  # free the previous job's state before building the next
            try:
                _worker_state = (shared.token, shared.setup(shared.payload), None)
            except Exception as exc:  # raised again by every call, where the caller sees it
                _worker_state = (shared.token, None, exc)
        _, state, error = _worker_state
    if error is not None:
        raise error
    return state


def _forget(token: str) -> None:
    """Drop a finished job's state (its model and session) from a long-lived worker."""
    global _worker_state
    with _worker_lock:
        if _worker_state is not None and _worker_state[0] == token:
            _worker_state = None


def _pool_init(shared: _Shared) -> None:
    _exit_with_parent()
    # an error is kept and raised by each call: an initializer that raises would break the
    # pool and lose the message
    with contextlib.suppress(Exception):
        _state_for(shared)


def _exit_with_parent() -> None:
    """End this pool process when the process that started it is gone. A job's child process
    is killed when it does not stop within the cancel's grace period (a calibration cannot be
    interrupted), and its pool processes would otherwise wait for work forever."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _pool_call(token: str, function: Callable[..., R], args: tuple) -> R:
    if _worker_state is None or _worker_state[0] != token:
        raise CompressorError("a pool worker lost its model (internal error)")
    _, state, error = _worker_state
    if error is not None:
        raise error
    return function(state, *args)


def _cluster_call(shared: _Shared, function: Callable[..., R], args: tuple) -> R:
    return function(_state_for(shared), *args)


# --- local process pool ---------------------------------------------------------------------


def _on_pool(workers, shared, function, calls, cancel, started) -> Iterator[tuple[int, Any]]:
    """A spawned process pool whose initializer receives the payload once per process.
    `started` is set once every call is submitted: by then each process has been spawned."""
    pool = futures.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_pool_init,
        initargs=(shared,),
    )
    try:
        pending = {
            pool.submit(_pool_call, shared.token, function, args): index
            for index, args in enumerate(calls)
        }
        started.set()
        while pending:
            cancel.raise_if_cancelled()
            finished, _ = futures.wait(
                pending, timeout=_POLL_S * 4, return_when=futures.FIRST_COMPLETED
            )
            for future in finished:
                index = pending.pop(future)
                try:
                    result = future.result()
                except futures.process.BrokenProcessPool as exc:
                    raise CompressorError(
                        "a worker process died (out of memory, or a crash in native code); "
                        "try fewer workers"
                    ) from exc
                yield index, result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# --- Dask distributed -----------------------------------------------------------------------


def connect(cluster: ClusterConfig) -> Any:
    """A `distributed.Client` on the scheduler the user named, or a CompressorError saying
    why it cannot be reached."""
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise CompressorError("Dask distributed is not installed: pip install distributed") from exc
    try:
        return Client(
            cluster.address,
            security=cluster.security(),
            timeout=cluster.connect_timeout_s,
            set_as_default=False,
            direct_to_workers=False,
        )
    except (OSError, TimeoutError) as exc:
        raise CompressorError(
            f"cannot reach the Dask scheduler at {cluster.address} within "
            f"{cluster.connect_timeout_s:g} s "
            f"({error_text(exc, 160)}); check the address, that `dask scheduler` "
            "runs there and that its port is open"
            + ("" if cluster.address.startswith("tls://") else " (or whether it needs tls://)")
        ) from exc


def _on_cluster(cluster, shared, function, calls, cancel, started) -> Iterator[tuple[int, Any]]:
    """Scatter the payload to every worker once, submit one task per call (retried on
    error; the scheduler reschedules the tasks of a worker that is lost), stream results
    back with `as_completed`, cancel what is left when stopped."""
    from distributed import as_completed

    client = connect(cluster)
    submitted: dict = {}
    try:
        if not client.scheduler_info().get("workers"):
            raise CompressorError(f"the Dask cluster at {cluster.address} has no workers")
        [remote] = client.scatter([shared], broadcast=True, hash=False, direct=False)
        for index, args in enumerate(calls):
            future = client.submit(
                _cluster_call, remote, function, args, retries=_RETRIES, pure=False
            )
            submitted[future] = index
        started.set()
        finished = as_completed(submitted, loop=client.loop)
        while not finished.is_empty():
            cancel.raise_if_cancelled()
            if not finished.has_ready():
                time.sleep(_POLL_S)
                continue
            for future in finished.next_batch(block=False):
                yield submitted[future], _cluster_result(future, cluster)
    finally:
        if submitted:
            client.cancel(list(submitted), force=True)
            with contextlib.suppress(Exception):  # a worker lost meanwhile has nothing to drop
                client.run(_forget, shared.token)
        client.close()


def _cluster_result(future: Any, cluster: ClusterConfig) -> Any:
    from distributed import KilledWorker

    try:
        return future.result()
    except KilledWorker as exc:
        raise CompressorError(
            f"a piece of work kept killing workers of the cluster at {cluster.address} "
            "(out of memory there?); it was given up"
        ) from exc
