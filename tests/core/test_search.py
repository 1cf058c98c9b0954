"""Automatic plan: the exact knapsack, budgets, repair and the size/accuracy front."""

from __future__ import annotations

import numpy as np
import pytest

from compressor_gui.core import search
from compressor_gui.core.data import dataset_from_arrays
from compressor_gui.core.drop_model import DropModel
from compressor_gui.core.errors import CompressorError
from compressor_gui.core.jobs import run_job
from compressor_gui.core.model import load_model
from compressor_gui.core.sensitivity import SensitivityPoint, SensitivityTable


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSOR_GUI_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def demo():
    loaded = load_model("resources/demo.onnx")
    data = np.load("resources/demo_eval.npz")
    return loaded, dataset_from_arrays(
        {"x": data["x"][:32], "y": data["y"][:32]}, loaded.onnx_model
    )


def test_knapsack_finds_the_optimum_greedy_misses():
    # Greedy by cost per byte takes group 0's cheap small step first and then cannot afford
    # group 1's big free step; the exact answer takes the big step.
    costs = [[0.0, 0.1, 5.0], [0.0, 0.0]]
    sizes = [[10.0, 9.0, 0.0], [10.0, 1.0]]
    assert search.knapsack(costs, sizes, 11.1) == [0, 1]
    assert search.knapsack(costs, sizes, 1.5) == [2, 1]
    assert search.knapsack(costs, sizes, 0.5) is None


def test_size_budget_is_met_by_the_prediction(demo):
    loaded, dataset = demo
    result = run_job(
        search.autoplan_job(
            loaded,
            dataset,
            search.Budget(size_ratio=1 / 6),
            verification="simulated",
            front_points=1,
        )
    )
    assert result.chosen.predicted_size_bytes <= result.original_size_bytes / 6
    labels = [c.label for c in result.candidates]
    assert "uniform INT8" in labels and "uniform INT4" in labels
    assert result.pareto and all(c in result.candidates for c in result.pareto)


def test_max_drop_plan_is_measured_within_the_limit_or_repaired(demo):
    loaded, dataset = demo
    result = run_job(
        search.autoplan_job(
            loaded, dataset, search.Budget(max_drop=1.0), verification="simulated", front_points=0
        )
    )
    assert result.chosen.measured_drop <= 1.0 or any("repair" in n for n in result.notes)
    assert result.chosen.predicted_size_bytes < result.original_size_bytes / 3


def test_impossible_budget_is_explained(demo):
    loaded, dataset = demo
    job = search.autoplan_job(
        loaded, dataset, search.Budget(size_ratio=0.001), verification="simulated"
    )
    with pytest.raises(CompressorError, match="no plan fits"):
        run_job(job)


def test_a_budget_needs_a_limit():
    with pytest.raises(CompressorError, match="give a budget"):
        search.Budget()


def test_real_verification_holds_the_written_file_to_the_size_budget(demo):
    loaded, dataset = demo
    result = run_job(
        search.autoplan_job(loaded, dataset, search.Budget(size_ratio=1 / 6), front_points=0)
    )
    chosen = result.chosen
    assert chosen.verification == "real"
    assert chosen.measured_size_bytes <= loaded.file_size_bytes / 6


def test_a_plan_over_the_drop_at_a_fixed_size_is_solved_again_without_its_options():
    # Two layers, each FP32 (size 10) or compressed (size 4). The sweep says compressing
    # layer a is nearly free, but together with the rest it measures badly; at a size that
    # allows one compressed layer (14.5), the repair must learn that and compress b instead.
    fp32, int4 = search.LayerSetting(), search.LayerSetting(bits=4)
    choices = search._Choices(
        layers=("a", "b"),
        settings=((fp32, int4), (fp32, int4)),
        sizes=((10.0, 4.0), (10.0, 4.0)),
        costs=((0.0, 0.001), (0.0, 0.002)),
        fixed_size_bytes=0,
    )
    measured_drop = {"a": 0.5, "b": 0.0}  # what building each plan really shows
    built = []

    def build(label, plan, predicted):
        (layer,) = plan.layers
        built.append(layer)
        return search.Candidate(label, plan, 14, predicted, 1.0, measured_drop[layer], None, "r")

    notes = []
    budget = search.Budget(max_drop=0.0)
    drops = DropModel(log_noise=(-4.0, -1.0), drops=(0.0, 10.0))
    chosen = search._choose_and_repair(
        choices, drops, budget, 14.5, build, notes, file_budget=False
    )
    assert built == ["a", "b"]
    assert chosen.plan.layers == {"b": int4} and chosen.label == "auto (repair 1)"
    assert "costs of the options it chose scaled" in notes[0]


def test_drop_model_adds_noise_and_learns_from_measured_plans():
    table = SensitivityTable(
        "m",
        "d",
        "top1",
        1.0,
        ("a",),
        ("int8", "int2"),
        (
            SensitivityPoint("a", "int8", 40.0, 1e-4, "top1", 1.0, 0.0, 40.0),
            SensitivityPoint("a", "int2", 10.0, 0.1, "top1", 0.9, 10.0, 10.0),
        ),
    )
    sweep_only = DropModel.fit(table)
    assert sweep_only.drop(1e-4) == 0.0 and sweep_only.drop(0.1) == 10.0
    assert sweep_only.drop(1e-3) < sweep_only.drop(1e-2) < 10.0  # monotone in between
    assert 1e-4 <= sweep_only.noise_for(1.0) < 1e-3
    # a plan of 8 layers at noise 1e-3 measured 5 points lost: the curve must follow it
    corrected = DropModel.fit(table, [(1e-3, 5.0, 8)])
    assert corrected.drop(1e-3) >= 4.0 and corrected.noise_for(1.0) < sweep_only.noise_for(1.0)


def test_recovery_chooses_a_smaller_distilled_plan_only_when_it_meets_the_budget():
    """The plan chosen without recovery, then the same plan and a smaller front plan each
    distilled: under a drop limit the smallest one measured within it wins; under a size
    budget alone the most accurate one whose file fits; nothing fitting keeps the first."""

    def made(label, size, drop, file_bytes, recovered_from=None):
        plan = search.CompressionPlan(distill_epochs=5 if recovered_from else 0)
        return search.Candidate(
            label, plan, size, 0.0, 1 - drop / 100, drop, file_bytes, "real", recovered_from
        )

    auto = made("auto", 100, 0.8, 120)
    front = [made("front 1", 150, 0.1, 170), made("front 2", 60, 9.0, 80)]
    assert [c.label for c in search._to_recover([auto, *front], auto)] == ["auto", "front 2"]
    auto_kd = made("auto + distill 5 epochs", 100, 0.2, 120, "auto")
    small_kd = made("front 2 + distill 5 epochs", 60, 0.6, 80, "front 2")
    measured = [auto, auto_kd, small_kd]
    notes = []
    drop_limit = search.Budget(max_drop=1.0)
    assert search._best_within(drop_limit, None, measured, notes) is small_kd
    assert "chosen with recovery: front 2 + distill 5 epochs" in notes[0]
    size_only = search.Budget(size_ratio=0.5)
    assert search._best_within(size_only, 125, measured, []) is auto_kd
    assert search._best_within(search.Budget(max_drop=0.1), None, measured, []) is auto
