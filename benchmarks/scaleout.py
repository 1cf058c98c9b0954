"""Sensitivity sweep in one process, on the local process pool and on a 2-worker Dask
LocalCluster (loopback), side by side in one run, with the same points and cache entries.

The generated 50-layer CNN of benchmarks/sensitivity.py, 256 samples, 4 options per layer
(200 points). Each placement starts from an empty cache. The cluster is started before its
sweep is timed (a user's cluster is already running); its sweep time includes connecting,
scattering the model and data, and each worker's session. Then the cluster's own costs are
measured on their own: connect + scatter of this payload, and the round trip of empty tasks.
From these the time of a 300-layer sweep on N workers is projected.
Run: .venv/bin/python benchmarks/scaleout.py
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

LAYERS, OPTIONS, SAMPLES = 50, ("int8", "int4", "int2", "prune50"), 256


def sweep(model, dataset, cache: Path, **where) -> tuple[float, object, dict]:
    """(seconds, table, cache file points) of one sweep from an empty cache folder."""
    from compressor_gui.core.jobs import run_job
    from compressor_gui.core.sensitivity import options_named, sensitivity_job

    os.environ["COMPRESSOR_GUI_CACHE_DIR"] = str(cache)
    start = time.perf_counter()
    table = run_job(sensitivity_job(model, dataset, options=options_named(OPTIONS), **where))
    seconds = time.perf_counter() - start
    [file] = (cache / "sensitivity").glob("*.json")
    return seconds, table, json.loads(file.read_text())["points"]


def _noop(_state, index: int) -> int:
    return index


def _keep(payload):
    return payload


def cluster_costs(config, payload, tasks: int) -> tuple[float, float, float]:
    """(connect + scatter s, per empty task s, setup of the run_all path s) on the cluster."""
    from compressor_gui.core.executors import Placement, connect, run_all
    from compressor_gui.core.jobs import CancelToken

    start = time.perf_counter()
    client = connect(config)
    client.scatter([payload], broadcast=True, hash=False, direct=False)
    scatter_s = time.perf_counter() - start
    client.close()
    calls = [(i,) for i in range(tasks)]
    start = time.perf_counter()
    list(run_all(Placement(cluster=config), _keep, payload, _noop, calls[:1], CancelToken()))
    one_s = time.perf_counter() - start
    start = time.perf_counter()
    list(run_all(Placement(cluster=config), _keep, payload, _noop, calls, CancelToken()))
    many_s = time.perf_counter() - start
    return scatter_s, (many_s - one_s) / (tasks - 1), one_s


def main() -> None:
    from distributed import LocalCluster
    from sensitivity import generated_model

    from compressor_gui.core.data import dataset_from_arrays
    from compressor_gui.core.executors import ClusterConfig

    load_before = os.getloadavg()[0]
    model = generated_model(LAYERS)
    x = np.random.default_rng(1).standard_normal((SAMPLES, 16, 8, 8)).astype(np.float32)
    dataset = dataset_from_arrays({"x": x}, model)
    points = LAYERS * len(OPTIONS)
    payload_bytes = model.ByteSize() + x.nbytes
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        one_s, one, one_cache = sweep(model, dataset, root / "one", workers=1)
        pool_s, pool, pool_cache = sweep(model, dataset, root / "pool", workers=2)
        start = time.perf_counter()
        with LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster:
            cluster_start_s = time.perf_counter() - start
            config = ClusterConfig(cluster.scheduler_address)
            dask_s, dask, dask_cache = sweep(model, dataset, root / "dask", cluster=config)
            payload = (model.SerializeToString(), x)
            scatter_s, task_s, first_task_s = cluster_costs(config, payload, 400)

    per_point_s = one_s / points
    same = one.points == pool.points == dask.points and one_cache == pool_cache == dask_cache
    overhead_s = (dask_s - one_s / 2) / points
    print(
        f"sensitivity sweep: generated {LAYERS}-layer CNN, {len(OPTIONS)} options = {points} "
        f"points, {SAMPLES} samples, onnxruntime 1 thread per worker; CPU "
        f"{_cpu()} ({os.cpu_count()} cores; load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after)"
    )
    print(f"{'placement':<34}{'sweep s':>9}{'vs 1 process':>14}{'per point ms':>14}")
    for label, seconds in (
        ("1 local process", one_s),
        ("process pool, 2 processes", pool_s),
        ("Dask LocalCluster, 2 workers", dask_s),
    ):
        print(f"{label:<34}{seconds:9.2f}{one_s / seconds:13.2f}x{1000 * seconds / points:14.1f}")
    print(f"same points and identical cache entries in all three: {same}")
    print(
        f"cluster: started in {cluster_start_s:.1f} s (not in its sweep time); connect + "
        f"scatter of {payload_bytes / 2**20:.1f} MiB {scatter_s * 1000:.0f} ms; first task "
        f"(connect, scatter, run, gather) {first_task_s * 1000:.0f} ms; each further empty "
        f"task {task_s * 1000:.2f} ms; sweep overhead over an ideal 2-way split "
        f"{overhead_s * 1000:.1f} ms per point"
    )
    print()
    print(_projection(per_point_s, first_task_s, task_s))


def _projection(per_point_s: float, setup_s: float, task_s: float) -> str:
    """300 layers x 4 options, per-point cost scaled by depth (same layer width)."""
    layers = 300
    points = layers * len(OPTIONS)
    point_s = per_point_s * layers / LAYERS
    lines = [
        f"projection for a {layers}-layer model of the same width ({points} points; per point "
        f"{point_s * 1000:.0f} ms = measured {per_point_s * 1000:.1f} ms x {layers}/{LAYERS} "
        f"layers; cluster setup {setup_s:.2f} s and {task_s * 1000:.2f} ms scheduling per "
        "task, as measured; scatter grows with the model):",
        f"{'workers':>8}{'sweep':>12}{'speed-up':>10}",
    ]
    serial = points * point_s
    for workers in (1, 2, 8, 32, 128):
        seconds = setup_s + points * (point_s / workers + task_s)
        lines.append(f"{workers:>8}{_human(seconds):>12}{serial / seconds:9.1f}x")
    return "\n".join(lines)


def _human(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.1f} s"


def _cpu() -> str:
    from compressor_gui.core.hardware import local_machine

    machine = local_machine()
    return f"{machine.cpu_model}, {machine.isa_class}"


if __name__ == "__main__":
    main()
