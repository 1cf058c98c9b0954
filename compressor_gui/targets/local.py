"""This machine: onnxruntime with each execution provider it has, and OpenVINO on CPU.

Every benchmark runs in a spawned child process, so a crash or OOM inside a runtime becomes a
TargetError instead of taking the app down, and cancel simply kills the child. Frozen builds
must call `multiprocessing.freeze_support()` first thing in their entry point. Outputs for
Evaluate are computed in the caller's process (a worker thread in the GUI), as compress does.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import multiprocessing
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressor_gui.core.errors import JobCancelled, TargetError
from compressor_gui.core.hardware import MachineInfo, local_machine
from compressor_gui.core.jobs import (
    CancelToken,
    Job,
    ParentGone,
    Progress,
    as_part,
    child_process_setup,
    process_death_message,
    send_to_parent,
)
from compressor_gui.targets.base import (
    BenchConfig,
    BenchResult,
    LabeledModels,
    ModelOutputs,
    RuntimeOption,
    Target,
)
from compressor_gui.targets.runner import outputs_request, result_from_reply

if TYPE_CHECKING:  # the benchmark child process imports this module: keep it light
    from compressor_gui.core.data import Dataset

POLL_S = 0.05
# Providers that need a remote service or a device we never pick on our own.
SKIPPED_PROVIDERS = {"AzureExecutionProvider"}


class LocalTarget(Target):
    """Benchmarks on this machine, one child process per run."""

    name = "local"

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "name": self.name,
            "os": f"{platform.system()} {platform.release()}",
            "arch": platform.machine(),
            "cpu": _cpu_model(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "onnxruntime": _version("onnxruntime"),
            "providers": ort_providers(),
            "openvino": _version("openvino"),
            "machine": self.machine().to_dict(),
        }
        if info["openvino"]:
            info["openvino_devices"] = openvino_devices()
            info["openvino_cpu_capabilities"] = openvino_cpu_capabilities()
        return info

    def machine(self) -> MachineInfo:
        return local_machine()

    def runtime_options(self) -> list[RuntimeOption]:
        options = [RuntimeOption("ort", p, "fp32") for p in ort_providers()]
        if "TensorrtExecutionProvider" in ort_providers():
            options.append(RuntimeOption("ort", "TensorrtExecutionProvider", "fp16"))
        if _version("openvino"):
            options.append(RuntimeOption("openvino", "CPU", "fp32"))
            if "BF16" in openvino_cpu_capabilities():
                options.append(RuntimeOption("openvino", "CPU", "bf16"))
        return options

    def benchmark(
        self, model_path: str | Path, config: BenchConfig, cancel: CancelToken | None = None
    ) -> Job[BenchResult]:
        result, _ = yield from self.benchmark_with_outputs(model_path, config, cancel)
        return result

    def benchmark_with_outputs(
        self, model_path: str | Path, config: BenchConfig, cancel: CancelToken | None = None
    ) -> Job[tuple[BenchResult, Any]]:
        """Like `benchmark`, plus the first output on `config.fidelity_data` (else None)."""
        model_path = Path(model_path)
        if not model_path.is_file():
            raise TargetError(f"{model_path} does not exist")
        if config.runtime == "trtexec":
            raise TargetError("trtexec runs on SSH targets only (a Jetson); use ort or openvino")
        if config.runtime == "openvino" and not _version("openvino"):
            raise TargetError("OpenVINO is not installed here: pip install openvino")
        provider = config.provider
        if config.runtime == "ort":
            provider = provider or ort_providers()[0]
            if provider not in ort_providers():
                raise TargetError(
                    f"onnxruntime here has no {provider}; it has {', '.join(ort_providers())}"
                )
        request = {**config.to_dict(), "model": str(model_path.resolve()), "provider": provider}
        with tempfile.TemporaryDirectory(prefix="compressor-gui-bench-") as scratch:
            if config.fidelity_data:
                request["outputs_path"] = str(Path(scratch) / "outputs.npz")
            reply = yield from run_in_child(request, config.timeout_s, cancel)
            outputs = None
            if reply.get("outputs_path"):
                import numpy as np

                with np.load(reply["outputs_path"]) as saved:
                    outputs = saved["output_0"]
        return result_from_reply(self.name, model_path, config, reply), outputs

    def _outputs(
        self, models: LabeledModels, dataset: Dataset, config: BenchConfig, cancel: CancelToken
    ) -> Job[ModelOutputs]:
        """onnxruntime on the CPU in this process (the runtime compress and sensitivity
        measure with); another runtime or provider (OpenVINO, a GPU) runs in the benchmark's
        child process, fed exactly as a remote runner feeds."""
        import onnxruntime as ort

        from compressor_gui.core.evaluate import make_session, run_outputs

        if config.runtime != "ort" or config.provider not in (None, "CPUExecutionProvider"):
            return (yield from self._child_outputs(models, dataset, config, cancel))
        collected = []
        for index, (label, model) in enumerate(models):
            yield Progress(index, len(models), f"{label}: running {len(dataset)} samples")
            collected.append(run_outputs(make_session(model), dataset, cancel=cancel))
        runtime = f"onnxruntime {ort.__version__} CPUExecutionProvider"
        return ModelOutputs(tuple(collected), self.machine(), runtime)

    def _child_outputs(
        self, models: LabeledModels, dataset: Dataset, config: BenchConfig, cancel: CancelToken
    ) -> Job[ModelOutputs]:
        import numpy as np

        from compressor_gui.core.data import save_npz
        from compressor_gui.core.model import save_onnx

        collected, reply = [], {}
        with tempfile.TemporaryDirectory(prefix="compressor-gui-outputs-") as scratch:
            data = str(save_npz(Path(scratch) / "data.npz", dataset.inputs))
            for index, (label, model) in enumerate(models):
                if not isinstance(model, Path | str):
                    model = save_onnx(model, Path(scratch) / f"model{index}.onnx")
                outputs_path = Path(scratch) / f"outputs{index}.npz"
                model_file = str(Path(model).resolve())
                request = outputs_request(config, model_file, data, str(outputs_path), dataset)
                run = run_in_child(request, config.timeout_s, cancel)
                reply = yield from as_part(run, index, len(models), label)
                with np.load(outputs_path) as saved:
                    collected.append([saved[f"output_{i}"] for i in range(len(saved.files))])
        runtime = f"{reply.get('runtime_version', config.runtime)} {reply.get('device', '')}"
        return ModelOutputs(tuple(collected), self.machine(), runtime.strip())


def run_in_child(
    request: dict[str, Any], timeout_s: float, cancel: CancelToken | None
) -> Job[dict[str, Any]]:
    """Run the runner in a spawned process; yield its progress, return its result message."""
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(child_end, request), daemon=True)
    process.start()
    child_end.close()
    deadline = time.monotonic() + timeout_s
    try:
        yield Progress(0, 1, "starting the runtime")
        while True:
            if cancel is not None and cancel.cancelled:
                raise JobCancelled("benchmark cancelled by the user")
            if time.monotonic() > deadline:
                raise TargetError(f"the benchmark took longer than {timeout_s:.0f} s: stopped")
            if parent_end.poll(POLL_S):
                try:
                    message = parent_end.recv()
                except EOFError:
                    process.join(5)
                    raise TargetError(
                        process_death_message(process.exitcode, "the runtime")
                    ) from None
                if message["type"] == "progress":
                    yield Progress(message["done"], message["total"], message["message"])
                elif message["type"] == "error":
                    raise TargetError(f"the runtime failed: {message['message']}")
                else:
                    return message
            elif not process.is_alive():
                raise TargetError(process_death_message(process.exitcode, "the runtime"))
    finally:
        if process.is_alive():
            process.kill()
        process.join(5)
        parent_end.close()


def _child_main(connection, request: dict[str, Any]) -> None:
    from compressor_gui.targets import remote_runner

    child_process_setup()
    send = functools.partial(send_to_parent, connection)
    try:
        send(remote_runner.run(request, send))
    except ParentGone:
        pass  # the parent was killed: nobody is left to tell
    except Exception as exc:  # sent to the parent as a message the user can read
        with contextlib.suppress(ParentGone):
            send({"type": "error", "message": f"{type(exc).__name__}: {exc}"})
    finally:
        connection.close()


@functools.cache
def ort_providers() -> list[str]:
    import onnxruntime as ort

    return [p for p in ort.get_available_providers() if p not in SKIPPED_PROVIDERS]


@functools.cache
def openvino_devices() -> list[str]:
    import openvino as ov

    return list(ov.Core().available_devices)


@functools.cache
def openvino_cpu_capabilities() -> list[str]:
    import openvino as ov

    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
