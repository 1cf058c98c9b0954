"""Distillation and QAT on the demo model: recovery after channel pruning, pruned zeros kept,
the best checkpoint kept on cancel, soft targets without labels, and QAT weights equal to the
ones the quantizer writes. One torch thread, a few epochs on the demo's 256 training images;
accuracy is measured on the held-out eval split, which is never trained on."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from compressor_gui.core.compress import quality_warnings
from compressor_gui.core.data import demo_dataset
from compressor_gui.core.distill import distill_job, teacher_callable
from compressor_gui.core.distill_types import DistillOptions, validation_split
from compressor_gui.core.errors import CompressorError
from compressor_gui.core.evaluate import EvalResult, evaluate, make_session
from compressor_gui.core.hardware import local_machine
from compressor_gui.core.int8_forms import FORMS
from compressor_gui.core.inventory import build_inventory
from compressor_gui.core.jobs import CancelToken, run_job
from compressor_gui.core.model import load_model
from compressor_gui.core.plan import CompressionPlan, LayerSetting, load_recipe, save_recipe
from compressor_gui.core.prune import prune_channels, prune_unstructured
from compressor_gui.core.qat import attach_fake_quant
from compressor_gui.core.quantize import quantize_model
from compressor_gui.core.torch_graph import to_torch
from compressor_gui.core.trainer import UNLABELED, TorchTeacher, kd_loss

FAST = DistillOptions(epochs=3, threads=1)


@pytest.fixture(scope="module")
def teacher(demo_onnx) -> onnx.ModelProto:
    return onnx.load(demo_onnx)


@pytest.fixture(scope="module")
def half_channels(teacher) -> onnx.ModelProto:
    convs = [n.name for n in teacher.graph.node if n.op_type == "Conv"]
    return prune_channels(teacher, dict.fromkeys(convs, 0.5))[0]


@pytest.fixture(scope="module")
def train(teacher):
    return demo_dataset(teacher, "calib")


def _top1(model: onnx.ModelProto, teacher: onnx.ModelProto) -> float:
    return evaluate(make_session(model, threads=1), demo_dataset(teacher, "eval"))[0].top1


def test_three_epochs_of_kd_win_back_the_channel_pruned_demo(teacher, half_channels, train):
    before = _top1(half_channels, teacher)
    trained, report = run_job(distill_job(teacher, half_channels, train, FAST))
    after = _top1(trained, teacher)
    assert before < 0.2  # 50% of channels without recovery: near chance (10 classes)
    assert after >= before + 0.30
    assert [s.epoch for s in report.history] == [0, 1, 2, 3]
    assert report.train_samples + report.validation_samples == len(train)
    assert [n.name for n in trained.graph.node] == [n.name for n in half_channels.graph.node]


def test_pruned_zeros_stay_zero(teacher, train):
    convs = [n.name for n in teacher.graph.node if n.op_type == "Conv"]
    sparse, _ = prune_unstructured(teacher, dict.fromkeys(convs, 0.5))
    options = dataclasses.replace(FAST, epochs=1)
    trained, _ = run_job(distill_job(teacher, sparse, train, options))
    before = {t.name: numpy_helper.to_array(t) for t in sparse.graph.initializer}
    after = {t.name: numpy_helper.to_array(t) for t in trained.graph.initializer}
    for name in ("block1.conv1.weight", "dwsep.pointwise.conv.weight"):
        assert np.array_equal(before[name] == 0, after[name] == 0)
        assert not np.array_equal(before[name], after[name])  # the kept weights did train


def test_cancel_keeps_the_best_checkpoint_so_far(teacher, half_channels, train):
    """Cancelled one step into epoch 2: the weights returned are epoch 1's (the best so far),
    as their validation loss, recomputed in onnxruntime, shows."""
    token = CancelToken()
    job = distill_job(teacher, half_channels, train, FAST, cancel=token)
    epoch_one_seen = False
    while True:
        try:
            step = next(job)
        except StopIteration as finished:
            trained, report = finished.value
            break
        if step.payload is not None and step.payload.epoch == 1:
            epoch_one_seen = True
        elif epoch_one_seen:
            token.cancel()  # after the first training step of epoch 2
    assert report.stopped_early and len(report.history) == 2 and report.best_epoch == 1
    assert "stopped after 1 of 3 epochs: kept the best checkpoint (epoch 1)" in report.notes[0]
    _, held = validation_split(len(train), FAST.validation_fraction, FAST.seed)
    x, y = train.inputs["input"][held], torch.from_numpy(train.labels[held].astype(np.int64))
    logits = make_session(trained, threads=1).run(None, {"input": x})[0]
    reference = make_session(teacher, threads=1).run(None, {"input": x})[0]
    loss = kd_loss(torch.from_numpy(logits), torch.from_numpy(reference), y, 4.0, 0.7)
    assert float(loss) == pytest.approx(report.best.val_loss, abs=1e-4)


def test_without_labels_it_learns_from_soft_targets_alone(teacher, half_channels, train):
    unlabeled = dataclasses.replace(train, labels=None)
    options = dataclasses.replace(FAST, epochs=2)
    trained, report = run_job(distill_job(teacher, half_channels, unlabeled, options))
    assert report.before.val_top1 is None and report.best.val_top1 is None
    assert report.best.val_agreement >= report.before.val_agreement + 0.3
    assert _top1(trained, teacher) >= _top1(half_channels, teacher) + 0.3


def test_fitnets_hint_on_a_pruned_tensor_trains_through_a_regressor(teacher, half_channels, train):
    """The student's /block2/Relu output has half the teacher's channels: a 1x1 regressor
    maps it, and the hint's MSE joins the loss (the training loss is larger with it)."""
    options = dataclasses.replace(FAST, epochs=1)
    hinted = dataclasses.replace(options, features=("/block2/Relu_output_0",))
    _, plain = run_job(distill_job(teacher, half_channels, train, options))
    _, with_hint = run_job(distill_job(teacher, half_channels, train, hinted))
    assert with_hint.history[1].train_loss > plain.history[1].train_loss


def test_unknown_hint_tensor_is_named(teacher, half_channels, train):
    options = dataclasses.replace(FAST, features=("/no/such/tensor",))
    with pytest.raises(CompressorError, match="/no/such/tensor"):
        run_job(distill_job(teacher, half_channels, train, options))


@pytest.mark.parametrize("bits", [4, 2])
def test_qat_weights_are_the_ones_the_quantizer_writes(teacher, bits):
    """Weight-only INT4 (blocks of 32 along the input channels) and ternary layers compute
    in float, so the fake-quantized torch module must give the written model's outputs."""
    plan = CompressionPlan(default=LayerSetting(bits=bits), fuse=False)
    plan = plan.with_layers(["/fc/Gemm"], bits=32)  # INT4 Gemm goes to ORT's MatMulNBits
    written = quantize_model(teacher, plan).model
    module = to_torch(teacher).eval()
    settings = plan.resolved(build_inventory(teacher))
    layers = attach_fake_quant(module, teacher, settings, FORMS["u8s8"])
    assert len(layers) == 11
    x = demo_dataset(teacher, "eval").inputs["input"][:16]
    session = make_session(written, threads=1)
    expected = session.run(None, {"input": x})[0]
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
    assert np.abs(got - expected).max() < 1e-4 * max(1.0, np.abs(expected).max())


def test_a_sample_without_a_label_learns_from_the_teacher_alone():
    """In a batch mixing labelled and unlabeled samples each sample has its own loss: soft
    and hard targets where there is a label, the soft term alone where there is none."""
    generator = torch.Generator().manual_seed(0)
    student, teacher = (
        torch.randn(4, 10, generator=generator),
        torch.randn(4, 10, generator=generator),
    )
    labels = torch.tensor([3, UNLABELED, 1, UNLABELED])
    each = [
        kd_loss(
            student[i : i + 1],
            teacher[i : i + 1],
            None if labels[i] < 0 else labels[i : i + 1],
            4.0,
            0.7,
        )
        for i in range(4)
    ]
    assert float(kd_loss(student, teacher, labels, 4.0, 0.7)) == pytest.approx(
        float(torch.stack(each).mean()), rel=1e-6
    )
    assert float(each[0]) != pytest.approx(float(kd_loss(student[:1], teacher[:1], None, 4.0, 0.7)))


def test_unlabeled_samples_train_with_a_torchscript_teacher_and_never_validate(
    teacher, half_channels, train
):
    """64 labelled samples and 192 more without labels (26 of all 256 held out to validate);
    the teacher is the demo's TorchScript module itself, whose logits are onnxruntime's within
    1e-4."""
    labelled = train.part(0, 64)
    unlabeled = dataclasses.replace(train.part(64), labels=None)
    scripted = load_model("resources/demo.torchscript.pt")
    options = dataclasses.replace(FAST, epochs=1)
    job = distill_job(
        teacher, half_channels, labelled, options, unlabeled=unlabeled, teacher_module=scripted
    )
    _, report = run_job(job)
    assert (report.train_samples, report.unlabeled_samples) == (230, 192)
    assert report.validation_samples == 26
    assert report.teacher_runtime == "torch (TorchScript module, no ONNX round trip)"
    assert report.history[1].val_loss < report.before.val_loss  # it learned from them
    x = train.inputs["input"][:8]
    torch_logits = TorchTeacher(scripted.torch_module, "TorchScript", None)({"input": x})
    ort_logits = make_session(teacher, threads=1).run(None, {"input": x})[0]
    assert np.abs(torch_logits[0] - ort_logits).max() < 1e-4


def test_a_distilled_model_is_judged_by_top1_not_by_its_logits_cosine():
    """KD matches the original's softened outputs, not its logits' scale: a distilled model
    within the top-1 budget is not warned about a low cosine; without labels its top-1
    agreement judges it; an undistilled model with the same cosine is warned."""
    plan = CompressionPlan()
    machine = local_machine()
    before = EvalResult(samples=450, top1=1.0)
    recovered = EvalResult(samples=450, top1=0.996, agreement_top1=0.996, cosine=0.93)
    assert quality_warnings(plan, before, recovered, (), machine, distilled=True) == []
    assert "cosine 0.9300" in quality_warnings(plan, before, recovered, (), machine)[0]
    unlabelled = EvalResult(samples=450)
    drifted = EvalResult(samples=450, agreement_top1=0.95, cosine=0.999)
    warned = quality_warnings(plan, unlabelled, drifted, (), machine, distilled=True)
    assert "top-1 agreement with the original 95.00% is under 99%" in warned[0]


def test_a_recipe_carries_its_recovery_step(tmp_path):
    plan = CompressionPlan(default=LayerSetting(bits=8), distill_epochs=12)
    save_recipe(plan, tmp_path / "r.yaml")
    assert load_recipe(tmp_path / "r.yaml").distill_epochs == 12
    with pytest.raises(CompressorError, match="distill_epochs must be 0 or more"):
        CompressionPlan.from_dict({"distill_epochs": -1})


def test_a_pt2_teacher_runs_its_exported_module_at_the_batch_it_was_traced_with(tmp_path):
    """torch.export keeps the traced batch (2 here): five samples go through as 2 + 2 + 1
    padded to 2, and the logits are the module's own."""
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).eval()
    torch.export.save(torch.export.export(module, (torch.zeros(2, 12),)), tmp_path / "t.pt2")
    teacher = TorchTeacher(*teacher_callable(load_model(tmp_path / "t.pt2")))
    x = np.random.default_rng(0).standard_normal((5, 12)).astype(np.float32)
    (got,) = teacher({"x": x})
    with torch.no_grad():
        np.testing.assert_allclose(got, module(torch.from_numpy(x)).numpy(), atol=1e-6)
    assert teacher.describe() == "torch (torch.export module, no ONNX round trip)"
