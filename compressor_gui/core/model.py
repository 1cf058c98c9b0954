"""Load and save models safely: ONNX (with external data), TorchScript, torch.export `.pt2`.

Nothing here unpickles untrusted data unless the caller says the file is trusted: plain
`torch.save` files are opened with `weights_only=True` and refused when that is not enough.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from compressor_gui.core.errors import CompressionError, ModelLoadError, error_text
from compressor_gui.core.graph import external_data_files, iter_all_tensors

# TorchScript archives saved by our tools carry their example input shapes in this extra file,
# because a TorchScript module itself does not record the shapes it expects.
SHAPES_EXTRA_FILE = "compressor_gui_inputs.json"
ONNX_OPSET = 17


@dataclass(frozen=True)
class LoadedModel:
    """A model opened for the pipeline. `onnx_model` is None only when no ONNX could be made
    (for example a TorchScript file whose input shapes are unknown); `torch_module` is kept
    for torch sources because distillation needs it."""

    path: Path
    format: str  # "onnx" | "torchscript" | "pt2" | "state_dict"
    onnx_model: onnx.ModelProto | None
    torch_module: Any = None
    state_dict: dict[str, Any] | None = None
    input_shapes: tuple[tuple[int, ...], ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    external_data: tuple[Path, ...] = ()  # weight files beside an ONNX model

    @property
    def file_size_bytes(self) -> int:
        """What the model takes on disk, external weight files included."""
        return files_size_bytes((self.path, *self.external_data))

    @property
    def source(self) -> ModelSource:
        """How to open this model again (in a child process: a path, not the model)."""
        # a pickled module was only opened at all because the user trusted it
        return ModelSource(self.path, self.format == "torch", self.input_shapes)


@dataclass(frozen=True)
class ModelSource:
    """A model file and the options it was opened with; small enough to send anywhere."""

    path: Path
    trust_pickle: bool = False
    input_shapes: tuple[tuple[int, ...], ...] = ()

    def open(self) -> LoadedModel:
        return load_model(
            self.path, trust_pickle=self.trust_pickle, input_shapes=self.input_shapes or None
        )


def load_model(
    path: str | os.PathLike[str],
    *,
    trust_pickle: bool = False,
    input_shapes: Sequence[Sequence[int]] | None = None,
    max_bytes: int | None = None,
) -> LoadedModel:
    """Open any supported model file, or raise ModelLoadError saying what is wrong and what
    to do about it. `input_shapes` (the user's answer for dynamic dims) travel with the model
    to every job; they also let torch sources without recorded shapes become ONNX."""
    path = Path(path)
    head = _check_readable_file(path)
    limit = _memory_limit_bytes() if max_bytes is None else max_bytes
    size = path.stat().st_size
    if size > limit:
        raise ModelLoadError(
            f"{path.name} is {size / 2**30:.1f} GiB, more than this machine can hold in memory "
            f"({limit / 2**30:.1f} GiB usable)"
        )
    shapes = tuple(tuple(int(d) for d in s) for s in input_shapes) if input_shapes else None
    if head.startswith(b"PK\x03\x04"):
        return _load_zip(path, trust_pickle=trust_pickle, input_shapes=shapes)
    if head[:1] == b"\x80" and path.suffix.lower() in {".pt", ".pth", ".pkl", ".bin", ".ckpt"}:
        return _load_torch_pickle(path, trust_pickle=trust_pickle, input_shapes=shapes)
    _refuse_text(path, head)
    model, external = _load_onnx_and_data(path, max_bytes=limit)
    return LoadedModel(
        path=path,
        format="onnx",
        onnx_model=model,
        input_shapes=shapes or (),
        external_data=external,
    )


def load_onnx(path: Path, *, max_bytes: int | None = None) -> onnx.ModelProto:
    """Parse an ONNX file and its external data, turning parser failures into plain words."""
    path = Path(path)
    _refuse_text(path, _check_readable_file(path))
    return _load_onnx_and_data(path, max_bytes=max_bytes)[0]


def _load_onnx_and_data(
    path: Path, *, max_bytes: int | None
) -> tuple[onnx.ModelProto, tuple[Path, ...]]:
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends for damaged files
        raise ModelLoadError(
            f"{path.name} is not a valid ONNX file (it could not be parsed: "
            f"{error_text(exc, 200)}); it may be truncated or another kind of file"
        ) from exc
    if not model.graph.node and not model.graph.initializer:
        raise ModelLoadError(
            f"{path.name} is not an ONNX model: it parsed, but holds no graph "
            f"(it starts with {_read_head(path, 8)!r})"
        )
    _check_text(model, path)
    if not _MIN_IR_VERSION <= model.ir_version <= onnx.IR_VERSION:
        raise ModelLoadError(
            f"{path.name} declares ONNX IR version {model.ir_version}; this tool reads versions "
            f"{_MIN_IR_VERSION} to {onnx.IR_VERSION}: the file is damaged, or re-export it"
        )
    external = external_data_files(model)
    _refuse_data_outside(path, external)
    missing = sorted(f for f in external if not (path.parent / f).is_file())
    if missing:
        raise ModelLoadError(
            f"{path.name} keeps its weights in {', '.join(missing)}, which is missing next to it "
            f"in {path.parent}; copy the data file(s) beside the model"
        )
    total = files_size_bytes([path, *(path.parent / f for f in external)])
    if max_bytes is not None and total > max_bytes:
        raise ModelLoadError(
            f"{path.name} with its external data is {total / 2**30:.1f} GiB, more than this "
            f"machine can hold in memory ({max_bytes / 2**30:.1f} GiB usable)"
        )
    if external:
        try:
            onnx.load_external_data_for_model(model, str(path.parent))
        except Exception as exc:
            raise ModelLoadError(
                f"{path.name}: its external weights could not be read ({error_text(exc, 200)})"
            ) from exc
    _check_tensors(model, path)
    return model, tuple(path.parent / f for f in sorted(external))


_MIN_IR_VERSION = 3  # ONNX 1.0 (2017); earlier files cannot even name their opset


def _check_text(model: onnx.ModelProto, path: Path) -> None:
    """Every name and string of the graph must be valid UTF-8. Protobuf hands a damaged one
    back as bytes, which then fails (UnicodeDecodeError) wherever it is first copied; check
    once here instead. Tensor data is not touched (it can be gigabytes)."""

    def walk(message) -> None:
        if isinstance(message, onnx.TensorProto):
            check(message.name)
            return
        for descriptor, value in message.ListFields():
            if descriptor.type == descriptor.TYPE_STRING:
                for text in value if descriptor.is_repeated else (value,):
                    check(text)
            elif descriptor.type == descriptor.TYPE_MESSAGE:
                for item in value if descriptor.is_repeated else (value,):
                    walk(item)

    def check(text: str | bytes) -> None:
        if isinstance(text, bytes):
            raise ModelLoadError(
                f"{path.name} is damaged: it holds a name that is not valid text ({text[:40]!r})"
            )

    walk(model)


def _refuse_data_outside(path: Path, locations: set[str]) -> None:
    """A model may only read weight files in its own folder (or below it): a location that
    is absolute or climbs out (`../`, a link) could make us read any file on the machine."""
    folder = path.parent.resolve()
    for location in sorted(locations):
        target = (path.parent / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(folder):
            raise ModelLoadError(
                f"{path.name} asks to read its weights from {location}, outside its own folder "
                f"{path.parent}; refused: put the data file beside the model and fix its path"
            )


# bits per value of the packed sub-byte types (raw data holds ceil(count * bits / 8) bytes)
_PACKED_BITS = {21: 4, 22: 4, 23: 4, 25: 2, 26: 2, 27: 6, 28: 6}
_MAX_ELEMENTS = 2**62  # numpy cannot even describe a larger shape (empty or not)
_TWO_PER_VALUE = {onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128}


def _check_tensors(model: onnx.ModelProto, path: Path) -> None:
    """Every stored tensor has a known type, non-negative dims and as much data as its dims
    need: a damaged file is refused here, in words, not deep inside numpy later."""
    from onnx import _mapping

    for tensor in iter_all_tensors(model.graph):
        where = f"{path.name}: tensor {tensor.name!r}"
        if tensor.data_type not in _mapping.TENSOR_TYPE_MAP:
            raise ModelLoadError(
                f"{where} has an unknown data type ({tensor.data_type}); the file is damaged "
                "or from a newer ONNX than this tool reads"
            )
        if any(d < 0 for d in tensor.dims):
            raise ModelLoadError(f"{where} has a negative dimension {list(tensor.dims)}")
        if math.prod(d for d in tensor.dims if d) >= _MAX_ELEMENTS:
            raise ModelLoadError(f"{where} has dims {list(tensor.dims)} no array can have")
        count = math.prod(tensor.dims)
        if tensor.HasField("raw_data"):
            if tensor.data_type == onnx.TensorProto.STRING:
                raise ModelLoadError(f"{where} stores strings as raw bytes, which ONNX forbids")
            bits = _PACKED_BITS.get(tensor.data_type)
            if bits is None:
                bits = _mapping.TENSOR_TYPE_MAP[tensor.data_type].np_dtype.itemsize * 8
            held, needed = len(tensor.raw_data), math.ceil(count * bits / 8)
        elif tensor.data_type in _PACKED_BITS:
            continue  # packed values in typed fields: onnx unpacks them itself
        else:
            field_name = onnx.helper.tensor_dtype_to_field(tensor.data_type)
            held = len(getattr(tensor, field_name))
            needed = count * (2 if tensor.data_type in _TWO_PER_VALUE else 1)
        if held != needed:
            raise ModelLoadError(
                f"{where} has dims {list(tensor.dims)}, which need {needed} stored values, "
                f"but it holds {held}: the file is damaged or was cut short"
            )


def save_onnx(model: onnx.ModelProto, path: str | os.PathLike[str]) -> Path:
    """Write an ONNX model atomically: temp files in the target folder, renamed when complete.
    Models over 1.8 GB get their weights in `<name>.data` (protobuf cannot hold 2 GB)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    large = model.ByteSize() > 1_800_000_000 if _all_inline(model) else True
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
        tmp_model = Path(tmp) / path.name
        data_name = f"{path.name}.data"
        try:
            if large:
                onnx.save_model(
                    model,
                    str(tmp_model),
                    save_as_external_data=True,
                    all_tensors_to_one_file=True,
                    location=data_name,
                    size_threshold=1024,
                )
                os.replace(Path(tmp) / data_name, path.parent / data_name)
            else:
                onnx.save_model(model, str(tmp_model))
        except Exception as exc:
            raise CompressionError(f"could not write {path}: {error_text(exc, 200)}") from exc
        os.replace(tmp_model, path)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def torch_to_onnx(
    module: Any, input_shapes: Sequence[Sequence[int]], *, name: str = "model"
) -> onnx.ModelProto:
    """Export a torch module (eager, TorchScript or ExportedProgram) to an ONNX model in memory."""
    torch = _import_torch()

    args = tuple(torch.zeros(*shape) for shape in input_shapes)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{name}.onnx"
        try:
            if isinstance(module, torch.jit.ScriptModule):
                # The dynamo exporter cannot trace TorchScript; the TorchScript exporter can.
                # No constant folding: BatchNorm stays visible, for the inventory and fusion.
                torch.onnx.export(
                    module,
                    args,
                    str(out),
                    dynamo=False,
                    opset_version=ONNX_OPSET,
                    do_constant_folding=False,
                )
            else:
                torch.onnx.export(
                    module, args, str(out), dynamo=True, opset_version=18, external_data=False
                )
            model = onnx.load(str(out))
        except Exception as exc:
            raise ModelLoadError(
                f"{name} could not be converted to ONNX ({error_text(exc, 200)}); "
                "export it to ONNX yourself and open the .onnx"
            ) from exc
    return model


# --- helpers -------------------------------------------------------------------------------


def _import_torch():
    """PyTorch is needed only for torch files; the bundled app ships without it (700 MB)."""
    try:
        import torch
    except ImportError as exc:
        raise ModelLoadError(
            "this is a PyTorch file, and this build of compressor-gui has no PyTorch; "
            "export the model to ONNX, or use the pip-installed compressor-gui"
        ) from exc
    return torch


def _check_readable_file(path: Path) -> bytes:
    if not path.exists():
        raise ModelLoadError(f"{path} does not exist")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a folder; open the model file inside it")
    if path.stat().st_size == 0:
        raise ModelLoadError(
            f"{path.name} is empty (0 bytes); the download or copy may have failed"
        )
    try:
        return _read_head(path, 4096)
    except OSError as exc:
        raise ModelLoadError(f"{path.name} cannot be read: {exc.strerror}") from exc


def _refuse_text(path: Path, head: bytes) -> None:
    if _looks_like_text(head):
        preview = head[:40].decode("utf-8", "replace").splitlines()[0] if head.strip() else ""
        raise ModelLoadError(
            f"{path.name} is a text file, not a model (it starts with {preview!r}); "
            "open an .onnx, TorchScript .pt or torch.export .pt2 file"
        )


def _read_head(path: Path, count: int) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(count)


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t" for ch in text)


def _memory_limit_bytes() -> int:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40
    return int(total * 0.8)


def onnx_files(path: str | os.PathLike[str]) -> tuple[Path, ...]:
    """An ONNX file and the external weight files it names, which must travel with it."""
    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    return (path, *(path.parent / name for name in sorted(external_data_files(model))))


def file_size_bytes(path: str | os.PathLike[str]) -> int:
    """What a model takes on disk: the file and every weight file it needs (an ONNX model's
    external data, an OpenVINO IR's .bin). The one size function every report uses."""
    return files_size_bytes(model_files(path))


def files_size_bytes(files: Sequence[Path]) -> int:
    return sum(Path(f).stat().st_size for f in files)


def model_files(path: str | os.PathLike[str]) -> tuple[Path, ...]:
    """Every file a runnable model needs: an OpenVINO IR's .xml and .bin, or an ONNX file
    and its external weights."""
    path = Path(path)
    if path.suffix.lower() == ".xml":
        return path, path.with_suffix(".bin")
    return onnx_files(path)


def _all_inline(model: onnx.ModelProto) -> bool:
    return not external_data_files(model)


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except zipfile.BadZipFile as exc:
        raise ModelLoadError(
            f"{path.name} starts like a zip archive (PK) but is damaged or truncated: {exc}"
        ) from exc


def _load_zip(
    path: Path, *, trust_pickle: bool, input_shapes: tuple[tuple[int, ...], ...] | None
) -> LoadedModel:
    names = _zip_names(path)
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        return _load_torchscript(path, input_shapes)
    if any(n.endswith("archive_format") or "serialized_exported_program" in n for n in names):
        return _load_exported_program(path, input_shapes)
    if any(n.endswith("data.pkl") for n in names):
        return _load_torch_pickle(path, trust_pickle=trust_pickle, input_shapes=input_shapes)
    raise ModelLoadError(
        f"{path.name} is a zip archive but not a TorchScript, torch.export or torch.save file "
        f"(it holds {', '.join(names[:3]) or 'nothing'}...)"
    )


def _load_torchscript(path: Path, input_shapes: tuple[tuple[int, ...], ...] | None) -> LoadedModel:
    torch = _import_torch()

    extra = {SHAPES_EXTRA_FILE: ""}
    try:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:
        raise ModelLoadError(
            f"{path.name} looks like TorchScript but could not be loaded: {error_text(exc, 200)}"
        ) from exc
    module.eval()
    notes: list[str] = []
    if input_shapes is None and extra[SHAPES_EXTRA_FILE]:
        input_shapes = tuple(tuple(s) for s in json.loads(extra[SHAPES_EXTRA_FILE]))
    onnx_model = None
    if input_shapes is None:
        notes.append(
            "TorchScript does not record input shapes: layers are listed from the weights; give "
            "--input-shape to convert to ONNX for MACs and compression"
        )
    else:
        try:
            onnx_model = torch_to_onnx(module, input_shapes, name=path.name)
            notes.append(f"converted from TorchScript to ONNX with input shapes {input_shapes}")
        except ModelLoadError as exc:
            notes.append(str(exc))
    return LoadedModel(
        path=path,
        format="torchscript",
        onnx_model=onnx_model,
        torch_module=module,
        input_shapes=input_shapes or (),
        notes=tuple(notes),
    )


def _load_exported_program(
    path: Path, input_shapes: tuple[tuple[int, ...], ...] | None
) -> LoadedModel:
    torch = _import_torch()

    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise ModelLoadError(
            f"{path.name} looks like a torch.export archive but could not be loaded: "
            f"{error_text(exc, 200)}"
        ) from exc
    if input_shapes is None:
        input_shapes = tuple(
            tuple(int(d) for d in node.meta["val"].shape)
            for node in program.graph.nodes
            if node.op == "placeholder"
            and node.name in program.graph_signature.user_inputs
            and hasattr(node.meta.get("val"), "shape")
        )
    try:
        model = torch.onnx.export(program, dynamo=True, opset_version=18).model_proto
    except Exception as exc:
        raise ModelLoadError(
            f"{path.name} could not be converted to ONNX ({error_text(exc, 200)}); "
            "export it to ONNX yourself and open the .onnx"
        ) from exc
    return LoadedModel(
        path=path,
        format="pt2",
        onnx_model=model,
        torch_module=program,
        input_shapes=input_shapes,
        notes=(f"converted from torch.export to ONNX with input shapes {input_shapes}",),
    )


def _load_torch_pickle(
    path: Path, *, trust_pickle: bool, input_shapes: tuple[tuple[int, ...], ...] | None
) -> LoadedModel:
    torch = _import_torch()

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        if not trust_pickle:
            raise ModelLoadError(
                f"{path.name} is a pickled torch file that holds Python objects, not just "
                "tensors; unpickling it could run any code it contains, so it was not opened. "
                "If you trust its source, allow it with --trust-pickle (CLI) or confirm in the "
                "dialog; better, export it to ONNX or TorchScript"
            ) from exc
        obj = _load_trusted_pickle(path, exc)
    if isinstance(obj, torch.nn.Module):
        if not input_shapes:
            raise ModelLoadError(
                f"{path.name} holds a torch module but no input shape; give --input-shape"
            )
        obj.eval()
        return LoadedModel(
            path=path,
            format="torch",
            onnx_model=torch_to_onnx(obj, input_shapes, name=path.name),
            torch_module=obj,
            input_shapes=input_shapes,
            notes=("loaded from a trusted pickle and converted to ONNX",),
        )
    tensors = _flatten_tensors(obj)
    if not tensors:
        raise ModelLoadError(f"{path.name} holds no tensors (it is a {type(obj).__name__})")
    return LoadedModel(
        path=path,
        format="state_dict",
        onnx_model=None,
        state_dict=tensors,
        notes=("a state_dict: weights only, shown as tensors (no graph, no MACs)",),
    )


def _load_trusted_pickle(path: Path, safe_error: Exception) -> Any:
    torch = _import_torch()

    try:
        return torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ModelLoadError(f"{path.name} could not be unpickled: {error_text(exc, 200)}") from exc


def _flatten_tensors(obj: Any, prefix: str = "") -> dict[str, Any]:
    torch = _import_torch()

    if isinstance(obj, torch.Tensor):
        return {prefix or "tensor": obj}
    found: dict[str, Any] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            found.update(_flatten_tensors(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(obj, list | tuple):
        for index, value in enumerate(obj):
            found.update(_flatten_tensors(value, f"{prefix}.{index}" if prefix else str(index)))
    return found
