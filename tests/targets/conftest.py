"""A real OpenSSH server on 127.0.0.1 (this machine is the "remote"), a fake Jetson on it, and
tiny generated models."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from compressor_gui.targets.store import TargetSpec
from tests.modelgen import conv

REPO = Path(__file__).resolve().parents[2]
JETSON_FIXTURES = REPO / ".." / "shared" / "fixtures" / "jetson"
SSHD = "/usr/sbin/sshd"


@dataclass
class SshServer:
    port: int
    host_key_pub: Path
    user_key: Path
    process: subprocess.Popen
    root: Path

    def spec(self, name: str = "box", **overrides) -> TargetSpec:
        values = dict(
            name=name,
            host="127.0.0.1",
            user=getpass.getuser(),
            port=self.port,
            key_file=str(self.user_key),
            use_agent=False,
            python=sys.executable,
            remote_tmp=str(self.root / "remote-tmp"),
        )
        values.update(overrides)
        return TargetSpec(**values)

    def known_hosts_line(self) -> str:
        key_type, blob = self.host_key_pub.read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {key_type} {blob}\n"

    def fingerprint(self) -> str:
        out = subprocess.run(
            ["ssh-keygen", "-lf", str(self.host_key_pub)], capture_output=True, text=True
        ).stdout
        return out.split()[1]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_sshd(root: Path, set_env: dict[str, str] | None = None) -> SshServer:
    """sshd -D with its own config, host key and authorized user key, under `root`."""
    if not Path(SSHD).exists():
        pytest.fail("openssh-server is missing: run `make system` (make test does it)")
    root.mkdir(parents=True, exist_ok=True)
    (root / "remote-tmp").mkdir(exist_ok=True)
    host_key, user_key = root / "host_ed25519", root / "user_ed25519"
    for key in (host_key, user_key):
        if not key.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
            )
    shutil.copy(f"{user_key}.pub", root / "authorized_keys")
    port = _free_port()
    lines = [
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {host_key}",
        f"PidFile {root}/sshd.pid",
        f"AuthorizedKeysFile {root}/authorized_keys",
        "StrictModes no",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        "UsePAM no",
        "Subsystem sftp internal-sftp",
        "LogLevel ERROR",
    ]
    if set_env:
        lines.append("SetEnv " + " ".join(f"{k}={v}" for k, v in set_env.items()))
    config = root / "sshd_config"
    config.write_text("\n".join(lines) + "\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    process = subprocess.Popen(
        [SSHD, "-D", "-f", str(config), "-E", str(root / "sshd.log")],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"sshd exited: {(root / 'sshd.log').read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    return SshServer(port, Path(f"{host_key}.pub"), user_key, process, root)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory) -> SshServer:
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


def make_fake_jetson(root: Path) -> Path:
    """A PATH dir with trtexec and tegrastats printing real board output, plus a fake sysroot.

    trtexec prints the log named in `root/trtexec_log` (fails if it says FAILED) and writes the
    real --exportTimes fixture; tegrastats replays the lines of `root/tegrastats_log`.
    """
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "trtexec").write_text(
        "#!/bin/sh\n"
        f'LOG=$(cat "{root}/trtexec_log")\n'
        'for a in "$@"; do case "$a" in --exportTimes=*) '
        f'cp "{JETSON_FIXTURES.resolve()}/trtexec_exportTimes.json" "${{a#*=}}";; esac; done\n'
        'cat "$LOG"\n'
        'grep -q "^&&&& FAILED" "$LOG" && exit 1\n'
        "exit 0\n"
    )
    (bin_dir / "tegrastats").write_text(
        "#!/bin/sh\n"
        f'LOG=$(cat "{root}/tegrastats_log")\n'
        'while :; do while IFS= read -r l; do echo "$l"; sleep 0.1; done < "$LOG"; done\n'
    )
    for tool in ("trtexec", "tegrastats"):
        (bin_dir / tool).chmod(0o755)
    sysroot = root / "sysroot"
    (sysroot / "etc").mkdir(parents=True)
    (sysroot / "proc" / "device-tree").mkdir(parents=True)
    (sysroot / "etc" / "nv_tegra_release").write_text(
        "# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic, EABI: aarch64, "
        "DATE: Fri Jul 19 23:24:25 UTC 2024\n# KERNEL_VARIANT: oot\n"
    )
    (sysroot / "proc" / "device-tree" / "model").write_bytes(
        b"NVIDIA Jetson Orin Nano Developer Kit\0"
    )
    set_fake_jetson_logs(root, "trtexec_trt100300_jetson_resnet50_fp16_summary.txt")
    return root


def set_fake_jetson_logs(
    root: Path, trtexec_log: str, tegrastats_log: str = "tegrastats_orin_nano_nx.txt"
) -> None:
    (root / "trtexec_log").write_text(str((JETSON_FIXTURES / trtexec_log).resolve()))
    (root / "tegrastats_log").write_text(str((JETSON_FIXTURES / tegrastats_log).resolve()))


@pytest.fixture(scope="session")
def fake_jetson(tmp_path_factory) -> tuple[SshServer, Path]:
    """An sshd whose sessions see the fake trtexec/tegrastats first in PATH."""
    base = tmp_path_factory.mktemp("jetson")
    fake = make_fake_jetson(base / "fake")
    env = {
        "PATH": f"{fake / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "JETSON_SYSROOT": str(fake / "sysroot"),
    }
    server = start_sshd(base / "sshd", env)
    yield server, fake
    server.stop()


@pytest.fixture
def config_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "config"
    monkeypatch.setenv("COMPRESSOR_GUI_CONFIG_DIR", str(path))
    return path


@pytest.fixture
def trusting(config_dir):
    """Write a server's host key to our known_hosts, as if the user had accepted it."""

    def trust(server: SshServer) -> None:
        config_dir.mkdir(parents=True, exist_ok=True)
        with (config_dir / "known_hosts").open("a") as handle:
            handle.write(server.known_hosts_line())

    return trust


@pytest.fixture(scope="session")
def conv_model(tmp_path_factory) -> Path:
    import onnx

    path = tmp_path_factory.mktemp("models") / "conv.onnx"
    onnx.save(conv(channels_in=3, channels_out=8, size=16), path)
    return path
