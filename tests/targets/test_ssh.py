"""SSH targets against a real sshd on 127.0.0.1: probe, remote benchmark, host keys, drops."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from compressor_gui.core.errors import JobCancelled, TargetError
from compressor_gui.core.jobs import CancelToken, run_job
from compressor_gui.targets.base import BenchConfig
from compressor_gui.targets.ssh import SshTarget, UnknownHostKeyError
from tests.targets.conftest import set_fake_jetson_logs, start_sshd


def kill_sshd_tree(pid: int) -> None:
    """SIGKILL the listener and every sshd process below it (sessions call setsid)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = (int(fields[1]), stat.parent.joinpath("comm"))
    doomed, changed = {pid}, True
    while changed:
        found = {p for p, (ppid, _) in parents.items() if ppid in doomed} - doomed
        found = {p for p in found if parents[p][1].read_text().startswith("sshd")}
        changed, doomed = bool(found), doomed | found
    for victim in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def leftover_workdirs(server) -> list:
    return list((server.root / "remote-tmp").glob("compressor-gui-bench.*"))


def test_describe_reports_os_python_and_onnxruntime(sshd, trusting):
    trusting(sshd)
    info = SshTarget(sshd.spec()).describe()
    assert info["arch"] and info["os"].startswith("Linux")
    assert info["python"].startswith("Python 3")
    assert "CPUExecutionProvider" in info["providers"]
    assert "l4t" not in info and "trtexec" not in info


def test_remote_onnxruntime_benchmark_runs_end_to_end(sshd, trusting, conv_model):
    trusting(sshd)
    steps = []
    job = SshTarget(sshd.spec()).benchmark(conv_model, BenchConfig(warmup=2, runs=30, threads=1))
    result = run_job(job, steps.append)
    assert result.target == "box" and result.runtime == "ort" and result.runs == 30
    assert 0 < result.latency.min_ms <= result.latency.p50_ms <= result.latency.max_ms
    assert result.session_create_ms > 0 and result.peak_memory_bytes > 0
    assert any(step.message.startswith("uploading") for step in steps)
    assert leftover_workdirs(sshd) == []


def test_unknown_host_key_is_refused_with_its_fingerprint(sshd, config_dir):
    with pytest.raises(UnknownHostKeyError) as caught:
        SshTarget(sshd.spec()).describe()
    assert caught.value.fingerprint == sshd.fingerprint()
    assert "--accept-host-key" in str(caught.value)
    assert not (config_dir / "known_hosts").exists()


def test_accepted_fingerprint_is_saved_and_trusted_next_time(sshd, config_dir):
    SshTarget(sshd.spec(), accept_host_key=sshd.fingerprint()).describe()
    assert f"[127.0.0.1]:{sshd.port}" in (config_dir / "known_hosts").read_text()
    SshTarget(sshd.spec()).describe()


def test_wrong_fingerprint_is_not_accepted(sshd, config_dir):
    with pytest.raises(UnknownHostKeyError):
        SshTarget(sshd.spec(), accept_host_key="SHA256:not-this-one").describe()


def test_changed_host_key_is_refused(sshd, config_dir, tmp_path):
    other = start_sshd(tmp_path / "other")  # a different host key
    try:
        config_dir.mkdir(parents=True)
        line = other.known_hosts_line().replace(str(other.port), str(sshd.port))
        (config_dir / "known_hosts").write_text(line)
        with pytest.raises(TargetError, match="CHANGED"):
            SshTarget(sshd.spec()).describe()
    finally:
        other.stop()


def test_wrong_user_key_is_refused_with_a_clear_message(sshd, trusting, tmp_path):
    import subprocess

    trusting(sshd)
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    with pytest.raises(TargetError, match="refused to log in"):
        SshTarget(sshd.spec(key_file=str(stranger))).describe()


def test_unreachable_port_fails_fast(sshd, config_dir):
    from tests.targets.conftest import _free_port

    begin = time.monotonic()
    with pytest.raises(TargetError, match="cannot reach"):
        SshTarget(sshd.spec(port=_free_port())).describe()
    assert time.monotonic() - begin < 5


def test_cancel_stops_the_remote_run_and_cleans_up(sshd, trusting, conv_model):
    trusting(sshd)
    cancel = CancelToken()
    config = BenchConfig(warmup=0, duration_s=60, threads=1)
    job = SshTarget(sshd.spec()).benchmark(conv_model, config, cancel)
    with pytest.raises(JobCancelled):
        for step in job:
            if step.message == "timing":
                cancel.cancel()
    deadline = time.monotonic() + 5
    while leftover_workdirs(sshd) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftover_workdirs(sshd) == []


def test_killed_sshd_gives_an_error_in_time_and_no_temp_files_after(tmp_path, trusting, conv_model):
    server = start_sshd(tmp_path / "doomed")
    trusting(server)
    config = BenchConfig(warmup=0, duration_s=60, threads=1, timeout_s=30)
    job = SshTarget(server.spec(), connect_timeout_s=3).benchmark(conv_model, config)
    begin = None
    with pytest.raises(TargetError, match="dropped|link"):
        for step in job:
            if step.message == "timing" and begin is None:
                assert len(leftover_workdirs(server)) == 1
                begin = time.monotonic()
                kill_sshd_tree(server.process.pid)
                threading.Thread(target=server.process.wait, daemon=True).start()
    assert time.monotonic() - begin < 20
    revived = start_sshd(tmp_path / "doomed")
    trusting(revived)
    try:
        with SshTarget(revived.spec()).connect():
            pass
        assert leftover_workdirs(revived) == []
    finally:
        revived.stop()


def test_fake_jetson_is_described_with_l4t_board_and_tools(fake_jetson, trusting):
    server, _ = fake_jetson
    trusting(server)
    info = SshTarget(server.spec()).describe()
    assert info["l4t_release"]["version"] == "36.3.0"
    assert info["board"] == "NVIDIA Jetson Orin Nano Developer Kit"
    assert info["trtexec"].endswith("/trtexec") and info["tegrastats"].endswith("/tegrastats")


def test_trtexec_on_fake_jetson_parses_latency_and_power(fake_jetson, trusting, conv_model):
    server, fake = fake_jetson
    trusting(server)
    set_fake_jetson_logs(fake, "trtexec_trt100300_jetson_resnet50_fp16_summary.txt")
    config = BenchConfig(runtime="trtexec", precision="fp16", runs=50)
    result = run_job(SshTarget(server.spec()).benchmark(conv_model, config))
    assert result.runtime == "trtexec" and result.runtime_version == "TensorRT 10.3.0"
    assert result.runs == 40  # records in the real --exportTimes fixture
    assert result.throughput_per_s == pytest.approx(318.007)
    assert result.power_mw["VDD_IN"] > 0 and result.power_mw["total"] == result.power_mw["VDD_IN"]
    assert result.temperatures_c["tj"] > 40
    assert leftover_workdirs(server) == []


def test_trtexec_failure_quotes_tensorrt_and_says_what_to_do(fake_jetson, trusting, conv_model):
    server, fake = fake_jetson
    trusting(server)
    set_fake_jetson_logs(fake, "trtexec_fail_trt100300_jetson_unknown_option.txt")
    config = BenchConfig(runtime="trtexec", precision="fp16", runs=5)
    with pytest.raises(TargetError, match="Unknown option: --workspace.*memPoolSize"):
        run_job(SshTarget(server.spec()).benchmark(conv_model, config))
    assert leftover_workdirs(server) == []
