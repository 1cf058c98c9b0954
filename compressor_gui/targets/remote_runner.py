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

# OpenVINO sends usage telemetry on import unless its telemetry package cannot be imported
sys.modules.setdefault("openvino_telemetry", None)
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
    """Benchmark as `request` says, calling emit(message_dict) for progress; return the result.
    With "fidelity_data" and "outputs_path" the outputs on those inputs are saved too; with
    "outputs_only" nothing is timed (Evaluate wants the outputs, not the speed)."""
    runtime = request.get("runtime", "ort")
    if runtime == "ort":
        session = _OrtSession(request)
    elif runtime == "openvino":
        session = _OpenVinoSession(request)
    else:
        raise RuntimeError(f"the runner cannot run {runtime!r}")
    latencies_ms: list[float] = []
    if not request.get("outputs_only"):
        shapes, batch = request.get("input_shapes") or {}, int(request.get("batch_size", 1))
        if request.get("feed_data"):
            feeds = _data_feeds(session.inputs, batch, request["feed_data"])
        else:
            feeds = _random_feeds(session.inputs, batch, shapes)
        warmup = int(request.get("warmup", 10))
        for index in range(warmup):
            session.run(feeds)
            emit({"type": "progress", "done": index + 1, "total": warmup, "message": "warm-up"})
        latencies_ms = _timed_loop(
            session, feeds, int(request.get("runs", 100)), request.get("duration_s"), emit
        )
    outputs_path = None
    if request.get("fidelity_data") and request.get("outputs_path"):
        outputs_path = _save_outputs(session, request, emit)
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
        # AzureExecutionProvider calls a remote service: never a default
        provider = request.get("provider") or [p for p in available if "Azure" not in p][0]
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
        if request.get("outputs_only") and request.get("feed_step"):
            batch = int(request["feed_step"])  # a dynamic batch is fixed to the feed's size
        shapes = {}
        for port in model.inputs:
            dims = [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()]
            if -1 in dims:
                given = (request.get("input_shapes") or {}).get(port.get_any_name())
                shapes[port.get_any_name()] = _concrete_shape(dims, batch, given)
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


def _concrete_shape(shape: list, batch: int, given: list | None = None) -> list[int]:
    """The caller's resolved shape (core/shapes.py) with its first dim set to the batch size;
    without one, symbolic or unknown dims: the first becomes the batch size, any other 1."""
    if given and len(given) == len(shape):
        return [
            batch if i == 0 and not (isinstance(d, int) and d > 0) else int(given[i])
            for i, d in enumerate(shape)
        ]
    return [
        d if isinstance(d, int) and d > 0 else (batch if i == 0 else 1) for i, d in enumerate(shape)
    ]


def _random_feeds(inputs, batch: int, shapes: dict) -> dict:
    """core/shapes.py's rule for made-up inputs (this file runs where the package is not):
    floats standard-normal, integers and booleans ones."""
    rng = np.random.default_rng(0)
    feeds = {}
    for name, shape, dtype in inputs:
        dims = _concrete_shape(shape, batch, shapes.get(name))
        if np.issubdtype(dtype, np.floating):
            feeds[name] = rng.standard_normal(dims).astype(dtype)
        else:
            feeds[name] = np.ones(dims, dtype)
    return feeds


def _data_feeds(inputs, batch: int, path: str) -> dict:
    """The first sample of an .npz (one array per input, or `x`) as the timed feed: an array
    with one more dim than its input holds samples on axis 0 (the first is fed), one of the
    input's rank holds batches (the first `batch` rows are fed)."""
    arrays = _input_arrays(path, inputs)
    feeds = {}
    for name, shape, dtype in inputs:
        array = arrays[name]
        first = array[0] if array.ndim == len(shape) + 1 else array[:batch]
        feeds[name] = np.asarray(first, dtype=dtype)
    return feeds


def _input_arrays(path: str, inputs) -> dict:
    """The .npz's arrays by input name (labels and class names left out), or `x` for a
    one-input model."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    names = [name for name, _, _ in inputs]
    if all(name in arrays for name in names):
        return {name: arrays[name] for name in names}
    if "x" in arrays and len(names) == 1:
        return {names[0]: arrays["x"]}
    raise RuntimeError(f"the data has {sorted(arrays)}; the model needs {names}")


def _save_outputs(session, request: dict, emit) -> str:
    """Run every sample of `fidelity_data` and save all outputs (npz keys output_0, ...).

    The npz holds one array per input name (or `x` for the first input), samples on axis 0.
    "forms" says per input whether axis 0 is the model's batch axis ("batch") or an extra
    sample axis ("sample", fed one sample at a time), and "feed_step" how many samples go in
    one run; the caller decides both (core/data.py's Dataset rule) and this only follows them.
    Without "forms" the `x` array is batched by the model's fixed batch or the batch size.
    """
    arrays = _input_arrays(request["fidelity_data"], session.inputs)
    inputs = {name: (shape, dtype) for name, shape, dtype in session.inputs}
    forms = request.get("forms") or dict.fromkeys(inputs, "batch")
    step = request.get("feed_step")
    if step is None:
        first_dim = next(iter(inputs.values()))[0][0]
        step = first_dim if isinstance(first_dim, int) and first_dim > 0 else None
        step = step or int(request.get("batch_size", 1))
    count = len(next(iter(arrays.values())))
    batched = all(form == "batch" for form in forms.values())
    collected: list[list] = []
    last_report = time.perf_counter()
    for start in range(0, count, int(step)):
        feed = {}
        for name, array in arrays.items():
            shape, dtype = inputs[name]
            if forms[name] == "sample":
                feed[name] = np.asarray(array[start], dtype=dtype)
            else:
                feed[name] = _padded(array[start : start + int(step)].astype(dtype), shape)
        real = min(int(step), count - start)
        outputs = [np.asarray(value) for value in session.run(feed)]
        if not collected:
            collected = [[] for _ in outputs]
        for index, value in enumerate(outputs):
            collected[index].append(value[:real] if batched else value[None])
        if time.perf_counter() - last_report >= PROGRESS_EVERY_S or start == 0:
            last_report = time.perf_counter()
            done = start + real
            emit({"type": "progress", "done": done, "total": count, "message": "running samples"})
    np.savez(
        request["outputs_path"],
        **{f"output_{i}": np.concatenate(parts) for i, parts in enumerate(collected)},
    )
    return request["outputs_path"]


def _padded(chunk, shape: list):
    """A last short chunk repeated up to a model's fixed batch size (outputs are cut back)."""
    fixed = shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else None
    if fixed is None or len(chunk) >= fixed:
        return chunk
    return np.concatenate([chunk, np.repeat(chunk[-1:], fixed - len(chunk), axis=0)])


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
