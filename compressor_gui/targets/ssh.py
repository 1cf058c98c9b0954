"""A saved SSH box as a target: probe what it is, run our runner or trtexec (with tegrastats
beside it on a Jetson) there, and bring the results back.

How to reach the box (host keys, auth, uploads, wrapped runs, clean-up) is ssh_transport.py;
what runs there is runner.py (our onnxruntime/OpenVINO runner) and jetson.py (trtexec,
tegrastats). Evaluate uploads the data and the models once, runs each model through the
runner there and fetches every output, so the scores are computed here by the same rule as
locally (core/evaluate.py) from what the target computed.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import shlex
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import paramiko

from compressor_gui.core.data import Dataset, save_npz
from compressor_gui.core.errors import TargetError
from compressor_gui.core.hardware import MachineInfo, machine_from_probe, probe_command
from compressor_gui.core.jobs import CancelToken, Job, Progress, as_part
from compressor_gui.core.model import model_files, save_onnx
from compressor_gui.targets import jetson
from compressor_gui.targets.base import (
    BenchConfig,
    BenchResult,
    LabeledModels,
    ModelOutputs,
    RuntimeOption,
    Target,
)
from compressor_gui.targets.runner import (
    RUNNER_FILE,
    outputs_request,
    reply_from_lines,
    result_from_reply,
    runner_code,
)
from compressor_gui.targets.ssh_transport import (
    CONNECT_TIMEOUT_S,
    WORKDIR_PREFIX,
    UnknownHostKeyError,
    WrappedOutput,
    best_effort_remove,
    download_arrays,
    guarded_workdir,
    open_client,
    put_bytes,
    run_command,
    run_wrapped,
    upload,
)
from compressor_gui.targets.store import TargetSpec

__all__ = ["SshTarget", "UnknownHostKeyError"]  # the error callers catch on a first connect

DATA = "data.npz"
PY_PROBE = (
    "import onnxruntime as o, numpy; print('onnxruntime=' + o.__version__); "
    "print('providers=' + ','.join(o.get_available_providers())); "
    "print('numpy=' + numpy.__version__)"
)
# JETSON_SYSROOT lets a chroot (or a test's fake Jetson) point at its own release files.
SYSTEM_PROBE = (
    "command -v nvidia-smi >/dev/null && "
    'echo "gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"; '
    'R="${JETSON_SYSROOT:-}"; '
    '[ -r "$R/etc/nv_tegra_release" ] && echo "l4t=$(head -1 "$R/etc/nv_tegra_release")"; '
    '[ -r "$R/proc/device-tree/model" ] && '
    'echo "board=$(tr -d \'\\000\' < "$R/proc/device-tree/model")"; true'
)


def probe_script(python: str) -> str:
    """One shell line per fact `describe` reports; missing tools just print nothing."""
    py = shlex.quote(python)
    return "\n".join(
        [
            'echo "os=$(uname -s) $(uname -r)"; echo "arch=$(uname -m)"',
            f'echo "python=$({py} --version 2>&1)"',
            f"{py} -c {shlex.quote(PY_PROBE)} 2>/dev/null",
            jetson.TOOLS_PROBE,
            SYSTEM_PROBE,
        ]
    )


class SshTarget(Target):
    """Benchmarks on a saved SSH target with onnxruntime (our runner) or trtexec."""

    def __init__(
        self,
        spec: TargetSpec,
        *,
        accept_host_key: str | None = None,
        password: str | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.accept_host_key = accept_host_key
        self._password = password
        self.connect_timeout_s = connect_timeout_s
        self._description: dict[str, Any] | None = None

    @property
    def place(self) -> str:
        return self.spec.host

    @contextlib.contextmanager
    def connect(self) -> Iterator[paramiko.SSHClient]:
        """An authenticated client; every failure becomes a TargetError saying what to do."""
        with open_client(
            self.spec, self.accept_host_key, self._password, self.connect_timeout_s
        ) as client:
            yield client

    def describe(self) -> dict[str, Any]:
        with self.connect() as client:
            out = run_command(client, probe_script(self.spec.python))
            machine = machine_from_probe(run_command(client, probe_command(self.spec.python)))
        info: dict[str, Any] = {"name": self.name, "address": self.spec.address}
        for line in out.splitlines():
            key, sep, value = line.partition("=")
            if sep and value.strip():
                info[key.strip()] = value.strip()
        if "providers" in info:
            info["providers"] = info["providers"].split(",")
        if "l4t" in info:
            info["l4t_release"] = jetson.parse_l4t_release(info["l4t"])
        info["machine"] = machine.to_dict()
        self._description = info
        return info

    def machine(self) -> MachineInfo:
        """Read over SSH each time it is asked: a target's box can be swapped under its name."""
        with self.connect() as client:
            return machine_from_probe(run_command(client, probe_command(self.spec.python)))

    def runtime_options(self) -> list[RuntimeOption]:
        info = self._description or self.describe()
        providers = [p for p in info.get("providers", []) if p != "AzureExecutionProvider"]
        options = [RuntimeOption("ort", p, "fp32") for p in providers]
        if "trtexec" in info:
            options += [RuntimeOption("trtexec", "GPU", p) for p in ("fp32", "fp16", "int8")]
        return options

    def benchmark(
        self, model_path: str | Path, config: BenchConfig, cancel: CancelToken | None = None
    ) -> Job[BenchResult]:
        model_path = Path(model_path)
        if not model_path.is_file():
            raise TargetError(f"{model_path} does not exist")
        yield Progress(0, 1, f"connecting to {self.spec.address}")
        with self.connect() as client:
            tools = jetson.found_tools(run_command(client, jetson.TOOLS_PROBE))
            workdir = run_command(
                client,
                f"mktemp -d {shlex.quote(self.spec.remote_tmp)}/{WORKDIR_PREFIX}XXXXXX",
            ).strip()
            try:
                remote_model = posixpath.join(workdir, model_path.name)
                for path in model_files(model_path):  # external weights, an IR's .bin
                    yield from upload(client, path, posixpath.join(workdir, path.name), cancel)
                if config.runtime == "trtexec":
                    trtexec = tools.get("trtexec")
                    command = jetson.trtexec_command(model_path, remote_model, trtexec, config)
                else:
                    command = self._runner_command(client, workdir, remote_model, config)
                sampler = tools.get("tegrastats")
                output = yield from run_wrapped(
                    client,
                    workdir,
                    command,
                    config.timeout_s,
                    cancel,
                    jetson.tegrastats_command(sampler) if sampler else None,
                )
            finally:
                best_effort_remove(client, workdir)
        return jetson.with_tegrastats(self._parse(model_path, config, output), output.sampler_lines)

    def _runner_command(
        self, client: paramiko.SSHClient, workdir: str, remote_model: str, config: BenchConfig
    ) -> list[str]:
        request = {**config.to_dict(), "model": remote_model, "fidelity_data": None}
        if config.feed_data:
            request["feed_data"] = "feed.npz"
            put_bytes(
                client, posixpath.join(workdir, "feed.npz"), Path(config.feed_data).read_bytes()
            )
        put_bytes(client, posixpath.join(workdir, RUNNER_FILE), runner_code())
        put_bytes(client, posixpath.join(workdir, "request.json"), json.dumps(request).encode())
        return [self.spec.python, "-u", RUNNER_FILE, "request.json"]

    def _parse(self, model_path: Path, config: BenchConfig, output: WrappedOutput) -> BenchResult:
        if config.runtime == "trtexec":
            return jetson.result_from_trtexec(
                self.name, model_path, config, output.lines, output.exit_code
            )
        reply = reply_from_lines(output.lines, output.exit_code, self.spec.address)
        result = result_from_reply(self.name, model_path, config, reply)
        return replace(result, raw_log="\n".join(output.lines))

    def _outputs(
        self, models: LabeledModels, dataset: Dataset, config: BenchConfig, cancel: CancelToken
    ) -> Job[ModelOutputs]:
        """Upload the data and models once, run each through the runner there, fetch every
        output; the workdir goes when we finish, fail or cancel, or when the link drops."""
        yield Progress(0, 1, f"connecting to {self.spec.address}")
        with tempfile.TemporaryDirectory(prefix="compressor-gui-eval-") as scratch:
            local_files = _model_files(models, Path(scratch))
            data_file = save_npz(Path(scratch) / "data.npz", dataset.inputs)
            with self.connect() as client:
                machine = machine_from_probe(run_command(client, probe_command(self.spec.python)))
                with guarded_workdir(client, self.spec.remote_tmp) as workdir:
                    put_bytes(client, posixpath.join(workdir, RUNNER_FILE), runner_code())
                    yield from upload(client, data_file, posixpath.join(workdir, DATA), cancel)
                    runs = []
                    for index, (label, _) in enumerate(models):
                        one = self._run_one(
                            client, workdir, index, local_files[index], dataset, config, cancel
                        )
                        runs.append((yield from as_part(one, index, len(models), label)))
        reply = runs[0][1]
        runtime = f"{reply['runtime_version']} {reply['device']}"
        return ModelOutputs(tuple(outputs for outputs, _ in runs), machine, runtime)

    def _run_one(
        self,
        client: paramiko.SSHClient,
        workdir: str,
        index: int,
        files: tuple[Path, ...],
        dataset: Dataset,
        config: BenchConfig,
        cancel: CancelToken,
    ) -> Job[tuple[list[np.ndarray], dict[str, Any]]]:
        """Upload one model, run it on the uploaded data in its own subfolder (which the
        wrapper removes when the run ends), fetch its outputs and the runner's reply."""
        model_dir = posixpath.join(workdir, f"model{index}")
        run_dir = posixpath.join(workdir, f"run{index}")
        run_command(client, f"mkdir {shlex.quote(model_dir)} {shlex.quote(run_dir)}")
        for path in files:
            yield from upload(client, path, posixpath.join(model_dir, path.name), cancel)
        remote_outputs = posixpath.join(workdir, f"outputs{index}.npz")
        model = posixpath.join(model_dir, files[0].name)
        data = posixpath.join(workdir, DATA)
        request = outputs_request(config, model, data, remote_outputs, dataset)
        put_bytes(client, posixpath.join(run_dir, "request.json"), json.dumps(request).encode())
        command = [self.spec.python, "-u", posixpath.join(workdir, RUNNER_FILE), "request.json"]
        output = yield from run_wrapped(client, run_dir, command, config.timeout_s, cancel)
        reply = reply_from_lines(output.lines, output.exit_code, self.spec.address)
        return download_arrays(client, remote_outputs), reply


def _model_files(models: LabeledModels, scratch: Path) -> list[tuple[Path, ...]]:
    """Each model as files to upload: the ONNX file and its external weights (a model held in
    memory is written to `scratch` first)."""
    files = []
    for index, (label, model) in enumerate(models):
        if isinstance(model, onnx.ModelProto):
            model = save_onnx(model, scratch / f"model{index}" / "model.onnx")
        if not Path(model).is_file():
            raise TargetError(f"{label} model {model} does not exist")
        files.append(model_files(model))
    return files
