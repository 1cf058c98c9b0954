"""Benchmarks on several targets at once: local, real sshd boxes on 127.0.0.1 and a fake
Jetson, one worker per machine, one row per target; a target whose link drops is one failed
row and the others still finish."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import onnx
import pytest

from compressor_gui.cli import main
from compressor_gui.core.data import load_dataset
from compressor_gui.core.errors import JobCancelled
from compressor_gui.core.jobs import CancelToken, run_job
from compressor_gui.targets.base import BenchConfig
from compressor_gui.targets.fanout import COLUMNS, Leg, bench_fanout_job, format_table
from compressor_gui.targets.local import LocalTarget
from compressor_gui.targets.ssh import SshTarget
from compressor_gui.targets.store import save_target
from tests.modelgen import conv_stack
from tests.report_pages import opened
from tests.targets.conftest import _free_port, set_fake_jetson_logs, start_sshd
from tests.targets.test_ssh import kill_sshd_tree, leftover_workdirs

QUICK = BenchConfig(warmup=2, runs=20, threads=1)


def test_a_dropped_link_is_one_failed_row_and_other_machines_run_alongside(
    sshd, fake_jetson, trusting, tmp_path
):
    jetson, fake = fake_jetson
    set_fake_jetson_logs(fake, "trtexec_trt100300_jetson_resnet50_fp16_summary.txt")
    doomed = start_sshd(tmp_path / "doomed")
    for server in (sshd, jetson, doomed):
        trusting(server)
    legs = [
        Leg(SshTarget(sshd.spec("box")), QUICK),
        Leg(SshTarget(jetson.spec("orin")), BenchConfig(runtime="trtexec", precision="fp16")),
        Leg(SshTarget(doomed.spec("doomed")), BenchConfig(warmup=0, duration_s=60, threads=1)),
        Leg(LocalTarget(), QUICK),
    ]
    arrived = []

    def watch(step):
        if step.payload is not None:
            arrived.append(step.payload.target)
        if step.message == "doomed conv.onnx: timing" and doomed.process.poll() is None:
            kill_sshd_tree(doomed.process.pid)
            threading.Thread(target=doomed.process.wait, daemon=True).start()

    classifier = tmp_path / "conv.onnx"  # ten logits, scored against labels
    onnx.save(conv_stack(), classifier)
    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    np.savez(data, x=rng.standard_normal((16, 8, 8, 8)).astype(np.float32), y=np.arange(16) % 10)
    dataset = load_dataset(data, onnx.load(classifier))
    job = bench_fanout_job(legs, [("conv.onnx", classifier)], dataset=dataset)
    rows = run_job(job, watch)

    assert [row.target for row in rows] == ["box", "orin", "doomed", "local"]
    assert [row.ok for row in rows] == [True, True, False, True]
    assert "dropped" in rows[2].error and rows[2].result is None
    # local runs on its own machine beside the SSH boxes (one 127.0.0.1 host, in turn)
    assert arrived.index("local") < arrived.index("doomed")
    box, orin, _, local = (row.result for row in rows)
    assert box.runs == 20 and local.runs == 20 and orin.runs == 40
    assert orin.power_mw["total"] > 0 and box.power_mw == {}
    cells = {row.target: dict(zip(COLUMNS, row.cells(), strict=True)) for row in rows}
    assert cells["orin"]["power W"] == f"{orin.power_mw['total'] / 1000:.2f}"
    assert cells["doomed"]["status"].startswith("failed: ") and cells["doomed"]["p50 ms"] == ""
    assert cells["local"]["p50 ms"] == f"{local.latency.p50_ms:.3f}"
    assert rows[0].machine and rows[3].machine
    # scored by each target's own runtime: the same CPU and runtime give the same top-1
    assert rows[0].quality.top1 == rows[3].quality.top1 and rows[0].quality.samples == 16
    assert rows[1].quality is None and "trtexec returns no outputs" in rows[1].note
    assert cells["box"]["top-1"] == f"{100 * rows[0].quality.top1:.2f}%"
    assert format_table(rows).splitlines()[0].split()[:3] == ["target", "model", "runtime"]
    assert leftover_workdirs(sshd) == []


def test_cli_bench_on_several_targets_reports_an_unreachable_one_and_exits_1(
    sshd, config_dir, trusting, conv_model, capsys, tmp_path
):
    trusting(sshd)
    save_target(sshd.spec("box"))
    save_target(sshd.spec("gone", port=_free_port()))
    data = tmp_path / "x.npz"
    np.savez(data, x=np.random.default_rng(0).standard_normal((4, 3, 16, 16)).astype(np.float32))
    argv = ["bench", str(conv_model), "--runs", "10", "--threads", "1", "--json"]
    targets = ["--target", "local", "--target", "box", "--target", "gone"]
    page = tmp_path / "fanout.html"
    code = main([*argv, "--data", str(data), *targets, "--report", str(page)])
    rows = json.loads(capsys.readouterr().out)
    assert code == 1
    assert [(r["target"], r["ok"]) for r in rows] == [
        ("local", True),
        ("box", True),
        ("gone", False),
    ]
    assert rows[2]["error"].startswith("cannot reach") and rows[2]["result"] is None
    assert rows[1]["result"]["runs"] == 10 and rows[1]["result"]["latency"]["p50_ms"] > 0
    assert rows[0]["quality"]["samples"] == rows[1]["quality"]["samples"] == 4
    shown, _ = opened(page)  # the report has every row, the failed one with its reason
    for row in rows[:2]:
        assert f"{row['result']['latency']['p50_ms']:.3f}" in shown.cells
    assert f"failed: {rows[2]['error']}" in shown.cells


def test_cancel_stops_every_worker_and_leaves_nothing_on_the_box(sshd, trusting, conv_model):
    trusting(sshd)
    endless = BenchConfig(warmup=0, duration_s=60, threads=1)
    legs = [Leg(SshTarget(sshd.spec("box")), endless), Leg(LocalTarget(), endless)]
    cancel = CancelToken()
    job = bench_fanout_job(legs, [("conv.onnx", conv_model)], cancel)
    begin = None
    with pytest.raises(JobCancelled):
        for step in job:
            if step.message.endswith(": timing") and begin is None:
                begin = time.monotonic()
                cancel.cancel()
    assert time.monotonic() - begin < 10
    assert leftover_workdirs(sshd) == []
