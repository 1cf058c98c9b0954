"""Where sweep points and plan builds run: one process, a local process pool, a real Dask
LocalCluster on loopback. Same numbers and cache everywhere; cancel, lost workers and an
unreachable scheduler handled."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from compressor_gui.cli import main
from compressor_gui.core import search
from compressor_gui.core import sensitivity as sens
from compressor_gui.core.data import dataset_from_arrays
from compressor_gui.core.errors import CompressorError, JobCancelled
from compressor_gui.core.executors import ClusterConfig, Placement, RunningBehind, run_all
from compressor_gui.core.jobs import CancelToken, job_in_child_process, run_job
from compressor_gui.core.model import ModelSource, load_model
from compressor_gui.core.search import Budget
from tests import modelgen

OPTIONS = sens.options_named(["int8", "int4", "int2", "prune75"])


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSOR_GUI_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def stack():
    """A 4-layer model (16 points with OPTIONS) and 64 labelled samples."""
    model = modelgen.conv_stack(depth=4, channels=8, size=8)
    x = np.random.default_rng(3).standard_normal((64, 8, 8, 8)).astype(np.float32)
    y = np.random.default_rng(4).integers(0, 10, 64)
    return model, dataset_from_arrays({"x": x, "y": y}, model)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A real 2-worker cluster on loopback behind TLS, and the config that reaches it with
    certificate files, as a user would give them."""
    distributed = pytest.importorskip("distributed")
    security = distributed.Security.temporary()  # a throwaway CA and certificate, in memory
    folder = tmp_path_factory.mktemp("tls")
    files = {
        "ca.pem": security.tls_ca_file,
        "cert.pem": security.tls_client_cert,
        "key.pem": security.tls_client_key,
    }
    for name, pem in files.items():
        (folder / name).write_text(pem)
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        security=security,
    ) as local:
        yield ClusterConfig(local.scheduler_address, *(str(folder / name) for name in files))


def _sweep(model, dataset, cache_dir, monkeypatch, **where):
    """A sweep with its own cache folder: (table, progress steps, the cache file's points)."""
    monkeypatch.setenv("COMPRESSOR_GUI_CACHE_DIR", str(cache_dir))
    steps = []
    table = run_job(sens.sensitivity_job(model, dataset, options=OPTIONS, **where), steps.append)
    [cache_file] = (cache_dir / "sensitivity").glob("*.json")
    return table, steps, json.loads(cache_file.read_text())


def test_the_pool_measures_the_same_points_into_the_same_cache(stack, tmp_path, monkeypatch):
    model, dataset = stack
    alone, _, alone_cache = _sweep(model, dataset, tmp_path / "one", monkeypatch, workers=1)
    pooled, steps, pooled_cache = _sweep(model, dataset, tmp_path / "pool", monkeypatch, workers=2)
    assert pooled.points == alone.points and pooled.baseline == alone.baseline
    assert pooled_cache == alone_cache
    points = [s.payload for s in steps[1:] if s.payload is not None]  # not "calibrating"
    assert len(points) == len(pooled.points) == 16  # one Progress per point, as they land
    assert all(isinstance(p, sens.SensitivityPoint) and p.measured for p in points)


def test_cancel_stops_the_pool_and_its_processes(stack):
    model, dataset = stack
    cancel = CancelToken()
    job = sens.sensitivity_job(
        model, dataset, options=OPTIONS, workers=2, use_cache=False, cancel=cancel
    )
    next(job)  # fast pass
    next(job)  # the pool runs and the first point is in
    cancel.cancel()
    with pytest.raises(JobCancelled):
        run_job(job)
    assert not multiprocessing.active_children()


def test_a_job_in_a_gui_child_process_can_start_its_own_pool(stack, tmp_path):
    # the GUI runs jobs in a spawned child; a daemonic child could not start the pool
    model, dataset = stack
    path = tmp_path / "stack.onnx"
    onnx.save(model, path)
    job = job_in_child_process(
        sens.sensitivity_source_job, ModelSource(path), dataset, options=OPTIONS[:2], workers=2
    )
    table = run_job(job)
    assert table.complete and len(table.points) == 8


def test_the_cluster_measures_the_same_points_into_the_same_cache(
    stack, cluster, tmp_path, monkeypatch
):
    model, dataset = stack
    alone, _, alone_cache = _sweep(model, dataset, tmp_path / "one", monkeypatch, workers=1)
    remote, steps, remote_cache = _sweep(
        model, dataset, tmp_path / "dask", monkeypatch, cluster=cluster
    )
    assert remote.points == alone.points and remote_cache == alone_cache
    assert len([s for s in steps[1:] if s.payload is not None]) == 16
    assert _on_workers(cluster, _held_state) == [None, None]  # no model left behind there


def test_cancel_on_the_cluster_cancels_what_is_left(stack, cluster):
    model, dataset = stack
    cancel = CancelToken()
    job = sens.sensitivity_job(
        model, dataset, options=OPTIONS, cluster=cluster, use_cache=False, cancel=cancel
    )
    next(job)  # fast pass
    _until_a_cluster_point(job)  # connected, scattered, the first point is in
    cancel.cancel()
    with pytest.raises(JobCancelled):
        run_job(job)
    deadline = time.monotonic() + 10  # the scheduler forgets released tasks shortly after
    while _on_scheduler(cluster, _task_count) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _on_scheduler(cluster, _task_count) == 0


def _until_a_cluster_point(job) -> list:
    """Points up to the first one the cluster measured (INT8 points run on this machine first,
    as onnxruntime runs them here)."""
    arrived = []
    while not arrived or arrived[-1].how != "simulated":
        step = next(job)
        if step.payload is not None:
            arrived.append(step.payload)
    return arrived


def _held_state():
    from compressor_gui.core import executors

    return executors._worker_state


def _task_count(dask_scheduler) -> int:
    return len(dask_scheduler.tasks)


def _on_workers(config: ClusterConfig, function) -> list:
    from compressor_gui.core.executors import connect

    client = connect(config)
    try:
        return list(client.run(function).values())
    finally:
        client.close()


def _on_scheduler(config: ClusterConfig, function):
    from compressor_gui.core.executors import connect

    client = connect(config)
    try:
        return client.run_on_scheduler(function)
    finally:
        client.close()


def test_a_killed_worker_s_points_all_arrive_once(cluster):
    # heavier points (a deeper, wider model, more samples) so that the kill lands mid-sweep;
    # the scheduler logs the lost tasks it recomputes elsewhere
    model = modelgen.conv_stack(depth=6, channels=16, size=8)
    x = np.random.default_rng(5).standard_normal((128, 16, 8, 8)).astype(np.float32)
    dataset = dataset_from_arrays({"x": x}, model)
    alone = run_job(sens.sensitivity_job(model, dataset, options=OPTIONS, workers=1))
    job = sens.sensitivity_job(model, dataset, options=OPTIONS, cluster=cluster, use_cache=False)
    next(job)  # fast pass
    arrived = _until_a_cluster_point(job)
    os.kill(_on_workers(cluster, os.getpid)[0], signal.SIGKILL)
    table = run_job(job, lambda step: step.payload is not None and arrived.append(step.payload))
    keys = [(p.layer, p.option) for p in arrived]
    assert len(keys) == len(set(keys)) == len(alone.points) == 24
    assert table.points == alone.points


def test_an_auto_plan_on_the_cluster_measures_as_it_does_here(cluster, tmp_path):
    # the sweep and uniform INT8/INT4 (and the front) are built on the workers, each in its
    # own copy of the model file there; the repairs are built here
    path = tmp_path / "stack.onnx"
    onnx.save(modelgen.conv_stack(depth=3, channels=8, size=8), path)
    loaded = load_model(path)
    x = np.random.default_rng(6).standard_normal((32, 8, 8, 8)).astype(np.float32)
    dataset = dataset_from_arrays({"x": x}, loaded.onnx_model)
    here, there = (
        run_job(
            search.autoplan_job(loaded, dataset, Budget(size_ratio=1 / 3), front_points=0, **where)
        )
        for where in ({"workers": 1}, {"cluster": cluster})
    )
    assert [c.label for c in there.candidates] == [c.label for c in here.candidates]
    assert there.candidates == here.candidates
    int4 = next(c for c in there.candidates if c.label == "uniform INT4")
    assert int4.measured_size_bytes < path.stat().st_size / 3  # really written


def test_an_unreachable_scheduler_is_a_clear_error(stack):
    model, dataset = stack
    config = ClusterConfig("tcp://127.0.0.1:9", connect_timeout_s=1)
    with pytest.raises(
        CompressorError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"
    ):
        run_job(sens.sensitivity_job(model, dataset, options=OPTIONS, cluster=config))


def test_only_a_dask_address_with_its_own_tls_files_is_taken(tmp_path, demo_onnx, capsys):
    with pytest.raises(CompressorError, match="tcp://HOST:PORT"):
        ClusterConfig("http://10.0.0.1:8786")
    with pytest.raises(CompressorError, match="not a tls:// address"):
        ClusterConfig("tcp://10.0.0.1:8786", tls_ca_file=str(tmp_path / "ca.pem"))
    with pytest.raises(CompressorError, match="Dask makes mutual"):
        ClusterConfig("tls://10.0.0.1:8786")
    with pytest.raises(CompressorError, match="does not exist"):
        ClusterConfig("tls://10.0.0.1:8786", str(tmp_path / "ca.pem"), str(tmp_path / "c.pem"))
    assert main(["sensitivity", str(demo_onnx), "--cluster", "10.0.0.1:8786"]) == 2
    assert "tcp://HOST:PORT" in capsys.readouterr().err


def test_cli_sensitivity_runs_on_the_cluster(demo_onnx, cluster, capsys):
    args = ["--samples", "16", "--options", "int4", "--json"]
    tls = ["--tls-ca-file", cluster.tls_ca_file, "--tls-cert", cluster.tls_cert_file]
    tls += ["--tls-key", cluster.tls_key_file]
    assert main(["sensitivity", str(demo_onnx), *args, "--cluster", cluster.address, *tls]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["points"]) == 12 and all(p["drop"] is not None for p in payload["points"])


def _folder(payload: str) -> str:
    return payload


def _touch(folder: str, index: int) -> int:
    (Path(folder) / f"piece{index}").write_text("done")
    return index


def test_work_here_runs_while_the_pool_runs_its_pieces(tmp_path, monkeypatch):
    # this thread waits for a file only a pool process writes: run one after the other, it
    # would wait in vain; the sweep's runtime INT8 points overlap its pool points this way
    cancel = CancelToken()
    calls = [(index,) for index in range(4)]
    with RunningBehind(
        Placement(workers=2), _folder, str(tmp_path), _touch, calls, cancel
    ) as behind:
        deadline = time.monotonic() + 120
        while not (tmp_path / "piece3").exists():
            assert time.monotonic() < deadline, "the pool did not run beside this thread"
            time.sleep(0.05)
        monkeypatch.chdir(tmp_path)  # process-wide; the pool's processes were spawned before
        arrived = sorted(i for i, _ in [*behind.finished_so_far(), *behind.the_rest()])
    assert arrived == [0, 1, 2, 3]


def test_a_piece_s_error_reaches_the_thread_reading_the_results(tmp_path):
    calls = [(index,) for index in range(3)]
    missing = str(tmp_path / "no such folder")
    with (
        RunningBehind(
            Placement(workers=2), _folder, missing, _touch, calls, CancelToken()
        ) as behind,
        pytest.raises(FileNotFoundError),
    ):
        list(behind.the_rest())


def _pid_then_sleep(folder: str, index: int) -> int:
    (Path(folder) / f"{index}.pid").write_text(str(os.getpid()))
    time.sleep(120)
    return index


def _pool_of_sleepers(folder: str) -> None:
    calls = [(index,) for index in range(2)]
    list(run_all(Placement(workers=2), _folder, folder, _pid_then_sleep, calls, CancelToken()))


def test_pool_processes_end_when_the_job_process_that_started_them_is_killed(tmp_path):
    # a cancelled job's child process is killed after its grace period; its pool must not
    # stay behind waiting for work
    job = multiprocessing.get_context("spawn").Process(
        target=_pool_of_sleepers, args=(str(tmp_path),)
    )
    job.start()
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("*.pid"))) < 2:
        assert time.monotonic() < deadline, "the pool never started its pieces"
        time.sleep(0.1)
    workers = [int(path.read_text()) for path in tmp_path.glob("*.pid")]
    job.kill()
    job.join()
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "pool processes outlived the job's process"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")  # where there is one: a zombie is not alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not status.is_file() or "zombie" not in status.read_text()
