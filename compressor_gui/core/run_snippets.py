"""Minimal run scripts shipped in a deployment folder: each loads the folder's model with
its runtime, runs the folder's sample input, prints the outputs' shapes, the first output's
top class and the median latency. They import only numpy and the runtime."""

from __future__ import annotations

_HEAD = '''"""Run __MODEL__ with __RUNTIME__ on sample_input.npz (written by compressor-gui deploy).

    python __SCRIPT__
"""

import time
from pathlib import Path

import numpy as np
'''

_TAIL = """

def main() -> None:
    with np.load(HERE / "sample_input.npz") as data:
        feed = {name: data[name] for name in data.files}
    run = load(feed)
    outputs = run(feed)
    for index, value in enumerate(outputs):
        print(f"output {index}: shape {list(value.shape)} {value.dtype}")
    print("top class of output 0:", int(np.argmax(outputs[0].reshape(len(outputs[0]), -1)[0])))
    times = []
    for _ in range(20):
        start = time.perf_counter()
        run(feed)
        times.append((time.perf_counter() - start) * 1000)
    print(f"median latency: {np.median(times):.3f} ms over 20 runs")


if __name__ == "__main__":
    main()
"""

ONNXRUNTIME = (
    _HEAD
    + """import onnxruntime as ort

HERE = Path(__file__).resolve().parent
PROVIDERS = __PROVIDERS__  # as measured; the CPU is the fallback


def load(feed):
    available = ort.get_available_providers()
    providers = [p for p in PROVIDERS if p in available] or ["CPUExecutionProvider"]
    session = ort.InferenceSession(str(HERE / "model.onnx"), providers=providers)
    return lambda inputs: session.run(None, inputs)
"""
    + _TAIL
)

OPENVINO = (
    _HEAD
    + """import sys

sys.modules.setdefault("openvino_telemetry", None)  # no usage telemetry from OpenVINO
import openvino as ov  # noqa: E402

HERE = Path(__file__).resolve().parent
DEVICE = __DEVICE__
CONFIG = __CONFIG__  # as measured


def load(feed):
    core = ov.Core()
    model = core.read_model(str(HERE / "model.xml"))
    model.reshape({name: list(array.shape) for name, array in feed.items()})
    compiled = core.compile_model(model, DEVICE, CONFIG)
    request = compiled.create_infer_request()
    return lambda inputs: [np.asarray(v) for v in request.infer(inputs).values()]
"""
    + _TAIL
)

TENSORRT = """#!/bin/sh
# Build a TensorRT engine from model.onnx on the device and time it (trtexec ships with
# TensorRT / JetPack: /usr/src/tensorrt/bin/trtexec). Written by compressor-gui deploy.
set -e
cd "$(dirname "$0")"
TRTEXEC=$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)
"$TRTEXEC" --onnx=model.onnx --saveEngine=model.engine __FLAGS__
"""

OV_PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


def snippet(runtime: str, precision: str, device: str) -> tuple[str, str]:
    """(file name, text) of the run script for a form of `runtime` at `precision`."""
    if runtime == "openvino":
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if precision in OV_PRECISION_HINTS:
            config["INFERENCE_PRECISION_HINT"] = OV_PRECISION_HINTS[precision]
        name = "run_openvino.py"
        values = {"MODEL": "model.xml", "RUNTIME": "OpenVINO", "DEVICE": repr(device)}
        return name, _filled(OPENVINO, SCRIPT=name, CONFIG=repr(config), **values)
    if runtime == "trtexec":
        flags = {"fp16": "--fp16", "int8": "--int8 --fp16"}.get(precision, "")
        return "run_tensorrt.sh", _filled(TENSORRT, FLAGS=flags).replace(" \n", "\n")
    providers = [device, "CPUExecutionProvider"] if device != "CPUExecutionProvider" else [device]
    name = "run_onnxruntime.py"
    values = {"MODEL": "model.onnx", "RUNTIME": "onnxruntime", "PROVIDERS": repr(providers)}
    return name, _filled(ONNXRUNTIME, SCRIPT=name, **values)


def _filled(template: str, **values: str) -> str:
    for key, value in values.items():
        template = template.replace(f"__{key}__", value)
    return template
