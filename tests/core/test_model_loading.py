"""Opening models: every format, and every kind of bad input gets a message, never a crash."""

from __future__ import annotations

import pickle

import onnx
import pytest
import torch

from compressor_gui.core.errors import ModelLoadError
from compressor_gui.core.inventory import build_inventory
from compressor_gui.core.model import load_model, save_onnx
from tests import modelgen


class _RunsCodeWhenUnpickled:
    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_onnx_round_trip_is_written_atomically(tmp_path):
    out = save_onnx(modelgen.linear(), tmp_path / "m.onnx")
    assert load_model(out).format == "onnx"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temp leftovers


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"is empty \(0 bytes\)"),
        (b"\x00\xff\x13garbage" * 50, "not a valid ONNX file"),
        (b"hello, I am a text file\n", "is a text file"),
    ],
)
def test_bad_bytes_are_refused_with_a_message(tmp_path, content, message):
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message):
        load_model(path)


def test_truncated_onnx_is_refused(tmp_path, demo_onnx):
    path = tmp_path / "truncated.onnx"
    path.write_bytes(demo_onnx.read_bytes()[: demo_onnx.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="truncated"):
        load_model(path)


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="is a folder"):
        load_model(tmp_path)
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "nope.onnx")


def test_missing_external_data_names_the_file(tmp_path):
    path = modelgen.save_with_external_data(modelgen.conv(), tmp_path / "ext.onnx")
    (tmp_path / "ext.onnx.data").unlink()
    with pytest.raises(ModelLoadError, match=r"ext\.onnx\.data.*missing"):
        load_model(path)


def test_model_larger_than_memory_is_refused(tmp_path):
    path = save_onnx(modelgen.linear(), tmp_path / "m.onnx")
    with pytest.raises(ModelLoadError, match="more than this machine can hold"):
        load_model(path, max_bytes=100)


@pytest.mark.parametrize("style", ["legacy", "zip"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, style):
    marker = tmp_path / "pwned"
    _RunsCodeWhenUnpickled.marker = marker
    path = tmp_path / "evil.pt"
    if style == "legacy":
        path.write_bytes(pickle.dumps({"w": _RunsCodeWhenUnpickled()}, protocol=2))
    else:
        torch.save({"w": _RunsCodeWhenUnpickled()}, path)
    with pytest.raises(ModelLoadError, match="--trust-pickle"):
        load_model(path)
    assert not marker.exists()


def test_state_dict_loads_as_tensors_only(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(torch.nn.Linear(4, 3).state_dict(), path)
    loaded = load_model(path)
    assert loaded.format == "state_dict" and loaded.onnx_model is None
    assert set(loaded.state_dict) == {"weight", "bias"}


def test_pickled_module_needs_trust_then_converts(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 3)), path)
    with pytest.raises(ModelLoadError, match="--trust-pickle"):
        load_model(path)
    loaded = load_model(path, trust_pickle=True, input_shapes=[(1, 4)])
    assert loaded.format == "torch"
    assert build_inventory(loaded.onnx_model).total_params == 4 * 3 + 3


def test_torchscript_with_recorded_shapes_converts_to_onnx():
    from tests.conftest import RESOURCES

    loaded = load_model(RESOURCES / "demo.torchscript.pt")
    assert loaded.format == "torchscript" and loaded.input_shapes == ((1, 1, 32, 32),)
    onnx.checker.check_model(loaded.onnx_model)
    demo = build_inventory(load_model(RESOURCES / "demo.onnx").onnx_model)
    converted = build_inventory(loaded.onnx_model)

    def compute_macs(inventory):  # the exporter folds BatchNorm into Conv: compare the rest
        return sum(x.macs for x in inventory.layers if x.kind not in ("norm", "other"))

    assert compute_macs(converted) == compute_macs(demo) > 0


def test_torchscript_without_shapes_lists_weights(published_models):
    loaded = load_model(published_models / "silero_vad.jit")
    assert loaded.format == "torchscript" and loaded.onnx_model is None
    assert "--input-shape" in loaded.notes[0]


def test_torch_export_pt2_converts_to_onnx(tmp_path):
    module = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.ReLU())
    program = torch.export.export(module, (torch.zeros(1, 2, 8, 8),))
    path = tmp_path / "model.pt2"
    torch.export.save(program, path)
    loaded = load_model(path)
    assert loaded.format == "pt2" and loaded.input_shapes == ((1, 2, 8, 8),)
    convs = [x for x in build_inventory(loaded.onnx_model).layers if x.op_type == "Conv"]
    assert len(convs) == 1 and convs[0].macs == 4 * 6 * 6 * 2 * 9


def test_zip_that_is_not_a_model(tmp_path):
    import zipfile

    path = tmp_path / "photos.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.txt", "hi")
    with pytest.raises(ModelLoadError, match="zip archive but not"):
        load_model(path)


@pytest.mark.parametrize("where", ["../secret.data", "absolute", "link"])
def test_weights_outside_the_model_folder_are_never_read(tmp_path, where):
    folder = tmp_path / "model"
    folder.mkdir()
    path = modelgen.save_with_external_data(modelgen.linear(), folder / "m.onnx")
    secret = tmp_path / "secret.data"
    (folder / "m.onnx.data").rename(secret)
    location = {"../secret.data": "../secret.data", "absolute": str(secret), "link": "l.data"}
    if where == "link":
        (folder / "l.data").symlink_to(secret)
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location[where]
    onnx.save(model, str(path))
    with pytest.raises(ModelLoadError, match="outside its own folder"):
        load_model(path)


def test_a_tensor_shorter_than_its_dims_is_refused_in_words(tmp_path):
    model = modelgen.linear()
    weight = model.graph.initializer[0]
    weight.raw_data = onnx.numpy_helper.to_array(weight).tobytes()[:100]
    weight.ClearField("float_data")
    onnx.save(model, str(tmp_path / "short.onnx"))
    with pytest.raises(ModelLoadError, match=r"tensor 'W' has dims \[10, 64\], which need 2560"):
        load_model(tmp_path / "short.onnx")


def test_an_empty_tensor_with_dims_no_array_can_have_is_refused(tmp_path):
    """Found by benchmarks/fuzz.py (seed 11): dims (1, 2**40, 2**40, 0) hold no values, yet
    numpy cannot describe the shape."""
    model = modelgen.linear()
    weight = model.graph.initializer[0]
    del weight.dims[:]
    weight.dims.extend([1, 2**40, 2**40, 0])
    weight.ClearField("float_data")
    weight.raw_data = b""
    onnx.save(model, str(tmp_path / "odd.onnx"))
    with pytest.raises(ModelLoadError, match="no array can have"):
        load_model(tmp_path / "odd.onnx")


def test_a_name_that_is_not_text_is_refused_in_words(tmp_path):
    data = modelgen.conv().SerializeToString()
    at = data.find(b"relu")
    (tmp_path / "bad.onnx").write_bytes(data[:at] + b"\xa0" + data[at + 1 :])
    with pytest.raises(ModelLoadError, match="holds a name that is not valid text"):
        load_model(tmp_path / "bad.onnx")


def test_an_impossible_ir_version_is_refused_in_words(tmp_path):
    model = modelgen.linear()
    model.ir_version = 1
    onnx.save(model, str(tmp_path / "old.onnx"))
    with pytest.raises(ModelLoadError, match="declares ONNX IR version 1"):
        load_model(tmp_path / "old.onnx")
