"""One notion of input shapes across the verbs: a model with dynamic dims that 1 does not fit
is asked about before any work, and `--input-shape` is what every run then uses."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from compressor_gui.cli import main
from compressor_gui.core.errors import CompressorError, error_text
from compressor_gui.core.shapes import InputShapeNeeded, resolve_input_shapes
from tests import modelgen


@pytest.fixture
def detector(tmp_path):
    path = tmp_path / "detector.onnx"
    onnx.save(modelgen.dynamic_detector(), str(path))
    return path


def test_compress_asks_for_the_shape_before_writing_anything(detector, tmp_path, capsys):
    out = tmp_path / "detector_int8.onnx"
    assert main(["compress", str(detector), "--int8", "-o", str(out), "--no-latency"]) == 2
    error = capsys.readouterr().err
    assert "images [?, 3, ?, ?]" in error and "--input-shape 1x3x640x640" in error
    assert "Concat" in error and "\x1b[" not in error
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["detector.onnx"]


def test_compressed_detector_evaluates_at_the_given_shape(detector, tmp_path, capsys):
    out = tmp_path / "detector_int8.onnx"
    shape = ["--input-shape", "1x3x320x320"]
    argv = ["compress", str(detector), "--int8", "-o", str(out), "--no-latency", "--json"]
    assert main([*argv, *shape]) == 0
    compressed = json.loads(capsys.readouterr().out)
    assert compressed["after"]["eval"]["cosine"] >= 0.99
    assert main(["evaluate", str(detector), str(out), *shape, "--json"]) == 0
    evaluation = json.loads(capsys.readouterr().out)
    assert evaluation["results"]["compressed"]["cosine"] >= 0.99
    assert main(["evaluate", str(detector), str(out)]) == 2
    assert "--input-shape" in capsys.readouterr().err


def test_bench_runs_the_detector_at_the_given_shape(detector, capsys):
    argv = ["bench", str(detector), "--runs", "3", "--warmup", "1", "--json"]
    assert main([*argv, "--input-shape", "1x3x64x64"]) == 0
    assert json.loads(capsys.readouterr().out)["latency"]["p50_ms"] > 0
    assert main(argv) == 2
    assert "dynamic dims" in capsys.readouterr().err


def test_input_declaring_minus_one_compresses_without_a_traceback(tmp_path, capsys):
    model = modelgen.linear()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = -1
    path = tmp_path / "minus_one.onnx"
    onnx.save(model, str(path))
    out = tmp_path / "out.onnx"
    assert main(["compress", str(path), "--int8", "-o", str(out), "--no-latency"]) == 0
    assert out.exists() and "Traceback" not in capsys.readouterr().err


def test_shapes_come_from_the_user_the_data_or_the_model_metadata():
    model = modelgen.dynamic_detector()
    with pytest.raises(InputShapeNeeded) as asked:
        resolve_input_shapes(model)
    assert asked.value.inputs == ("images",)
    assert resolve_input_shapes(model, [(2, 3, 64, 96)]) == {"images": (2, 3, 64, 96)}
    with pytest.raises(CompressorError, match=r"1x4x64x64 does not fit.*\[\?, 3, \?, \?\]"):
        resolve_input_shapes(model, [(1, 4, 64, 64)])
    onnx.helper.set_model_props(model, {"imgsz": "[96, 128]"})
    assert resolve_input_shapes(model) == {"images": (1, 3, 96, 128)}


def test_runtime_errors_are_shown_without_colour_codes():
    raw = RuntimeError("\x1b[1;31m2026 [E:onnxruntime:, inference] Concat failed\x1b[m\nstack")
    assert error_text(raw) == "2026 [E:onnxruntime:, inference] Concat failed"


def test_trtexec_is_given_the_resolved_shape_with_the_batch_size(detector):
    from compressor_gui.targets.base import BenchConfig
    from compressor_gui.targets.jetson import trtexec_command

    config = BenchConfig(batch_size=2, input_shapes={"images": [1, 3, 320, 320]})
    assert "--shapes=images:2x3x320x320" in trtexec_command(detector, "d.onnx", None, config)
    assert "--shapes=images:1x3x1x1" in trtexec_command(detector, "d.onnx", None, BenchConfig())


def test_inspect_counts_macs_at_the_given_shape(detector, capsys):
    assert main(["inspect", str(detector), "--json"]) == 0
    assumed = json.loads(capsys.readouterr().out)
    assert main(["inspect", str(detector), "--json", "--input-shape", "1x3x320x320"]) == 0
    given = json.loads(capsys.readouterr().out)
    assert len(assumed["assumptions"]) == 3 and given["assumptions"] == []
    # the stem conv alone: 8 x 3 x 3 x 3 MACs per output pixel, 160 x 160 of them
    assert given["layers"][0]["macs"] == 8 * 27 * 160 * 160


def test_pruning_counts_macs_at_the_given_input_shape():
    from compressor_gui.core.inventory import build_inventory
    from compressor_gui.core.prune import prune_unstructured

    model, shapes = modelgen.dynamic_detector(), {"images": (1, 3, 64, 64)}
    _, report = prune_unstructured(model, {"stem": 0.5}, input_shapes=shapes)
    at_shape = build_inventory(model, input_shapes=shapes).total_macs
    assert report.macs_before == report.macs_after == at_shape
    assert at_shape > 100 * build_inventory(model).total_macs


@pytest.fixture
def image_classifier(tmp_path):
    """Convs, global pooling and a classifier on images of dynamic height and width: it runs
    at 1x1, where its MACs, calibration and latency mean nothing."""
    model = modelgen.conv_stack()
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    path = tmp_path / "classifier.onnx"
    onnx.save(model, str(path))
    return path


def test_an_image_of_dynamic_size_is_asked_about_as_the_window_asks(image_classifier, capsys):
    from compressor_gui.core.shapes import shape_question

    out = image_classifier.with_name("classifier_fp16.onnx")
    assert main(["compress", str(image_classifier), "--fp16", "-o", str(out)]) == 2
    error = capsys.readouterr().err
    question = shape_question(onnx.load(str(image_classifier)))
    assert question is not None and question.runs_as_assumed
    assert question.reason in error and "--input-shape 1x8x640x640" in error
    assert not out.exists()
    assert main(["bench", str(image_classifier), "--runs", "2", "--warmup", "0"]) == 2
    assert "1x1 image" in capsys.readouterr().err


def test_an_image_of_dynamic_size_runs_at_the_given_shape_or_the_datas(image_classifier, capsys):
    out = image_classifier.with_name("classifier_fp16.onnx")
    argv = ["compress", str(image_classifier), "--fp16", "-o", str(out), "--no-latency"]
    assert main([*argv, "--input-shape", "1x8x16x16"]) == 0
    data = image_classifier.with_name("data.npz")
    np.savez(data, x=np.random.default_rng(0).standard_normal((4, 8, 12, 20), np.float32))
    assert main([*argv, "--data", str(data), "--json"]) == 0
    assert "1x1" not in capsys.readouterr().err


def test_a_stream_model_is_offered_a_length_that_runs(published_models):
    """silero-vad's input [?, ?] and state [2, ?, 128]: every open dim at one size (the old
    offer: 1x640 and a state batch of 640) does not run; one dim at the smallest size that
    runs does, with the state's batch left at 1."""
    from compressor_gui.core.graph import make_session
    from compressor_gui.core.shapes import random_feed, shape_question

    model = onnx.load(str(published_models / "silero_vad.onnx"))
    question = shape_question(model)
    assert question is not None and not question.runs_as_assumed
    offered = question.suggested
    assert offered["state"] == (2, 1, 128) and offered["input"][0] == 1
    make_session(model).run(None, random_feed(model, offered))


def test_data_beside_the_model_sizes_its_dynamic_dims_when_it_opens(published_models, tmp_path):
    """The window asks nothing when `<stem>_eval.npz` beside the model sizes every dim: its
    jobs read that data, so its sample shapes are the input shapes."""
    from compressor_gui.core.jobs import run_job
    from compressor_gui.core.workflows import open_model_job, sized_at_opening
    from tests.realmodels.suite import MODELS_BY_NAME

    model = tmp_path / "silero_vad.onnx"
    model.write_bytes((published_models / "silero_vad.onnx").read_bytes())
    opened = run_job(open_model_job(model))
    _, question, note = sized_at_opening(opened)
    assert question is not None and note is None  # no data yet: asked
    np.savez(tmp_path / "silero_vad_eval.npz", **MODELS_BY_NAME["silero-vad"].data(3, 0))
    sized, question, note = sized_at_opening(opened)
    assert question is None and "1x576, 2x1x128, scalar" in note
    assert sized.loaded.input_shapes == ((1, 576), (2, 1, 128), ())


def test_a_model_that_cannot_run_on_random_inputs_is_refused_before_writing(
    published_models, tmp_path, capsys
):
    """silero-vad at a given shape runs only at its real sample rates: random inputs (a rate
    of 1) cannot evaluate it, which used to be found after the file was written. The advice
    names no flag for its trailing scalar input, and `scalar` is accepted for one."""
    model = str(published_models / "silero_vad.onnx")
    out = tmp_path / "int8.onnx"
    argv = ["compress", model, "--int8", "-o", str(out), "--no-latency"]
    assert main(argv) == 2
    assert "--input-shape 1x128 --input-shape 2x1x128 (one" in capsys.readouterr().err
    shapes = ["--input-shape", "1x576", "--input-shape", "2x1x128", "--input-shape", "scalar"]
    assert main([*argv, *shapes]) == 2
    assert "cannot run on random inputs" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_scalar_input_shape_reads_back_as_it_was_written():
    """The window remembers answers as flag text; a scalar input (silero-vad's sample rate)
    was written as an empty string, which reads back as an error, dropping the answer."""
    from compressor_gui.core.shapes import dims_text, parse_shape

    assert [parse_shape(dims_text(shape)) for shape in ((1, 576), (2, 1, 128), ())] == [
        (1, 576),
        (2, 1, 128),
        (),
    ]
