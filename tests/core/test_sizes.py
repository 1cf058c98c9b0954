"""Honest sizes: dense bytes, deflate bytes, and the 2:4 sparse-format bytes."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from compressor_gui.core.model import file_size_bytes, load_model
from compressor_gui.core.sizes import (
    compressed_size_bytes,
    dense_size_bytes,
    n_m_sparse_size_bytes,
    size_report,
)
from tests import modelgen


def test_dense_size_of_a_file_is_its_size_on_disk(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(modelgen.linear(), path)
    assert dense_size_bytes(path) == path.stat().st_size
    assert dense_size_bytes(onnx.load(path)) == path.stat().st_size


def test_a_model_with_external_weights_counts_its_data_file_everywhere(tmp_path):
    """One size for one file: the loader, the size report and the pipeline's function agree,
    and all count the weights kept in `<name>.data` beside the model."""
    path = modelgen.save_with_external_data(modelgen.conv_stack(), tmp_path / "m.onnx")
    data = tmp_path / "m.onnx.data"
    on_disk = path.stat().st_size + data.stat().st_size
    assert data.stat().st_size > path.stat().st_size
    assert file_size_bytes(path) == dense_size_bytes(path) == on_disk
    assert load_model(path).file_size_bytes == on_disk


def test_zeroed_weights_deflate_far_smaller_than_dense_ones():
    dense = modelgen.linear(256, 256)
    sparse = modelgen.linear(256, 256, zero_fraction=0.9)
    assert compressed_size_bytes(sparse) < 0.2 * dense_size_bytes(sparse)
    assert compressed_size_bytes(dense) > 0.8 * dense_size_bytes(dense)


def test_two_four_format_keeps_half_the_values_plus_two_bit_indices():
    weight = np.ones((64, 128), dtype=np.float16)
    # 4096 kept fp16 values (8192 B) + 4096 x 2 bits of metadata (1024 B)
    assert n_m_sparse_size_bytes(weight, 2, 4) == 8192 + 1024


def test_size_report_counts_only_listed_weights_in_sparse_format():
    model = modelgen.linear(128, 64)
    weight = numpy_helper.to_array(model.graph.initializer[0])
    report = size_report(model, sparse_weights=[model.graph.initializer[0].name])
    saved = weight.nbytes - n_m_sparse_size_bytes(weight)
    assert report.sparse_format_size_bytes == report.dense_size_bytes - saved
    assert size_report(model).sparse_format_size_bytes == report.dense_size_bytes
