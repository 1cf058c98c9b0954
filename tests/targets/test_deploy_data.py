"""Which data Deploy tunes on and which it scores the forms on."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from compressor_gui.core.deploy import default_plan
from compressor_gui.core.jobs import run_job
from compressor_gui.core.model import ModelSource
from compressor_gui.targets.deploy import Timing, deploy_job
from compressor_gui.targets.local import LocalTarget

RESOURCES = Path(__file__).resolve().parents[2] / "resources"


def test_deploy_tunes_on_all_of_the_data_and_scores_on_the_eval_data(tmp_path) -> None:
    job = deploy_job(
        ModelSource(RESOURCES / "demo.onnx"),
        LocalTarget(),
        tmp_path,
        dataclasses.replace(default_plan(), int8_form="u8u8"),  # faithful on every x86 CPU
        RESOURCES / "demo_calib.npz",
        forms=["ort-int8"],
        timing=Timing(rounds=1, runs=2, warmup=1),
        eval_data=RESOURCES / "demo_eval.npz",
    )
    result = run_job(job)
    assert result.notes[0] == "data: tuned on 256 samples, measured on 450 others"
    assert Path(result.data_source).name == "demo_eval.npz"
    # the demo scores 100% on its held-out split in FP32 (README)
    assert result.row("ort-fp32").top1 == 1.0
    assert result.row("ort-int8").top1 >= 0.99
