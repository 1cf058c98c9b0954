"""Data sources: npz, the demo split, image folders; wrong data fails with a clear message."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from compressor_gui.core.data import (
    calibration_reader,
    dataset_from_arrays,
    demo_dataset,
    load_dataset,
    random_dataset,
)
from compressor_gui.core.errors import CompressorError
from tests import modelgen


@pytest.fixture(scope="module")
def conv_model() -> onnx.ModelProto:
    model = modelgen.conv(3, 4, 3, 8)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    return model


def _x(count: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((count, 3, 8, 8)).astype(np.float32)


def test_npz_with_x_and_y_feeds_batches(tmp_path, conv_model):
    path = tmp_path / "d.npz"
    np.savez(path, x=_x(10), y=np.arange(10) % 3)
    data = load_dataset(path, conv_model)
    assert len(data) == 10 and data.labels.tolist()[:4] == [0, 1, 2, 0]
    batches = list(data.batches(4))
    assert [b["x"].shape[0] for b in batches] == [4, 4, 2]


def test_missing_key_names_what_the_model_needs(tmp_path, conv_model):
    path = tmp_path / "d.npz"
    np.savez(path, images=_x(2))
    with pytest.raises(CompressorError, match="has keys images.*needs 'x'"):
        load_dataset(path, conv_model)


def test_wrong_shape_is_reported_with_the_model_shape(conv_model):
    bad = np.zeros((2, 3, 9, 9), np.float32)
    with pytest.raises(CompressorError, match=r"\(2, 3, 9, 9\).*\[\?, 3, 8, 8\]"):
        dataset_from_arrays({"x": bad}, conv_model)


def test_wrong_dtype_is_reported(conv_model):
    with pytest.raises(CompressorError, match="int64, but the model wants float32"):
        dataset_from_arrays({"x": np.zeros((2, 3, 8, 8), np.int64)}, conv_model)


def test_bad_labels_are_reported(conv_model):
    with pytest.raises(CompressorError, match="y must be 2 integer class labels"):
        dataset_from_arrays({"x": _x(2), "y": np.array([0.5, 1.0])}, conv_model)


def test_sample_form_inputs_are_fed_one_at_a_time():
    model = modelgen.lstm(seq=5, batch=2, input_size=8, hidden=16)
    data = dataset_from_arrays({"x": np.zeros((3, 5, 2, 8), np.float32)}, model)
    feeds = list(data.batches(64))
    assert len(feeds) == 3 and feeds[0]["x"].shape == (5, 2, 8)


def test_demo_split_is_labeled(demo_onnx):
    data = demo_dataset(onnx.load(str(demo_onnx)), "eval")
    assert len(data) == 450 and data.labels is not None and len(data.class_names) == 10


def test_image_folder_with_spec_and_class_subfolders(tmp_path, conv_model):
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(2):
            np.save(tmp_path / label / f"{i}.npy", np.full((16, 16, 3), 255.0 * i, np.float32))
    spec = {"size": [8, 8], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "scale": 1 / 255}
    (tmp_path / "preprocess.json").write_text(json.dumps(spec))
    data = load_dataset(tmp_path, conv_model)
    assert data.class_names == ("cat", "dog")
    assert data.labels.tolist() == [0, 0, 1, 1]
    assert np.allclose(data.inputs["x"][0], -1.0) and np.allclose(data.inputs["x"][1], 1.0)


def test_image_folder_without_spec_says_what_to_add(tmp_path, conv_model):
    np.save(tmp_path / "a.npy", np.zeros((8, 8, 3), np.float32))
    with pytest.raises(CompressorError, match="preprocess.json"):
        load_dataset(tmp_path, conv_model)


def test_calibration_reader_limits_and_rewinds(conv_model):
    reader = calibration_reader(
        dataset_from_arrays({"x": _x(10)}, conv_model), limit=6, batch_size=4
    )
    first = [reader.get_next()["x"].shape[0] for _ in range(2)]
    assert first == [4, 2] and reader.get_next() is None
    reader.rewind()
    assert reader.get_next()["x"].shape[0] == 4


def test_random_dataset_matches_the_inputs(conv_model):
    data = random_dataset(conv_model, count=3)
    assert next(data.batches())["x"].shape == (1, 3, 8, 8)


@pytest.mark.parametrize("stored_size", [32, 64])
def test_png_folder_of_real_digits_keeps_the_demo_accurate(tmp_path, demo_onnx, stored_size):
    """The demo's held-out digits written as 8-bit PNGs (also at 2x size, resized on load)
    and read back through preprocess.json give the same accuracy as the shipped split."""
    from PIL import Image

    from compressor_gui.core.evaluate import evaluate, make_session

    model = onnx.load(str(demo_onnx))
    shipped = demo_dataset(model, "eval")
    mean, std = 0.305225, 0.32354  # resources/demo.json preprocessing
    pixels = np.clip(shipped.inputs["input"][:100, 0] * std + mean, 0.0, 1.0)
    for index, (image, label) in enumerate(zip(pixels, shipped.labels[:100], strict=True)):
        folder = tmp_path / f"digit{label}"
        folder.mkdir(exist_ok=True)
        png = Image.fromarray(np.round(image * 255).astype(np.uint8), mode="L")
        png.resize((stored_size, stored_size), Image.Resampling.BILINEAR).save(
            folder / f"{index}.png"
        )
    spec = {"size": [32, 32], "channels": "L", "scale": 1 / 255, "mean": [mean], "std": [std]}
    (tmp_path / "preprocess.json").write_text(json.dumps(spec))
    folder_data = load_dataset(tmp_path, model)
    assert folder_data.inputs["input"].shape == (100, 1, 32, 32)
    assert folder_data.class_names == tuple(f"digit{d}" for d in range(10))
    result, _ = evaluate(make_session(model), folder_data)
    assert result.top1 >= 0.98


def test_inputs_declaring_absurd_or_negative_dims_get_feeds_or_a_reason():
    """-1 is read as dynamic (a batch of 1); 2**40 would need terabytes: refused in words."""
    from compressor_gui.core.data import random_dataset
    from compressor_gui.core.evaluate import sample_feed

    model = modelgen.linear()
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_value = -1
    assert sample_feed(model)["x"].shape == (1, 64)
    dims[1].dim_value = 2**40
    onnx.checker.check_model(model)
    with pytest.raises(CompressorError, match=r"declares shape \[\?, 1099511627776\]"):
        random_dataset(model)
