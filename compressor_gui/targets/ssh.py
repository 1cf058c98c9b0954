"""A saved SSH box: probe what it is, upload a model, run it remotely, clean up whatever happens.

Host keys are checked against the system known_hosts and our own; an unknown key is refused
with its fingerprint (`UnknownHostKeyError`) unless the caller passes that fingerprint back.
Runs and their clean-up live in ssh_transport.py. Evaluate uploads the data and the models
once, runs each model through the runner there and fetches every output, so the scores are
computed here by the same rule as locally (core/evaluate.py) from what the target computed.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import posixpath
import shlex
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnx
import paramiko

from compressor_gui.core.data import Dataset, save_npz
from compressor_gui.core.errors import TargetError
from compressor_gui.core.hardware import MachineInfo, machine_from_probe, probe_command
from compressor_gui.core.jobs import CancelToken, Job, Progress
from compressor_gui.core.model import atomic_path, model_files, save_onnx
from compressor_gui.targets import jetson
from compressor_gui.targets.base import (
    BenchConfig,
    BenchResult,
    ModelOutputs,
    RuntimeOption,
    Target,
)
from compressor_gui.targets.local import result_from_reply
from compressor_gui.targets.ssh_transport import (
    WORKDIR_PREFIX,
    WrappedOutput,
    best_effort_remove,
    download_arrays,
    guarded_workdir,
    put_bytes,
    remove_stale_workdirs,
    run_command,
    run_wrapped,
    tail,
    upload,
)
from compressor_gui.targets.store import TargetSpec, get_password, known_hosts_file

CONNECT_TIMEOUT_S = 10.0
KEEPALIVE_S = 5
RUNNER, DATA = "remote_runner.py", "data.npz"
EVAL_BATCH = 64  # samples per run, as core/evaluate.py's run_outputs feeds them locally
T = TypeVar("T")
TOOLS_PROBE = (
    'T=$(command -v tegrastats); [ -n "$T" ] && echo "tegrastats=$T"; '
    "T=$(command -v trtexec || ls /usr/src/tensorrt/bin/trtexec 2>/dev/null); "
    '[ -n "$T" ] && echo "trtexec=$T"; true'
)
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
            TOOLS_PROBE,
            SYSTEM_PROBE,
        ]
    )


class UnknownHostKeyError(TargetError):
    """The server's host key is in no known_hosts; the user must confirm its fingerprint."""

    def __init__(self, host: str, key_type: str, fingerprint: str) -> None:
        self.host, self.key_type, self.fingerprint = host, key_type, fingerprint
        super().__init__(
            f"{host} presented an unknown {key_type} host key {fingerprint}. Check it on the "
            f"machine (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub) and, if it matches, "
            f"accept it (CLI: --accept-host-key {fingerprint})"
        )


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint, as `ssh-keygen -l` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _AskPolicy(paramiko.MissingHostKeyPolicy):
    """Accept a new host key only when the user already confirmed this exact fingerprint."""

    def __init__(self, accepted: str | None) -> None:
        self.accepted = accepted

    def missing_host_key(self, client, hostname, key) -> None:
        found = fingerprint(key)
        if self.accepted != found:
            raise UnknownHostKeyError(hostname, key.get_name(), found)
        path = known_hosts_file()
        keys = paramiko.HostKeys()
        if path.exists():
            keys.load(str(path))
        keys.add(hostname, key.get_name(), key)
        with atomic_path(path) as tmp:
            keys.save(str(tmp))
        client.get_host_keys().add(hostname, key.get_name(), key)


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

    @contextlib.contextmanager
    def connect(self) -> Iterator[paramiko.SSHClient]:
        """An authenticated client; every failure becomes a TargetError saying what to do."""
        spec = self.spec
        client = paramiko.SSHClient()
        client.load_system_host_keys()
        if known_hosts_file().exists():
            client.load_host_keys(str(known_hosts_file()))
        client.set_missing_host_key_policy(_AskPolicy(self.accept_host_key))
        password = self._password
        if password is None and spec.password_in_keyring:
            password = get_password(spec)
        try:
            client.connect(
                spec.host,
                port=spec.port,
                username=spec.user,
                key_filename=spec.key_file,
                allow_agent=spec.use_agent,
                look_for_keys=False,
                password=password,
                timeout=self.connect_timeout_s,
                banner_timeout=self.connect_timeout_s,
                auth_timeout=self.connect_timeout_s,
                channel_timeout=self.connect_timeout_s,
            )
        except TargetError:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise TargetError(
                f"the host key of {exc.hostname} has CHANGED: it is now {fingerprint(exc.key)}, "
                f"known_hosts says {fingerprint(exc.expected_key)}. This can be an attack; if "
                f"the machine was reinstalled, remove its old line from {known_hosts_file()} "
                "or ~/.ssh/known_hosts"
            ) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            how = f"key {spec.key_file}" if spec.key_file else "the SSH agent / password"
            raise TargetError(
                f"{spec.address} refused to log in with {how} ({exc}): check the user name "
                "and that the public key is in the remote ~/.ssh/authorized_keys"
            ) from exc
        except (OSError, paramiko.SSHException, EOFError) as exc:
            client.close()
            raise TargetError(f"cannot reach {spec.address}: {exc or type(exc).__name__}") from exc
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(KEEPALIVE_S)
        try:
            remove_stale_workdirs(client, spec.remote_tmp)
            yield client
        finally:
            client.close()

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
            found = run_command(client, TOOLS_PROBE).splitlines()
            tegrastats = next((t[11:] for t in found if t.startswith("tegrastats=")), None)
            trtexec = next((t[8:] for t in found if t.startswith("trtexec=")), None)
            workdir = run_command(
                client,
                f"mktemp -d {shlex.quote(self.spec.remote_tmp)}/{WORKDIR_PREFIX}XXXXXX",
            ).strip()
            try:
                remote_model = posixpath.join(workdir, model_path.name)
                for path in model_files(model_path):  # external weights, an IR's .bin
                    yield from upload(client, path, posixpath.join(workdir, path.name), cancel)
                if config.runtime == "trtexec":
                    command = jetson.trtexec_command(model_path, remote_model, trtexec, config)
                else:
                    command = self._runner_command(client, workdir, remote_model, config)
                output = yield from run_wrapped(
                    client, workdir, command, config.timeout_s, cancel, tegrastats
                )
            finally:
                best_effort_remove(client, workdir)
        result = self._parse(model_path, config, output)
        return _with_tegrastats(result, output.tegrastats_lines)

    def _runner_command(
        self, client: paramiko.SSHClient, workdir: str, remote_model: str, config: BenchConfig
    ) -> list[str]:
        request = {**config.to_dict(), "model": remote_model, "fidelity_data": None}
        put_bytes(client, posixpath.join(workdir, "remote_runner.py"), _runner_code())
        put_bytes(client, posixpath.join(workdir, "request.json"), json.dumps(request).encode())
        return [self.spec.python, "-u", "remote_runner.py", "request.json"]

    def _parse(self, model_path: Path, config: BenchConfig, output: WrappedOutput) -> BenchResult:
        if config.runtime == "trtexec":
            return jetson.result_from_trtexec(self.name, model_path, config, output)
        reply = self._reply(output)
        result = result_from_reply(self.name, model_path, config, reply)
        return replace(result, raw_log="\n".join(output.lines))

    def _reply(self, output: WrappedOutput) -> dict[str, Any]:
        """The runner's result message, or a TargetError quoting its error (or last lines)."""
        reply = None
        errors = []
        for line in output.lines:
            if not line.startswith("{"):
                continue
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if message.get("type") == "result":
                    reply = message
                elif message.get("type") == "error":
                    errors.append(message["message"])
        if reply is None:
            detail = "; ".join(errors) or tail(output.lines)
            raise TargetError(
                f"the remote run on {self.spec.address} failed (exit {output.exit_code}): {detail}"
            )
        return reply

    def model_outputs(
        self,
        models: Sequence[tuple[str, onnx.ModelProto | Path]],
        dataset: Dataset,
        config: BenchConfig | None = None,
        cancel: CancelToken | None = None,
    ) -> Job[ModelOutputs]:
        """Upload the data and models once, run each through the runner there, fetch every
        output; the workdir goes when we finish, fail or cancel, or when the link drops."""
        config = config or BenchConfig()
        if config.runtime == "trtexec":
            raise TargetError("trtexec returns no outputs: evaluate with ort on this target")
        yield Progress(0, 1, f"connecting to {self.spec.address}")
        with tempfile.TemporaryDirectory(prefix="compressor-gui-eval-") as scratch:
            local_files = _model_files(models, Path(scratch))
            data_file = save_npz(Path(scratch) / "data.npz", dataset.inputs)
            with self.connect() as client:
                machine = machine_from_probe(run_command(client, probe_command(self.spec.python)))
                with guarded_workdir(client, self.spec.remote_tmp) as workdir:
                    put_bytes(client, posixpath.join(workdir, RUNNER), _runner_code())
                    yield from upload(client, data_file, posixpath.join(workdir, DATA), cancel)
                    runs = []
                    for index, (label, _) in enumerate(models):
                        one = self._run_one(
                            client, workdir, index, local_files[index], dataset, config, cancel
                        )
                        runs.append((yield from _scaled(one, index, len(models), label)))
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
        cancel: CancelToken | None,
    ) -> Job[tuple[list[np.ndarray], dict[str, Any]]]:
        """Upload one model, run it on the uploaded data in its own subfolder (which the
        wrapper removes when the run ends), fetch its outputs and the runner's reply."""
        model_dir = posixpath.join(workdir, f"model{index}")
        run_dir = posixpath.join(workdir, f"run{index}")
        run_command(client, f"mkdir {shlex.quote(model_dir)} {shlex.quote(run_dir)}")
        for path in files:
            yield from upload(client, path, posixpath.join(model_dir, path.name), cancel)
        remote_outputs = posixpath.join(workdir, f"outputs{index}.npz")
        request = {
            **config.to_dict(),
            "model": posixpath.join(model_dir, files[0].name),
            "fidelity_data": posixpath.join(workdir, DATA),
            "outputs_path": remote_outputs,
            "outputs_only": True,
            "forms": dict(dataset.forms),
            "feed_step": dataset.feed_step(EVAL_BATCH),
        }
        put_bytes(client, posixpath.join(run_dir, "request.json"), json.dumps(request).encode())
        command = [self.spec.python, "-u", posixpath.join(workdir, RUNNER), "request.json"]
        output = yield from run_wrapped(client, run_dir, command, config.timeout_s, cancel, None)
        reply = self._reply(output)
        return download_arrays(client, remote_outputs), reply


def _runner_code() -> bytes:
    return resources.files("compressor_gui.targets").joinpath("remote_runner.py").read_bytes()


def _model_files(
    models: Sequence[tuple[str, onnx.ModelProto | Path]], scratch: Path
) -> list[tuple[Path, ...]]:
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


def _scaled(job: Job[T], index: int, count: int, label: str) -> Job[T]:
    """Pass on a sub-job's progress as part `index` of `count`, labelled; return its result."""
    while True:
        try:
            step = next(job)
        except StopIteration as stop:
            return stop.value
        yield Progress(index + step.fraction, count, f"{label}: {step.message}")


def _with_tegrastats(result: BenchResult, lines: list[str]) -> BenchResult:
    summary = jetson.summarize_tegrastats(lines)
    if summary is None:
        return result
    return replace(
        result,
        power_mw=summary.power_mw,
        temperatures_c=summary.temperatures_c,
        gpu_load_percent=summary.gpu_load_percent,
        cpu_load_percent=summary.cpu_load_percent,
        ram_used_bytes=summary.ram_used_bytes,
        notes=(*result.notes, f"tegrastats: {summary.samples} samples at 200 ms"),
    )
