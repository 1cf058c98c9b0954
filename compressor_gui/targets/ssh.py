"""A saved SSH box: probe what it is, upload a model, run it remotely, clean up whatever happens.

Host keys are checked against the system known_hosts and our own; an unknown key is refused
with its fingerprint (`UnknownHostKeyError`) unless the caller passes that fingerprint back.
Each run lives in `<remote_tmp>/compressor-gui-bench.XXXXXX`, driven by a wrapper shell script
that removes the folder when it ends, is killed, or sees its SSH stdin close (link dropped).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import posixpath
import shlex
import time
from collections.abc import Iterator
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import paramiko

from compressor_gui.core.errors import JobCancelled, TargetError
from compressor_gui.core.hardware import MachineInfo, machine_from_probe, probe_command
from compressor_gui.core.jobs import CancelToken, Job, Progress
from compressor_gui.core.model import atomic_path
from compressor_gui.targets import jetson
from compressor_gui.targets.base import BenchConfig, BenchResult, RuntimeOption, Target
from compressor_gui.targets.local import result_from_reply
from compressor_gui.targets.store import TargetSpec, get_password, known_hosts_file

CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 30.0
KEEPALIVE_S = 5
CHUNK_BYTES = 256 * 1024
WORKDIR_PREFIX = "compressor-gui-bench."
STALE_UNSTARTED_MINUTES = 30
TEGRASTATS_MARK = "@@TEGRASTATS"
EXIT_MARK = "@@EXIT "

# Runs one benchmark command in $WD; prints its output, then the tegrastats log and the exit
# code. The EXIT trap removes $WD however the script ends; a reader on stdin notices a dropped
# link (EOF) and terminates the script, which kills the command and the sampler.
WRAPPER = r"""WD="$1"; LIMIT="$2"; shift 2
cd "$WD" || exit 97
echo $$ > "$WD/pid"
JOB=""; TS=""; WATCH=""
cleanup() { kill $JOB $TS $WATCH 2>/dev/null; rm -rf "$WD"; }
trap cleanup EXIT
trap 'exit 143' TERM HUP INT
exec 3<&0
(cat <&3 >/dev/null; kill $$) & WATCH=$!
if [ -n "$TEGRASTATS" ]; then "$TEGRASTATS" --interval 200 > "$WD/tegrastats.log" 2>&1 & TS=$!; fi
timeout -k 5 "$LIMIT" "$@" <&3 & JOB=$!
wait $JOB; RC=$?
[ -n "$TS" ] && kill $TS 2>/dev/null && wait $TS 2>/dev/null
echo "@@TEGRASTATS"; cat "$WD/tegrastats.log" 2>/dev/null
echo "@@EXIT $RC"
"""

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
            _remove_stale_workdirs(client, spec)
            yield client
        finally:
            client.close()

    def describe(self) -> dict[str, Any]:
        with self.connect() as client:
            out = run_command(client, probe_script(self.spec.python))
        info: dict[str, Any] = {"name": self.name, "address": self.spec.address}
        for line in out.splitlines():
            key, sep, value = line.partition("=")
            if sep and value.strip():
                info[key.strip()] = value.strip()
        if "providers" in info:
            info["providers"] = info["providers"].split(",")
        if "l4t" in info:
            info["l4t_release"] = jetson.parse_l4t_release(info["l4t"])
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
                yield from upload(client, model_path, remote_model, cancel)
                if config.runtime == "trtexec":
                    command = jetson.trtexec_command(model_path, remote_model, trtexec, config)
                else:
                    command = self._runner_command(client, workdir, remote_model, config)
                output = yield from run_wrapped(
                    client, workdir, command, config.timeout_s, cancel, tegrastats
                )
            finally:
                _best_effort_remove(client, workdir)
        result = self._parse(model_path, config, output)
        return _with_tegrastats(result, output.tegrastats_lines)

    def _runner_command(
        self, client: paramiko.SSHClient, workdir: str, remote_model: str, config: BenchConfig
    ) -> list[str]:
        runner = resources.files("compressor_gui.targets").joinpath("remote_runner.py")
        request = {**config.to_dict(), "model": remote_model, "fidelity_data": None}
        with client.open_sftp() as sftp:
            sftp.get_channel().settimeout(COMMAND_TIMEOUT_S)
            with sftp.open(posixpath.join(workdir, "remote_runner.py"), "w") as handle:
                handle.write(runner.read_bytes())
            with sftp.open(posixpath.join(workdir, "request.json"), "w") as handle:
                handle.write(json.dumps(request).encode())
        return [self.spec.python, "-u", "remote_runner.py", "request.json"]

    def _parse(self, model_path: Path, config: BenchConfig, output: WrappedOutput) -> BenchResult:
        if config.runtime == "trtexec":
            return jetson.result_from_trtexec(self.name, model_path, config, output)
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
            detail = "; ".join(errors) or _tail(output.lines)
            raise TargetError(
                f"the remote run on {self.spec.address} failed (exit {output.exit_code}): {detail}"
            )
        result = result_from_reply(self.name, model_path, config, reply)
        return replace(result, raw_log="\n".join(output.lines))


class WrappedOutput:
    """What the wrapper script printed: the command's lines, tegrastats lines, exit code."""

    def __init__(self, lines: list[str], tegrastats_lines: list[str], exit_code: int) -> None:
        self.lines, self.tegrastats_lines, self.exit_code = lines, tegrastats_lines, exit_code


def run_command(
    client: paramiko.SSHClient, command: str, timeout_s: float = COMMAND_TIMEOUT_S
) -> str:
    """Run a short command; its stdout, or a TargetError with its stderr."""
    try:
        _, stdout, stderr = client.exec_command(command, timeout=timeout_s)
        out = stdout.read().decode(errors="replace")
        err = stderr.read().decode(errors="replace")
        code = stdout.channel.recv_exit_status()
    except (TimeoutError, OSError, paramiko.SSHException) as exc:
        raise TargetError(f"the SSH link failed during a command: {exc or 'timed out'}") from exc
    if code != 0:
        raise TargetError(f"remote command failed (exit {code}): {err.strip() or out.strip()}")
    return out


def upload(
    client: paramiko.SSHClient, local: Path, remote: str, cancel: CancelToken | None
) -> Job[str]:
    """Copy a file by SFTP in chunks (progress, cancel), then compare SHA-256 on both sides."""
    size = local.stat().st_size
    digest = hashlib.sha256()
    sent = 0
    try:
        with client.open_sftp() as sftp:
            sftp.get_channel().settimeout(COMMAND_TIMEOUT_S)
            with local.open("rb") as source, sftp.open(remote, "wb") as target:
                target.set_pipelined(True)
                while chunk := source.read(CHUNK_BYTES):
                    if cancel is not None:
                        cancel.raise_if_cancelled()
                    target.write(chunk)
                    digest.update(chunk)
                    sent += len(chunk)
                    yield Progress(sent, size, f"uploading {local.name}")
    except (OSError, paramiko.SSHException) as exc:
        raise TargetError(f"upload of {local.name} failed: {exc or 'link dropped'}") from exc
    remote_hash = run_command(client, f"sha256sum {shlex.quote(remote)}").split()[0]
    if remote_hash != digest.hexdigest():
        raise TargetError(f"{local.name} arrived damaged (SHA-256 differs): try again")
    return remote


def run_wrapped(
    client: paramiko.SSHClient,
    workdir: str,
    command: list[str],
    timeout_s: float,
    cancel: CancelToken | None,
    tegrastats: str | None,
) -> Job[WrappedOutput]:
    """Run `command` in `workdir` under WRAPPER, streaming progress; never waits past timeout."""
    with client.open_sftp() as sftp, sftp.open(posixpath.join(workdir, "wrapper.sh"), "w") as f:
        f.write(WRAPPER.encode())
    env = f"TEGRASTATS={shlex.quote(tegrastats)} " if tegrastats else ""
    line = " ".join(
        [env + "sh", shlex.quote(posixpath.join(workdir, "wrapper.sh")), shlex.quote(workdir)]
        + [str(int(timeout_s)), *map(shlex.quote, command)]
    )
    transport = client.get_transport()
    try:
        channel = transport.open_session(timeout=COMMAND_TIMEOUT_S)
        channel.exec_command(line)
    except (OSError, paramiko.SSHException, AttributeError) as exc:
        raise TargetError(f"cannot start the remote run: {exc or 'link dropped'}") from exc
    deadline = time.monotonic() + timeout_s + 15
    buffer = b""
    lines: list[str] = []
    tegra: list[str] = []
    exit_code: int | None = None
    in_tegra = False
    try:
        while True:
            if cancel is not None and cancel.cancelled:
                raise JobCancelled("benchmark cancelled by the user")
            if time.monotonic() > deadline:
                raise TargetError(f"the remote run took longer than {timeout_s:.0f} s: stopped")
            if channel.recv_ready():
                data = channel.recv(65536)
            elif channel.closed or channel.eof_received or not transport.is_active():
                data = b""
            else:
                time.sleep(0.05)
                continue
            if not data:
                break
            buffer += data
            *complete, buffer = buffer.split(b"\n")
            for raw in complete:
                text = raw.decode(errors="replace").rstrip("\r")
                if text == TEGRASTATS_MARK:
                    in_tegra = True
                elif text.startswith(EXIT_MARK):
                    exit_code = int(text[len(EXIT_MARK) :])
                elif in_tegra:
                    tegra.append(text)
                else:
                    lines.append(text)
                    step = _progress_of(text)
                    if step is not None:
                        yield step
    finally:
        channel.close()
    if exit_code is None:
        raise TargetError(
            "the SSH link dropped during the remote run (no exit status came back); "
            "its temp files are removed on the next connect"
        )
    if exit_code in (124, 137):  # exit codes of `timeout`
        raise TargetError(f"the remote run hit its time limit of {timeout_s:.0f} s: stopped")
    return WrappedOutput(lines, tegra, exit_code)


def _progress_of(text: str) -> Progress | None:
    if not text.startswith('{"type": "progress"'):
        return None
    with contextlib.suppress(ValueError, KeyError):
        message = json.loads(text)
        return Progress(message["done"], message["total"], message["message"])
    return None


def _remove_stale_workdirs(client: paramiko.SSHClient, spec: TargetSpec) -> None:
    """Remove run folders left by dropped links: dead wrapper pid, or never started and old."""
    base = shlex.quote(spec.remote_tmp)
    script = (
        f'for d in {base}/{WORKDIR_PREFIX}*; do [ -d "$d" ] || continue; '
        'if [ -f "$d/pid" ]; then kill -0 "$(cat "$d/pid")" 2>/dev/null || rm -rf "$d"; '
        f'elif [ -n "$(find "$d" -maxdepth 0 -mmin +{STALE_UNSTARTED_MINUTES})" ]; '
        'then rm -rf "$d"; fi; done; true'
    )
    run_command(client, script)


def _best_effort_remove(client: paramiko.SSHClient, workdir: str) -> None:
    """Remove the run folder if the link still works; otherwise the next connect will."""
    with contextlib.suppress(TargetError):
        run_command(client, f"rm -rf {shlex.quote(workdir)}", timeout_s=5)


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


def _tail(lines: list[str], count: int = 5) -> str:
    return " | ".join(line for line in lines[-count:] if line.strip()) or "no output"
