"""The recommendation rule on made-up tables, and which forms a target is offered."""

from __future__ import annotations

from compressor_gui.core.deploy import (
    Budget,
    CandidateRow,
    candidate_specs,
    channel_pruned,
    default_plan,
    recommend,
)
from compressor_gui.core.plan import CompressionPlan, LayerSetting


def _row(key, p50, size=1000, top1=None, cosine=None, error="") -> CandidateRow:
    return CandidateRow(
        key, key, "ort", "fp32", "original", size, p50, top1=top1, cosine=cosine, error=error
    )


def test_the_fastest_form_within_the_top1_budget_wins() -> None:
    rows = [
        _row("ort-fp32", 10.0, top1=0.90),
        _row("ort-int8", 6.0, top1=0.885),  # -1.5 pt: over the 1 pt budget
        _row("ov-int8", 7.0, top1=0.895),
        _row("ov-fp32", 9.0, top1=0.90),
    ]
    chosen = recommend(rows, Budget(max_drop_pt=1.0))
    assert chosen.key == "ov-int8"
    assert "1.43x faster" in chosen.reason and "-0.50 pt" in chosen.reason


def test_a_form_measured_slower_than_the_original_never_wins() -> None:
    rows = [
        _row("ort-fp32", 10.0, size=4000, top1=0.9),
        _row("ort-int8", 10.5, size=1000, top1=0.9),  # smaller, equally good, but slower
        _row("ov-fp32", 12.0, top1=0.9),
    ]
    chosen = recommend(rows)
    assert chosen.key == "ort-fp32"
    assert "no other form ran faster" in chosen.reason


def test_ties_go_to_the_smaller_file() -> None:
    rows = [
        _row("ort-fp32", 10.0, size=4000, cosine=1.0),
        _row("ov-fp32", 5.0, size=4000, cosine=1.0),
        _row("ov-int8", 5.05, size=1000, cosine=0.999),  # within 2 %: a tie, 4x smaller
    ]
    chosen = recommend(rows)
    assert chosen.key == "ov-int8"
    assert "smaller file" in chosen.reason


def test_without_labels_the_cosine_budget_decides_and_unmeasured_quality_cannot_win() -> None:
    rows = [
        _row("ort-fp32", 10.0, cosine=1.0),
        _row("ort-int8", 4.0, cosine=0.98),  # under 0.99
        _row("trt-int8", 1.0),  # timed, quality never measured
        _row("ov-int8", 6.0, cosine=0.995),
        _row("ov-default", None, error="the runtime failed"),  # could not be timed
    ]
    assert recommend(rows).key == "ov-int8"
    assert recommend(rows, Budget(min_cosine=0.999)).key == "ort-fp32"


def test_openvino_and_pruned_forms_are_offered_only_where_they_apply() -> None:
    cpu_only = [("ort", "CPUExecutionProvider", "fp32")]
    keys = [s.key for s in candidate_specs(cpu_only, default_plan())]
    assert keys == ["ort-fp32", "ort-int8", "ort-int8-c25", "ort-int8-c50"]
    with_openvino = [*cpu_only, ("openvino", "CPU", "fp32"), ("openvino", "CPU", "bf16")]
    pruning = CompressionPlan(
        default=LayerSetting(bits=8, prune_ratio=0.5, prune_pattern="channel")
    )
    keys = [s.key for s in candidate_specs(with_openvino, pruning)]
    assert keys[:6] == ["ort-fp32", "ort-int8", "ov-fp32", "ov-default", "ov-bf16", "ov-int8"]
    assert {"ort-fp32-pruned", "ort-int8-pruned", "ov-int8-pruned"} <= set(keys)
    assert not any("-c25" in key or "-c50" in key for key in keys)  # the plan's pruning only
    jetson = [("ort", "CUDAExecutionProvider", "fp32"), ("trtexec", "GPU", "int8")]
    keys = [s.key for s in candidate_specs(jetson, default_plan())]
    assert keys[:5] == ["ort-fp32", "ort-int8", "ort-fp16", "trt-fp16", "trt-int8"]


def test_without_pruning_in_the_plan_its_int8_forms_are_also_tried_channel_pruned() -> None:
    options = [("ort", "CPUExecutionProvider", "fp32"), ("openvino", "CPU", "fp32")]
    plan = default_plan().with_layers(["/stem/conv/Conv"], bits=32)
    pruned = [s for s in candidate_specs(options, plan) if s.plan.startswith("channels-")]
    assert [(s.key, s.of) for s in pruned] == [
        ("ort-int8-c25", "ort-int8"),
        ("ov-int8-c25", "ov-int8"),
        ("ort-int8-c50", "ort-int8"),
        ("ov-int8-c50", "ov-int8"),
    ]
    assert pruned[1].label == "OpenVINO INT8 25% channels pruned"
    cut = channel_pruned(plan, 0.25)
    assert (cut.default.prune_ratio, cut.default.prune_pattern) == (0.25, "channel")
    assert cut.layers["/stem/conv/Conv"].prune_ratio == 0.0  # a layer kept float stays whole
