"""Evaluate on a target: the real sshd on 127.0.0.1 runs the demo with its own onnxruntime;
the scores are computed here by the same rule as a local evaluation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from compressor_gui.core.data import RANDOM_SOURCE, demo_dataset, random_dataset
from compressor_gui.core.errors import TargetError
from compressor_gui.core.evaluate import score
from compressor_gui.core.hardware import local_machine
from compressor_gui.core.jobs import run_job
from compressor_gui.targets.local import LocalTarget
from compressor_gui.targets.ssh import SshTarget
from compressor_gui.targets.store import save_target
from tests.modelgen import save_with_external_data
from tests.targets.conftest import start_sshd
from tests.targets.test_ssh import kill_sshd_tree, leftover_workdirs

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def nudged_demo(tmp_path_factory, demo_onnx) -> Path:
    """The demo with one conv's weights scaled by 1.05 (a stand-in for a compressed model),
    kept in external data so the weight file has to travel with it."""
    model = onnx.load(str(demo_onnx))
    weight = next(t for t in model.graph.initializer if t.name == "stem.conv.weight")
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.05, weight.name))
    return save_with_external_data(model, tmp_path_factory.mktemp("nudged") / "nudged.onnx")


def test_ssh_outputs_and_scores_equal_the_local_ones_and_leave_nothing(
    sshd, trusting, demo_onnx, nudged_demo
):
    trusting(sshd)
    dataset = demo_dataset(onnx.load(str(demo_onnx)))
    models = [("original", demo_onnx), ("compressed", nudged_demo)]
    local = run_job(LocalTarget().model_outputs(models, dataset))
    steps = []
    remote = run_job(SshTarget(sshd.spec()).model_outputs(models, dataset), steps.append)
    assert any(step.message == "compressed: uploading nudged.onnx.data" for step in steps)
    assert remote.runtime.startswith("onnxruntime ") and remote.machine == local.machine
    for here, there in zip(local.outputs, remote.outputs, strict=True):
        assert [o.shape for o in there] == [o.shape for o in here]
        np.testing.assert_allclose(there[0], here[0], rtol=1e-5, atol=1e-5)
    here_scores = [score(o, dataset) for o in local.outputs]
    there_scores = [score(o, dataset) for o in remote.outputs]
    assert [s.top1 for s in there_scores] == [s.top1 for s in here_scores]
    here_fidelity = score(local.outputs[1], dataset, local.outputs[0])
    there_fidelity = score(remote.outputs[1], dataset, remote.outputs[0])
    assert there_fidelity.agreement_top1 == here_fidelity.agreement_top1
    assert there_fidelity.cosine == pytest.approx(here_fidelity.cosine, abs=1e-6)
    assert here_fidelity.cosine < 1
    assert leftover_workdirs(sshd) == []


def test_ssh_machine_is_this_box(sshd, trusting):
    trusting(sshd)
    remote = SshTarget(sshd.spec()).machine()
    here = local_machine()
    assert remote.isa_class == here.isa_class and remote.cores == here.cores
    assert remote.runtimes["onnxruntime"] == here.runtimes["onnxruntime"]


def test_link_killed_mid_evaluation_is_a_target_error_and_the_guard_cleans_up(
    tmp_path, trusting, demo_onnx
):
    server = start_sshd(tmp_path / "doomed")
    trusting(server)
    # one sample per run (sample form): a few seconds of work to cut into
    dataset = random_dataset(onnx.load(str(demo_onnx)), count=6000)
    target = SshTarget(server.spec(), connect_timeout_s=3)
    job = target.model_outputs([("original", demo_onnx)], dataset)
    killed_at = None
    try:
        with pytest.raises(TargetError, match="dropped|link|failed"):
            for step in job:
                if "running samples" in step.message and killed_at is None:
                    assert step.fraction < 1 and len(leftover_workdirs(server)) == 1
                    killed_at = time.monotonic()
                    kill_sshd_tree(server.process.pid)
                    threading.Thread(target=server.process.wait, daemon=True).start()
        assert killed_at is not None and time.monotonic() - killed_at < 20
        deadline = time.monotonic() + 10
        while leftover_workdirs(server) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert leftover_workdirs(server) == []
    finally:
        server.stop()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "compressor_gui", "evaluate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )


def test_cli_evaluate_on_ssh_target_json_says_where_it_ran(
    sshd, trusting, config_dir, demo_onnx, nudged_demo
):
    trusting(sshd)
    save_target(sshd.spec())
    done = _cli(str(demo_onnx), str(nudged_demo), "--target", "box", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["target"] == "box" and report["data"].endswith("demo_eval.npz")
    assert report["machine"]["isa_class"] == local_machine().isa_class
    assert report["machine_summary"] == local_machine().summary
    original, compressed = report["results"]["original"], report["results"]["compressed"]
    assert original["samples"] == 450 and original["top1"] is not None
    assert 0 < compressed["cosine"] < 1 and compressed["agreement_top1"] is not None
    assert leftover_workdirs(sshd) == []


def test_cli_evaluate_without_data_says_fidelity_only(tmp_path, conv_model):
    done = _cli(str(conv_model), str(conv_model))
    assert done.returncode == 0, done.stderr
    assert f"data: {RANDOM_SOURCE}" in done.stdout
    assert "top-1 " not in done.stdout and "agreement with original" not in done.stdout
    assert "output cosine" in done.stdout and "ran on local: " in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["README.md"], "README.md"),
        (["{demo}", "--data", "{conv}"], "give an .npz file"),
        (["{demo}", "--target", "nowhere"], "targets add"),
    ],
)
def test_cli_evaluate_bad_input_is_one_line_and_exit_2(
    args, message, demo_onnx, conv_model, config_dir
):
    done = _cli(*(a.format(demo=demo_onnx, conv=conv_model) for a in args))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr
