"""INT8 form choice: measured per target CPU family; flags and recipes name a form."""

from __future__ import annotations

import onnx
import pytest

from compressor_gui.core.compress import quality_warnings
from compressor_gui.core.data import demo_dataset
from compressor_gui.core.errors import PlanError
from compressor_gui.core.evaluate import EvalResult, evaluate, make_session
from compressor_gui.core.hardware import MachineInfo, local_machine
from compressor_gui.core.int8_forms import (
    FORMS,
    FormScore,
    choose_form,
    form_from_flags,
    preferred_forms,
)
from compressor_gui.core.plan import CompressionPlan, LayerSetting
from compressor_gui.core.quant_passes import LayerAction
from compressor_gui.core.quantize import quantize_model

AVX2 = MachineInfo("x86_64", "AVX2 box", ("avx2", "fma"), 2, 0)
VNNI = MachineInfo("x86_64", "VNNI box", ("avx2", "avx512f", "avx512_vnni"), 2, 0)
AMX = MachineInfo("x86_64", "AMX box", ("avx512f", "avx512_vnni", "amx_tile", "amx_int8"), 2, 0)
ARM = MachineInfo("aarch64", "ARM box", ("asimd", "asimddp"), 6, 0)


@pytest.mark.parametrize(
    ("machine", "first"),
    [(AVX2, "u8s8-rr"), (VNNI, "u8s8"), (AMX, "u8s8"), (ARM, "u8s8")],
)
def test_the_fastest_safe_form_is_tried_first_for_each_family(machine, first):
    assert preferred_forms(machine)[0].name == first
    assert len(preferred_forms(machine)) == 3


def _scores(table):
    measured = []

    def score(form):
        measured.append(form.name)
        agreement, cosine = table[form.name]
        return FormScore(form.name, agreement, cosine)

    return score, measured


@pytest.mark.parametrize("machine", [AVX2, VNNI, ARM])
def test_a_faithful_first_form_wins_after_measuring_two(machine):
    score, measured = _scores({f: (1.0, 0.9999) for f in FORMS})
    choice = choose_form(machine, score, measured_here=True)
    assert choice.form == preferred_forms(machine)[0]
    assert measured == [f.name for f in preferred_forms(machine)[:2]]


def test_a_form_that_loses_fidelity_is_passed_over():
    table = {"u8s8": (0.88, 0.89), "u8s8-rr": (0.97, 0.985), "u8u8": (1.0, 0.9999)}
    score, measured = _scores(table)
    choice = choose_form(VNNI, score, measured_here=True)
    assert choice.form.name == "u8u8" and measured == ["u8s8", "u8s8-rr", "u8u8"]
    assert "u8s8 lost fidelity" in choice.reason


def test_another_cpu_family_is_chosen_by_rule_without_measuring():
    score, measured = _scores({f: (1.0, 1.0) for f in FORMS})
    choice = choose_form(AVX2, score, measured_here=False)
    assert choice.form.name == "u8s8-rr" and measured == [] and "not measured" in choice.reason


def test_flags_name_forms():
    assert form_from_flags(None, False) == "auto"
    assert form_from_flags("s8", False) == "u8s8"
    assert form_from_flags(None, True) == "u8s8-rr"
    assert form_from_flags("u8", False) == "u8u8"
    with pytest.raises(PlanError):
        form_from_flags("u8", True)


def test_recipe_keeps_the_form_and_the_budget():
    plan = CompressionPlan(default=LayerSetting(bits=8), int8_form="u8u8", max_drop_pt=0.5)
    again = CompressionPlan.from_dict(plan.to_dict())
    assert (again.int8_form, again.max_drop_pt) == ("u8u8", 0.5)
    with pytest.raises(PlanError):
        CompressionPlan(int8_form="s4")


@pytest.fixture(scope="module")
def demo():
    from tests.conftest import RESOURCES

    model = onnx.load(str(RESOURCES / "demo.onnx"))
    evald = demo_dataset(model, "eval")
    reference, output = evaluate(make_session(model), evald)
    return model, demo_dataset(model, "calib").subset(64), evald, reference, output


def _top1(demo, form):
    model, calib, evald, _, output = demo
    plan = CompressionPlan(default=LayerSetting(bits=8), int8_form=form)
    result = quantize_model(model, plan, calib)
    return evaluate(make_session(result.model), evald, output)[0].top1, result


def test_auto_form_keeps_demo_accuracy_on_this_cpu(demo):
    top1, result = _top1(demo, "auto")
    assert top1 >= demo[3].top1 - 0.01
    assert local_machine().isa_class in result.int8_form


def test_plain_u8s8_saturates_where_the_cpu_has_no_vnni(demo):
    if not local_machine().u8s8_saturates:
        pytest.skip(f"{local_machine().isa_class}: VNNI/AMX/ARM kernels do not saturate")
    plain, _ = _top1(demo, "u8s8")
    safe, _ = _top1(demo, "u8s8-rr")
    assert plain < demo[3].top1 - 0.03 and safe >= demo[3].top1 - 0.01


def _evals(top1_before, top1_after, cosine):
    return EvalResult(450, top1_before, None, None, None), EvalResult(
        450, top1_after, None, top1_after, cosine, 30.0
    )


def test_a_drop_over_budget_is_warned_with_the_saturation_hint_on_avx2():
    plan = CompressionPlan(default=LayerSetting(bits=8))
    before, after = _evals(1.0, 0.88, 0.89)
    plain = (LayerAction("c", "Conv", 8, "INT8 static QDQ (..., u8 activations, s8 weights)"),)
    found = quality_warnings(plan, before, after, plain, AVX2)
    assert len(found) == 1 and "12.00 pt" in found[0] and "--reduce-range" in found[0]
    assert "--reduce-range" not in quality_warnings(plan, before, after, plain, VNNI)[0]


def test_a_result_within_budget_is_not_warned():
    plan = CompressionPlan(default=LayerSetting(bits=8), max_drop_pt=2.0)
    before, after = _evals(1.0, 0.985, 0.995)
    assert quality_warnings(plan, before, after, (), AVX2) == []
