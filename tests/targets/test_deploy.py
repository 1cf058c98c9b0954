"""Deploy to SSH targets: the real sshd on 127.0.0.1 times and scores the forms with its own
runtime; the fake Jetson answers trtexec and tegrastats with captured board output."""

from __future__ import annotations

from compressor_gui.core.jobs import run_job
from compressor_gui.core.model import ModelSource
from compressor_gui.targets.deploy import Timing, deploy_job
from compressor_gui.targets.ssh import SshTarget
from tests.targets.conftest import set_fake_jetson_logs
from tests.targets.test_ssh import leftover_workdirs

QUICK = Timing(rounds=1, runs=5, warmup=1)


def test_deploy_over_ssh_times_and_scores_each_form_on_the_target(
    sshd, trusting, tmp_path, conv_model
):
    trusting(sshd)
    target = SshTarget(sshd.spec())
    job = deploy_job(ModelSource(conv_model), target, tmp_path, forms=["ort-int8"], timing=QUICK)
    result = run_job(job)
    rows = {row.key: row for row in result.rows}
    assert set(rows) == {"ort-fp32", "ort-int8"}
    for row in rows.values():
        assert row.p50_ms > 0 and row.error == ""
        assert row.top1 is None and row.cosine > 0.9  # random inputs: fidelity only
    assert rows["ort-int8"].sha256 != rows["ort-fp32"].sha256
    assert result.target == "box" and result.machine.cores > 0
    assert result.recommendation.key in rows
    assert leftover_workdirs(sshd) == []


def test_tensorrt_forms_are_timed_with_power_but_never_recommended(
    fake_jetson, trusting, tmp_path, conv_model
):
    server, fake = fake_jetson
    trusting(server)
    set_fake_jetson_logs(fake, "trtexec_trt100300_jetson_resnet50_fp16_summary.txt")
    target = SshTarget(server.spec())
    job = deploy_job(ModelSource(conv_model), target, tmp_path, forms=["trt-fp16"], timing=QUICK)
    result = run_job(job)
    trt = result.row("trt-fp16")
    assert trt.runtime == "trtexec" and trt.p50_ms > 0 and trt.power_mw > 0  # tegrastats
    assert trt.top1 is None and trt.cosine is None  # trtexec returns no outputs
    assert result.recommendation.key == "ort-fp32"
    assert any("TensorRT" in note for note in result.notes)
