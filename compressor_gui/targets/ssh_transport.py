"""SSH plumbing under every remote run, knowing nothing of what runs: an authenticated client
(host keys checked), short commands, hash-checked uploads, runs under a wrapper that cleans up
after itself (with an optional sampler beside the run), and a guarded workdir that outlives
single runs.

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
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import paramiko

from compressor_gui.core.errors import JobCancelled, TargetError
from compressor_gui.core.jobs import CancelToken, Job, Progress
from compressor_gui.core.model import atomic_path
from compressor_gui.targets.store import TargetSpec, get_password, known_hosts_file

CONNECT_TIMEOUT_S = 10.0
KEEPALIVE_S = 5
COMMAND_TIMEOUT_S = 30.0
CHUNK_BYTES = 256 * 1024
WORKDIR_PREFIX = "compressor-gui-bench."
STALE_UNSTARTED_MINUTES = 30
SAMPLER_MARK = "@@SAMPLER"
EXIT_MARK = "@@EXIT "

# Runs one command in $WD; prints its output, then the log of the sampler ($SAMPLER, a shell
# command run beside it, e.g. tegrastats) and the exit code. The EXIT trap removes $WD however
# the script ends; a reader on stdin notices a dropped link (EOF) and terminates the script,
# which kills the command and the sampler.
WRAPPER = r"""WD="$1"; LIMIT="$2"; shift 2
cd "$WD" || exit 97
echo $$ > "$WD/pid"
JOB=""; TS=""; WATCH=""
cleanup() { kill $JOB $TS $WATCH 2>/dev/null; rm -rf "$WD"; }
trap cleanup EXIT
trap 'exit 143' TERM HUP INT
exec 3<&0
(cat <&3 >/dev/null; kill $$) & WATCH=$!
if [ -n "$SAMPLER" ]; then sh -c "exec $SAMPLER" > "$WD/sampler.log" 2>&1 & TS=$!; fi
timeout -k 5 "$LIMIT" "$@" <&3 & JOB=$!
wait $JOB; RC=$?
[ -n "$TS" ] && kill $TS 2>/dev/null && wait $TS 2>/dev/null
echo "@@SAMPLER"; cat "$WD/sampler.log" 2>/dev/null
echo "@@EXIT $RC"
"""

# Holds a multi-run workdir (data and models uploaded once, outputs fetched between runs):
# makes it, prints its path, and removes it when our end closes stdin or the link drops. Each
# run goes under WRAPPER in a subfolder, which WRAPPER removes when that run ends.
GUARD = r"""WD=$(mktemp -d "$1/compressor-gui-bench.XXXXXX") || exit 1
echo $$ > "$WD/pid"
trap 'rm -rf "$WD"' EXIT
trap 'exit 143' TERM HUP INT
echo "$WD"
cat > /dev/null
"""


class WrappedOutput:
    """What the wrapper script printed: the command's lines, the sampler's lines, exit code."""

    def __init__(self, lines: list[str], sampler_lines: list[str], exit_code: int) -> None:
        self.lines, self.sampler_lines, self.exit_code = lines, sampler_lines, exit_code


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


@contextlib.contextmanager
def open_client(
    spec: TargetSpec,
    accept_host_key: str | None = None,
    password: str | None = None,
    timeout_s: float = CONNECT_TIMEOUT_S,
) -> Iterator[paramiko.SSHClient]:
    """An authenticated client (run folders of dropped links removed first); every failure
    becomes a TargetError saying what to do."""
    client = paramiko.SSHClient()
    client.load_system_host_keys()
    if known_hosts_file().exists():
        client.load_host_keys(str(known_hosts_file()))
    client.set_missing_host_key_policy(_AskPolicy(accept_host_key))
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
            timeout=timeout_s,
            banner_timeout=timeout_s,
            auth_timeout=timeout_s,
            channel_timeout=timeout_s,
        )
    except TargetError:  # an unknown host key, from _AskPolicy
        client.close()
        raise
    except (OSError, paramiko.SSHException, EOFError) as exc:
        client.close()
        raise _connect_error(spec, exc) from exc
    transport = client.get_transport()
    if transport is not None:
        transport.set_keepalive(KEEPALIVE_S)
    try:
        remove_stale_workdirs(client, spec.remote_tmp)
        yield client
    finally:
        client.close()


def _connect_error(spec: TargetSpec, exc: Exception) -> TargetError:
    """What a failed connect means for the user, and what to do about it."""
    if isinstance(exc, paramiko.BadHostKeyException):
        return TargetError(
            f"the host key of {exc.hostname} has CHANGED: it is now {fingerprint(exc.key)}, "
            f"known_hosts says {fingerprint(exc.expected_key)}. This can be an attack; if "
            f"the machine was reinstalled, remove its old line from {known_hosts_file()} "
            "or ~/.ssh/known_hosts"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        how = f"key {spec.key_file}" if spec.key_file else "the SSH agent / password"
        return TargetError(
            f"{spec.address} refused to log in with {how} ({exc}): check the user name "
            "and that the public key is in the remote ~/.ssh/authorized_keys"
        )
    return TargetError(f"cannot reach {spec.address}: {exc or type(exc).__name__}")


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
    sampler: str | None = None,
) -> Job[WrappedOutput]:
    """Run `command` in `workdir` under WRAPPER, streaming progress; never waits past timeout.
    `sampler`: a shell command run beside it until it ends, its lines returned apart."""
    with client.open_sftp() as sftp, sftp.open(posixpath.join(workdir, "wrapper.sh"), "w") as f:
        f.write(WRAPPER.encode())
    env = f"SAMPLER={shlex.quote(sampler)} " if sampler else ""
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
    sampled: list[str] = []
    exit_code: int | None = None
    in_sampler = False
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
                if text == SAMPLER_MARK:
                    in_sampler = True
                elif text.startswith(EXIT_MARK):
                    exit_code = int(text[len(EXIT_MARK) :])
                elif in_sampler:
                    sampled.append(text)
                else:
                    lines.append(text)
                    step = _progress_of(text)
                    if step is not None:
                        yield step
    finally:
        channel.close()
    if exit_code is None:
        raise TargetError(
            "the SSH link dropped during the remote run (no exit status came back); the "
            "target removes the run's files when it notices, else the next connect does"
        )
    if exit_code in (124, 137):  # exit codes of `timeout`
        raise TargetError(f"the remote run hit its time limit of {timeout_s:.0f} s: stopped")
    return WrappedOutput(lines, sampled, exit_code)


def put_bytes(client: paramiko.SSHClient, remote: str, data: bytes) -> None:
    """Write a small file on the target (runner code, a request)."""
    try:
        with client.open_sftp() as sftp:
            sftp.get_channel().settimeout(COMMAND_TIMEOUT_S)
            with sftp.open(remote, "w") as handle:
                handle.write(data)
    except (OSError, paramiko.SSHException) as exc:
        raise TargetError(f"cannot write {remote} on the target: {exc or 'link dropped'}") from exc


@contextlib.contextmanager
def guarded_workdir(client: paramiko.SSHClient, remote_tmp: str) -> Iterator[str]:
    """A remote workdir held by GUARD: removed when we leave, or by GUARD if the link drops."""
    command = f"sh -c {shlex.quote(GUARD)} guard {shlex.quote(remote_tmp)}"
    try:
        guard = client.get_transport().open_session(timeout=COMMAND_TIMEOUT_S)
        guard.settimeout(COMMAND_TIMEOUT_S)
        guard.exec_command(command)
        workdir = guard.makefile("r").readline().strip()
    except (OSError, paramiko.SSHException, AttributeError) as exc:
        raise TargetError(f"cannot start the remote run: {exc or 'link dropped'}") from exc
    if not workdir:
        error = guard.makefile_stderr("r").read().decode(errors="replace").strip()
        guard.close()
        raise TargetError(f"cannot make a folder in {remote_tmp} on the target: {error}")
    try:
        yield workdir
    finally:
        best_effort_remove(client, workdir)
        guard.close()


def download_arrays(client: paramiko.SSHClient, remote: str) -> list[np.ndarray]:
    """The runner's outputs npz (output_0, output_1, ...) as a list in output order."""
    with tempfile.TemporaryDirectory(prefix="compressor-gui-outputs-") as scratch:
        local = Path(scratch) / "outputs.npz"
        try:
            with client.open_sftp() as sftp:
                sftp.get_channel().settimeout(COMMAND_TIMEOUT_S)
                sftp.get(remote, str(local))
        except (OSError, paramiko.SSHException) as exc:
            raise TargetError(f"fetching the outputs failed: {exc or 'link dropped'}") from exc
        with np.load(local, allow_pickle=False) as saved:
            names = sorted(saved.files, key=lambda name: int(name.rpartition("_")[2]))
            return [saved[name] for name in names]


def _progress_of(text: str) -> Progress | None:
    if not text.startswith('{"type": "progress"'):
        return None
    with contextlib.suppress(ValueError, KeyError):
        message = json.loads(text)
        return Progress(message["done"], message["total"], message["message"])
    return None


def remove_stale_workdirs(client: paramiko.SSHClient, remote_tmp: str) -> None:
    """Remove run folders left by dropped links: dead wrapper pid, or never started and old."""
    base = shlex.quote(remote_tmp)
    script = (
        f'for d in {base}/{WORKDIR_PREFIX}*; do [ -d "$d" ] || continue; '
        'if [ -f "$d/pid" ]; then kill -0 "$(cat "$d/pid")" 2>/dev/null || rm -rf "$d"; '
        f'elif [ -n "$(find "$d" -maxdepth 0 -mmin +{STALE_UNSTARTED_MINUTES})" ]; '
        'then rm -rf "$d"; fi; done; true'
    )
    run_command(client, script)


def best_effort_remove(client: paramiko.SSHClient, workdir: str) -> None:
    """Remove the run folder if the link still works; otherwise the next connect will."""
    with contextlib.suppress(TargetError):
        run_command(client, f"rm -rf {shlex.quote(workdir)}", timeout_s=5)
