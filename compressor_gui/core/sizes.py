"""Honest model sizes: what a file takes on disk, what it takes deflated, and what 2:4 sparse
weights would take in a sparse-tensor-core format. One place, so the CLI, the compress
pipeline and the benchmarks all report the same numbers."""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from compressor_gui.core.model import file_size_bytes

DEFLATE_LEVEL = 6  # zip's default: what a user gets from `zip model.zip model.onnx`


@dataclass(frozen=True)
class SizeReport:
    """Dense bytes on disk, deflate-compressed bytes, and bytes if the listed 2:4 weights were
    stored as (kept values + index metadata); equal to dense when no weight is N:M sparse."""

    dense_size_bytes: int
    compressed_size_bytes: int
    sparse_format_size_bytes: int

    def ratio_to(self, baseline: SizeReport) -> dict[str, float]:
        """Each size as a fraction of the same size of `baseline` (the uncompressed model)."""
        return {
            "dense": self.dense_size_bytes / baseline.dense_size_bytes,
            "compressed": self.compressed_size_bytes / baseline.dense_size_bytes,
            "sparse_format": self.sparse_format_size_bytes / baseline.dense_size_bytes,
        }


def model_bytes(model: onnx.ModelProto | bytes | str | os.PathLike[str]) -> bytes:
    """The serialized bytes of a model given in memory, as bytes, or as a file path."""
    if isinstance(model, bytes):
        return model
    if isinstance(model, onnx.ModelProto):
        return model.SerializeToString()
    return Path(model).read_bytes()


def dense_size_bytes(model: onnx.ModelProto | bytes | str | os.PathLike[str]) -> int:
    """Size of the model as stored (a file with its external weights; an in-memory model's
    serialized size)."""
    if isinstance(model, bytes | onnx.ModelProto):
        return len(model_bytes(model))
    return file_size_bytes(model)


def compressed_size_bytes(
    model: onnx.ModelProto | bytes | str | os.PathLike[str], level: int = DEFLATE_LEVEL
) -> int:
    """Size after deflate (zip) of the file: where zeroed weights really save space."""
    return len(zlib.compress(model_bytes(model), level))


def n_m_sparse_size_bytes(array: np.ndarray, n: int = 2, m: int = 4) -> int:
    """Bytes of an N:M sparse tensor in the cuSPARSELt layout: n of every m values kept, plus
    ceil(log2(m)) bits of position metadata per kept value (2 bits for 2:4)."""
    kept = math.ceil(array.size * n / m)
    index_bits = max(1, math.ceil(math.log2(m)))
    return kept * array.dtype.itemsize + math.ceil(kept * index_bits / 8)


def size_report(
    model: onnx.ModelProto, sparse_weights: Iterable[str] = (), n: int = 2, m: int = 4
) -> SizeReport:
    """All three sizes of an in-memory model; `sparse_weights` names the initializers that are
    N:M sparse (from `PruneReport.n_m_weights`), counted in the sparse format."""
    data = model.SerializeToString()
    dense = len(data)
    wanted = set(sparse_weights)
    sparse = dense
    for tensor in model.graph.initializer:
        if tensor.name in wanted:
            array = numpy_helper.to_array(tensor)
            sparse -= array.nbytes - n_m_sparse_size_bytes(array, n, m)
    return SizeReport(dense, len(zlib.compress(data, DEFLATE_LEVEL)), sparse)
