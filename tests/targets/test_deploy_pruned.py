"""Deploy's channel-pruned forms on the demo, on this machine: with labelled data they are
trained back towards the original before they are quantized, and measured like any form."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from compressor_gui.core.deploy import default_plan
from compressor_gui.core.jobs import run_job
from compressor_gui.core.model import ModelSource
from compressor_gui.targets.deploy import Timing, deploy_job
from compressor_gui.targets.local import LocalTarget

DEMO = Path(__file__).resolve().parents[2] / "resources" / "demo.onnx"


def test_channel_pruned_int8_form_is_recovered_by_distillation_and_measured(tmp_path) -> None:
    job = deploy_job(
        ModelSource(DEMO),
        LocalTarget(),
        tmp_path,
        dataclasses.replace(default_plan(), int8_form="u8u8"),  # faithful on every x86 CPU
        forms=["ort-int8-c50"],
        timing=Timing(rounds=1, runs=5, warmup=1),
        recovery_epochs=3,
    )
    result = run_job(job)
    original, pruned = result.row("ort-fp32"), result.row("ort-int8-c50")
    assert pruned.plan == "channels-50" and pruned.error == ""
    assert "pruned: " in pruned.note and "distilled: 3 epochs" in pruned.note
    assert pruned.size_bytes < original.size_bytes / 4  # half the channels, INT8
    # without recovery this plan scores 9.56% on the demo (benchmarks/distill.py); three
    # epochs of distillation bring most of it back
    assert pruned.top1 > 0.8
    chosen = result.row(result.recommendation.key)
    assert chosen.key == "ort-fp32" or 100 * (original.top1 - chosen.top1) <= 1.0
