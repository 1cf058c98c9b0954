"""Fuzzing the loaders and the feeds: damaged files and hostile graphs go down the path a user's
file takes (open, inventory, plan, data, one run in onnxruntime), in a child process.

Every case must end in a success or a CompressorError. Anything else is an internal error;
a child that dies is a crash and one that does not answer in time a hang. The child is
restarted after either, so one bad case cannot take the run down. Used by tests/test_fuzz.py
(hypothesis, ~1,000 cases) and benchmarks/fuzz.py (>= 10,000 cases, counts).
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import sys
import tempfile
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from onnx import TensorProto, helper, numpy_helper

from tests import modelgen

# hypothesis keeps caches in ./.hypothesis unless told: keep them in the repo's ignored cache
set_hypothesis_home_dir(Path(__file__).resolve().parents[1] / ".cache" / "hypothesis")

CASE_TIMEOUT_S = 20.0
OUTCOMES = ("success", "clean error", "internal error", "traceback", "crash", "hang")


@dataclass(frozen=True)
class Case:
    """Files to write into an empty folder (model.onnx, maybe data.npz and weight files)."""

    files: dict[str, bytes]
    label: str = ""
    outside: dict[str, bytes] = field(default_factory=dict)  # written beside the folder


@dataclass(frozen=True)
class Outcome:
    kind: str  # one of OUTCOMES
    detail: str = ""


# --- what a user's file goes through -------------------------------------------------------


def user_path(folder: Path) -> None:
    """Open, inventory, plan, data, one run: what `inspect`, the GUI and `evaluate` do first."""
    from compressor_gui.core.data import load_dataset, random_dataset
    from compressor_gui.core.evaluate import make_session, run_outputs
    from compressor_gui.core.inventory import build_inventory
    from compressor_gui.core.model import load_model
    from compressor_gui.core.plan import CompressionPlan, LayerSetting

    loaded = load_model(folder / "model.onnx")
    inventory = build_inventory(loaded.onnx_model)
    CompressionPlan(default=LayerSetting(bits=8)).predict(inventory)
    data = folder / "data.npz"
    model = loaded.onnx_model
    dataset = load_dataset(data, model) if data.exists() else random_dataset(model, count=2)
    run_outputs(make_session(model, threads=1), dataset.subset(2))


def write_case(case: Case, tmp: Path) -> Path:
    """The case's files as a user would have them: a model folder inside `tmp` (returned),
    with the files the model points outside of it beside that folder."""
    folder = tmp / "model"
    folder.mkdir()
    for name, content in case.outside.items():
        (tmp / name).write_bytes(content)
    for name, content in case.files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


def _run_case(case: Case) -> Outcome:
    """The user path on the case's files; what reaches the terminal (file descriptors 1 and
    2, native code included) is captured: a traceback printed there counts as one."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        folder = write_case(case, Path(tmp))
        terminal = Path(tmp) / "terminal.txt"
        with _captured_terminal(terminal):
            outcome = _outcome(folder)
        printed = terminal.read_text(errors="replace")
    if "Traceback (most recent call last)" in printed:
        return Outcome("traceback", printed[-3000:])
    return outcome


def _outcome(folder: Path) -> Outcome:
    from compressor_gui.core.errors import CompressorError

    try:
        user_path(folder)
    except CompressorError as exc:
        return Outcome("clean error", str(exc)[:300])
    except Exception as exc:
        return Outcome("internal error", "".join(traceback.format_exception(exc))[-3000:])
    return Outcome("success")


@contextlib.contextmanager
def _captured_terminal(path: Path) -> Iterator[None]:
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "wb") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _worker(connection) -> None:
    from compressor_gui.core.logs import quiet_libraries

    quiet_libraries()
    while True:
        case = connection.recv()
        if case is None:
            return
        connection.send(_run_case(case))


class Runner:
    """A child process that runs cases one by one; restarted after a crash or a hang."""

    def __init__(self, timeout_s: float = CASE_TIMEOUT_S) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._timeout_s = timeout_s
        self._process = None
        self._connection = None

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        self._process = self._context.Process(target=_worker, args=(child,), daemon=True)
        self._process.start()
        child.close()
        self._connection = parent

    def run(self, case: Case) -> Outcome:
        if self._process is None or not self._process.is_alive():
            self._start()
        self._connection.send(case)
        if not self._connection.poll(self._timeout_s):
            self.close(kill=True)
            return Outcome("hang", f"no answer in {self._timeout_s:.0f} s")
        try:
            return self._connection.recv()
        except (EOFError, OSError):
            code = self._process.exitcode if self._process else None
            self.close(kill=True)
            return Outcome("crash", f"the process died (exit code {code})")

    def close(self, kill: bool = False) -> None:
        if self._process is None:
            return
        if kill:
            self._process.kill()
        else:
            try:
                self._connection.send(None)
            except (BrokenPipeError, OSError):
                self._process.kill()
        self._process.join(10)
        self._process = None


# --- seeds and mutations -------------------------------------------------------------------


def seed_models() -> list[onnx.ModelProto]:
    """Small real graphs of every layer family the tool handles."""
    return [
        modelgen.linear(),
        modelgen.conv(size=8),
        modelgen.depthwise(size=8),
        modelgen.lstm(),
        modelgen.embedding(),
        modelgen.attention_block(seq=4, dim=8),
        modelgen.constant_weight_conv(),
    ]


_SEED_BYTES = [model.SerializeToString() for model in seed_models()]

ABSURD_DIMS = (-7, -1, 0, 1, 3, 2**31, 2**40, 2**62)
DTYPES = tuple(range(0, 27))
NPZ_DTYPES = ("float32", "float64", "float16", "int64", "int8", "uint8", "bool", "complex64", "U4")


def mutated_bytes() -> st.SearchStrategy[Case]:
    """A seed file truncated, with bytes flipped, inserted or cut."""

    @st.composite
    def build(draw) -> Case:
        data = bytearray(draw(st.sampled_from(_SEED_BYTES)))
        for _ in range(draw(st.integers(1, 4))):
            kind = draw(st.sampled_from(("truncate", "flip", "insert", "cut")))
            position = draw(st.integers(0, max(len(data) - 1, 0)))
            if kind == "truncate":
                del data[position:]
            elif kind == "flip" and data:
                data[position] = draw(st.integers(0, 255))
            elif kind == "insert":
                data[position:position] = draw(st.binary(min_size=1, max_size=8))
            else:
                del data[position : position + draw(st.integers(1, 64))]
        return Case({"model.onnx": bytes(data)}, "bytes")

    return build()


def _set_dims(value_info: onnx.ValueInfoProto, dims: list[int | str]) -> None:
    shape = value_info.type.tensor_type.shape
    del shape.dim[:]
    for dim in dims:
        entry = shape.dim.add()
        if isinstance(dim, str):
            entry.dim_param = dim
        else:
            entry.dim_value = dim


def mutated_graphs() -> st.SearchStrategy[Case]:
    """A seed graph with absurd or negative dims, wrong dtypes, a cycle, broken tensors, odd
    opsets or attributes, or weights in external files inside and outside its folder."""

    @st.composite
    def build(draw) -> Case:
        model = onnx.ModelProto()
        model.ParseFromString(draw(st.sampled_from(_SEED_BYTES)))
        graph = model.graph
        outside: dict[str, bytes] = {}
        files: dict[str, bytes] = {}
        kinds = draw(st.lists(st.sampled_from(_GRAPH_MUTATIONS), min_size=1, max_size=3))
        for kind in kinds:
            if kind == "input_dims" and graph.input:
                value = draw(st.sampled_from(list(graph.input)))
                rank = draw(st.integers(0, 5))
                dims = draw(
                    st.lists(st.sampled_from(ABSURD_DIMS + ("n",)), min_size=rank, max_size=rank)
                )
                _set_dims(value, dims)
            elif kind == "input_dtype" and graph.input:
                draw(st.sampled_from(list(graph.input))).type.tensor_type.elem_type = draw(
                    st.sampled_from(DTYPES)
                )
            elif kind == "cycle" and graph.node:
                first, last = graph.node[0], graph.node[-1]
                if first.input and last.output:
                    first.input[0] = last.output[0]
            elif kind == "tensor_dims" and graph.initializer:
                tensor = draw(st.sampled_from(list(graph.initializer)))
                del tensor.dims[:]
                tensor.dims.extend(draw(st.lists(st.sampled_from(ABSURD_DIMS), max_size=4)))
            elif kind == "tensor_dtype" and graph.initializer:
                draw(st.sampled_from(list(graph.initializer))).data_type = draw(
                    st.sampled_from(DTYPES)
                )
            elif kind == "tensor_bytes" and graph.initializer:
                tensor = draw(st.sampled_from(list(graph.initializer)))
                raw = _tensor_bytes(tensor)
                tensor.ClearField("float_data")
                tensor.raw_data = raw[: draw(st.integers(0, len(raw)))]
            elif kind == "opset":
                del model.opset_import[:]
                model.opset_import.append(
                    helper.make_opsetid("", draw(st.sampled_from((-1, 0, 1, 6, 7, 13, 99))))
                )
            elif kind == "ir_version":
                model.ir_version = draw(st.sampled_from((0, 1, 3, 7, 10, 99)))
            elif kind == "op_type" and graph.node:
                node = draw(st.sampled_from(list(graph.node)))
                node.op_type = draw(st.sampled_from(("Conv", "Gemm", "MatMul", "Nope", "LSTM")))
            elif kind == "attribute" and graph.node:
                node = draw(st.sampled_from(list(graph.node)))
                name = draw(st.sampled_from(("group", "kernel_shape", "pads", "transB", "axis")))
                values = draw(st.lists(st.sampled_from(ABSURD_DIMS[:5]), min_size=1, max_size=4))
                del node.attribute[:]
                value = values[0] if name in ("group", "transB", "axis") else values
                node.attribute.append(helper.make_attribute(name, value))
            elif kind == "external" and graph.initializer:
                tensor = draw(st.sampled_from(list(graph.initializer)))
                raw = _tensor_bytes(tensor)
                location = draw(st.sampled_from(_LOCATIONS))
                offset = draw(st.sampled_from((0, 0, 4, -4, 2**40)))
                if location == "../outside.bin":
                    outside["outside.bin"] = raw
                elif not location.startswith("/") and ".." not in location:
                    files[location] = raw
                tensor.ClearField("float_data")
                tensor.ClearField("raw_data")
                tensor.data_location = TensorProto.EXTERNAL
                del tensor.external_data[:]
                for key, text in (
                    ("location", location),
                    ("offset", str(offset)),
                    ("length", str(len(raw))),
                ):
                    entry = tensor.external_data.add()
                    entry.key, entry.value = key, text
            elif kind == "drop_outputs":
                del graph.output[:]
        files["model.onnx"] = model.SerializeToString()
        return Case(files, "+".join(kinds), outside)

    return build()


def _tensor_bytes(tensor: onnx.TensorProto) -> bytes:
    """The tensor's data as an earlier mutation left it (possibly none)."""
    if tensor.data_location == TensorProto.EXTERNAL:
        return b""
    try:
        return tensor.raw_data or numpy_helper.to_array(tensor).tobytes()
    except Exception:  # already damaged by an earlier mutation of this case
        return b""


_GRAPH_MUTATIONS = (
    "input_dims",
    "input_dtype",
    "cycle",
    "tensor_dims",
    "tensor_dtype",
    "tensor_bytes",
    "opset",
    "ir_version",
    "op_type",
    "attribute",
    "external",
    "drop_outputs",
)
_LOCATIONS = ("weights.bin", "sub/weights.bin", "../outside.bin", "/etc/hostname", "missing.bin")


def bad_data() -> st.SearchStrategy[Case]:
    """A good seed model with an .npz of wrong keys, dtypes, ranks, sizes or labels."""

    @st.composite
    def build(draw) -> Case:
        seed = draw(st.sampled_from(_SEED_BYTES))
        model = onnx.load_from_string(seed)
        arrays = {}
        names = [i.name for i in model.graph.input] + ["x", "y", "other"]
        for name in draw(st.lists(st.sampled_from(names), min_size=0, max_size=4, unique=True)):
            dtype = draw(st.sampled_from(NPZ_DTYPES))
            shape = tuple(draw(st.lists(st.integers(0, 6), max_size=5)))
            arrays[name] = np.zeros(shape, dtype=dtype)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return Case({"model.onnx": seed, "data.npz": buffer.getvalue()}, "npz")

    return build()


def any_case() -> st.SearchStrategy[Case]:
    return st.one_of(mutated_bytes(), mutated_graphs(), bad_data())
