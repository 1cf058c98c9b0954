"""Time a model with onnxruntime or OpenVINO; the same file runs locally (in a child process) and
on a remote box (uploaded by SFTP), so it imports only the standard library, numpy and the runtime.

Remote use: `python3 remote_runner.py request.json` prints one JSON object per line on stdout:
{"type": "progress"|"result"|"error", ...}. With "watch_stdin" it exits when its stdin closes (the
SSH link dropped); with "cleanup_dir" it removes that folder when it is killed or cut off (on a
normal end the caller removes it, after fetching what it needs).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import sys
import threading
import time

import numpy as np

PROGRESS_EVERY_S = 0.25

ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}
OV_PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


def run(request: dict, emit) -> dict:
    """Benchmark as `request` says, calling emit(message_dict) for progress; return the result."""
    runtime = request.get("runtime", "ort")
    if runtime == "ort":
        session = _OrtSession(request)
    elif runtime == "openvino":
        session = _OpenVinoSession(request)
    else:
        raise RuntimeError(f"the runner cannot run {runtime!r}")
    feeds = _random_feeds(session.inputs, int(request.get("batch_size", 1)))
    warmup = int(request.get("warmup", 10))
    runs = int(request.get("runs", 100))
    duration_s = request.get("duration_s")
    for index in range(warmup):
        session.run(feeds)
        emit({"type": "progress", "done": index + 1, "total": warmup, "message": "warm-up"})
    latencies_ms = _timed_loop(session, feeds, runs, duration_s, emit)
    outputs_path = None
    if request.get("fidelity_data") and request.get("outputs_path"):
        outputs_path = _save_outputs(session, request)
    return {
        "type": "result",
        "latencies_ms": latencies_ms,
        "session_create_ms": session.create_ms,
        "peak_memory_bytes": _peak_memory_bytes(),
        "device": session.device,
        "runtime_version": session.version,
        "notes": session.notes,
        "outputs_path": outputs_path,
        "host": platform.node(),
    }


def _timed_loop(session, feeds, runs: int, duration_s, emit) -> list[float]:
    latencies_ms: list[float] = []
    clock = time.perf_counter
    start = last_report = clock()
    total = float(duration_s) if duration_s else runs
    while True:
        begin = clock()
        session.run(feeds)
        end = clock()
        latencies_ms.append((end - begin) * 1000.0)
        done = end - start if duration_s else len(latencies_ms)
        if done >= total:
            break
        if end - last_report >= PROGRESS_EVERY_S:
            last_report = end
            emit({"type": "progress", "done": done, "total": total, "message": "timing"})
    return latencies_ms


class _OrtSession:
    def __init__(self, request: dict) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        threads = int(request.get("threads", 0))
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        available = ort.get_available_providers()
        provider = request.get("provider") or available[0]
        if provider not in available:
            raise RuntimeError(f"onnxruntime here has no {provider}; it has {', '.join(available)}")
        precision = request.get("precision", "fp32")
        provider_options: dict = {}
        if precision == "fp16":
            if provider != "TensorrtExecutionProvider":
                raise RuntimeError(f"onnxruntime runs fp16 only through TensorRT, not {provider}")
            provider_options["trt_fp16_enable"] = True
        providers = [(provider, provider_options)]
        if provider != "CPUExecutionProvider":
            providers.append(("CPUExecutionProvider", {}))
        begin = time.perf_counter()
        self._session = ort.InferenceSession(
            request["model"], sess_options=options, providers=providers
        )
        self.create_ms = (time.perf_counter() - begin) * 1000.0
        self.device = provider
        self.version = f"onnxruntime {ort.__version__}"
        self.notes = []
        if self._session.get_providers()[0] != provider:
            self.notes.append(
                f"{provider} was not used: running on {self._session.get_providers()}"
            )
        self.inputs = [
            (i.name, list(i.shape), ORT_TYPES.get(i.type, np.float32))
            for i in self._session.get_inputs()
        ]
        self.output_names = [o.name for o in self._session.get_outputs()]

    def run(self, feeds: dict):
        return self._session.run(None, feeds)


class _OpenVinoSession:
    def __init__(self, request: dict) -> None:
        import openvino as ov

        core = ov.Core()
        device = request.get("provider") or "CPU"
        begin = time.perf_counter()
        model = core.read_model(request["model"])
        batch = int(request.get("batch_size", 1))
        shapes = {}
        for port in model.inputs:
            dims = [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()]
            if -1 in dims:
                shapes[port.get_any_name()] = [
                    batch if i == 0 and d == -1 else max(d, 1) for i, d in enumerate(dims)
                ]
        if shapes:
            model.reshape(shapes)
        config = {"PERFORMANCE_HINT": "LATENCY"}
        threads = int(request.get("threads", 0))
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        precision = request.get("precision", "default")
        if precision in OV_PRECISION_HINTS:
            config["INFERENCE_PRECISION_HINT"] = OV_PRECISION_HINTS[precision]
        compiled = core.compile_model(model, device, config)
        self.create_ms = (time.perf_counter() - begin) * 1000.0
        self._request = compiled.create_infer_request()
        self.device = device
        self.version = f"openvino {ov.get_version()}"
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")
        used = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        self.notes = [f"OpenVINO inference precision: {used}"]
        self.inputs = [
            (p.get_any_name(), list(p.get_shape()), p.get_element_type().to_dtype().type)
            for p in compiled.inputs
        ]
        self.output_names = [p.get_any_name() for p in compiled.outputs]

    def run(self, feeds: dict):
        results = self._request.infer(feeds)
        return [np.asarray(value) for value in results.values()]


def _concrete_shape(shape: list, batch: int) -> list[int]:
    """Symbolic or unknown dims: the first becomes the batch size, any other 1."""
    return [
        d if isinstance(d, int) and d > 0 else (batch if i == 0 else 1) for i, d in enumerate(shape)
    ]


def _random_feeds(inputs, batch: int) -> dict:
    rng = np.random.default_rng(0)
    feeds = {}
    for name, shape, dtype in inputs:
        dims = _concrete_shape(shape, batch)
        if np.issubdtype(dtype, np.floating):
            feeds[name] = rng.standard_normal(dims).astype(dtype)
        elif dtype == np.bool_:
            feeds[name] = rng.integers(0, 2, dims).astype(np.bool_)
        else:
            feeds[name] = rng.integers(0, 2, dims).astype(dtype)
    return feeds


def _save_outputs(session, request: dict) -> str:
    """Run the fidelity inputs (npz key `x`) in batches and save the first output as key `y`."""
    data = np.load(request["fidelity_data"])["x"]
    name, shape, dtype = session.inputs[0]
    batch = int(request.get("batch_size", 1))
    if isinstance(shape[0], int) and shape[0] > 0:
        batch = shape[0]
    outputs = []
    for start in range(0, len(data), batch):
        chunk = data[start : start + batch].astype(dtype)
        real = len(chunk)
        if real < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - real, axis=0)])
        outputs.append(np.asarray(session.run({name: chunk})[0])[:real])
    np.save(request["outputs_path"], np.concatenate(outputs).astype(np.float32))
    return request["outputs_path"]


def _peak_memory_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _main(request_path: str) -> int:
    with open(request_path, encoding="utf-8") as handle:
        request = json.load(handle)
    cleanup_dir = request.get("cleanup_dir")

    def clean_and_exit(code: int) -> None:
        if cleanup_dir:
            shutil.rmtree(cleanup_dir, ignore_errors=True)
        os._exit(code)

    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, lambda *_: clean_and_exit(143))
    if request.get("watch_stdin"):
        threading.Thread(
            target=lambda: (sys.stdin.buffer.read(), clean_and_exit(141)), daemon=True
        ).start()

    def emit(message: dict) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    try:
        emit(run(request, emit))
        code = 0
    except Exception as exc:  # report any runtime failure as one line the caller can show
        emit({"type": "error", "message": f"{type(exc).__name__}: {exc}"})
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
