"""Deploy on a detector with dynamic height and width: every form is timed and scored at the
user's input shape, never at dynamic dims taken as 1 (where this one does not even run); the
timed runs are fed a real sample of the data, as `bench --data` feeds."""

from __future__ import annotations

import numpy as np
import onnx

from compressor_gui.core.jobs import run_job
from compressor_gui.core.model import ModelSource
from compressor_gui.targets.deploy import Timing, deploy_job
from compressor_gui.targets.local import LocalTarget
from tests import modelgen


class WatchedTarget(LocalTarget):
    """This machine, noting the input shapes each timed run is fed at."""

    def __init__(self) -> None:
        self.timed_at: list[dict | None] = []
        self.fed: list[dict] = []

    def benchmark(self, model_path, config, cancel=None):
        self.timed_at.append(config.input_shapes)
        with np.load(config.feed_data) as feed:
            self.fed.append({name: feed[name] for name in feed.files})
        return (yield from super().benchmark(model_path, config, cancel))


def test_deploy_times_and_scores_at_the_given_input_shape(tmp_path):
    path = tmp_path / "detector.onnx"
    onnx.save(modelgen.dynamic_detector(), str(path))
    target = WatchedTarget()
    job = deploy_job(
        ModelSource(path, input_shapes=((1, 3, 64, 96),)),
        target,
        tmp_path / "forms",
        forms=["ort-fp32"],  # the reference alone: each form is timed by the same loop
        timing=Timing(rounds=1, runs=3, warmup=1),
        recovery_epochs=0,
    )
    result = run_job(job)
    assert target.timed_at == [{"images": [1, 3, 64, 96]}]
    for row in result.rows:
        assert row.error == "" and row.p50_ms > 0 and row.cosine > 0.9
    assert "input images 1x3x64x96" in result.measurement


def test_deploy_times_on_a_sample_of_the_data(tmp_path, demo_onnx):
    data = np.load(demo_onnx.with_name("demo_eval.npz"))
    target = WatchedTarget()
    job = deploy_job(
        ModelSource(demo_onnx),
        target,
        tmp_path / "forms",
        data=demo_onnx.with_name("demo_eval.npz"),
        forms=["ort-fp32"],
        timing=Timing(rounds=2, runs=3, warmup=1),
        recovery_epochs=0,
    )
    run_job(job)
    assert len(target.fed) == 2
    for fed in target.fed:
        [array] = fed.values()  # the demo's one input, by its name
        [sample] = array  # one sample, in the model's input layout
        assert any(np.array_equal(sample, x) for x in data["x"])
