"""OpenVINO IR from an ONNX model: as it is (FP32 weights; the precision is a run-time hint)
or INT8 through NNCF post-training quantization, with the plan's float layers ignored.

IR is written with `Core.read_model` + `save_model` (no model converter); neither OpenVINO
nor NNCF can send usage telemetry here (see compressor_gui/__init__.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compressor_gui.core.data import Dataset
from compressor_gui.core.errors import CompressionError, error_text

NNCF_SUBSET_SIZE = 300  # NNCF's default calibration subset


@dataclass(frozen=True)
class IrModel:
    """An OpenVINO IR pair and what was done to make it."""

    xml_path: Path
    note: str

    @property
    def files(self) -> tuple[Path, Path]:
        return self.xml_path, self.xml_path.with_suffix(".bin")


def ir_files(xml_path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The .xml and its .bin: the two files that travel together."""
    xml_path = Path(xml_path)
    return xml_path, xml_path.with_suffix(".bin")


def export_ir(onnx_path: str | os.PathLike[str], xml_path: str | os.PathLike[str]) -> IrModel:
    """The ONNX model as OpenVINO IR with FP32 weights (the device chooses FP32/BF16/FP16
    compute from the precision hint at run time)."""
    import openvino as ov

    try:
        model = ov.Core().read_model(str(onnx_path))
    except Exception as exc:
        raise CompressionError(
            f"OpenVINO cannot read {Path(onnx_path).name}: {error_text(exc)}"
        ) from exc
    save_ir(model, xml_path)
    return IrModel(Path(xml_path), "OpenVINO IR, FP32 weights")


def save_ir(model: Any, xml_path: str | os.PathLike[str]) -> Path:
    """Write an ov.Model as .xml + .bin atomically (both renamed into place when complete)."""
    import openvino as ov

    xml_path = Path(xml_path)
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=xml_path.parent, prefix=f".{xml_path.name}.") as tmp:
        staged = Path(tmp) / xml_path.name
        ov.save_model(model, str(staged), compress_to_fp16=False)
        for source, final in zip(ir_files(staged), ir_files(xml_path), strict=True):
            os.replace(source, final)
    return xml_path


def float_layers(plan: Any, inventory: Any) -> list[str]:
    """Layers the plan could quantize but keeps at 16 bits or more: they stay float in every
    format (norms, activations and the like are the runtime's business)."""
    from compressor_gui.core.plan import QUANTIZABLE_KINDS

    settings = plan.resolved(inventory)
    return sorted(
        layer.name
        for layer in inventory.layers
        if layer.kind in QUANTIZABLE_KINDS and settings[layer.name].bits >= 16
    )


def nncf_int8(
    onnx_path: str | os.PathLike[str],
    xml_path: str | os.PathLike[str],
    calibration: Dataset,
    *,
    ignored: Iterable[str] = (),
    validation: Dataset | None = None,
    max_drop_pt: float = 1.0,
) -> IrModel:
    """INT8 IR by NNCF post-training quantization on `calibration`; `ignored` layers (ONNX
    node names, which OpenVINO keeps as op names) stay float. With labelled `validation`
    data, NNCF's accuracy control reverts the layers that cost most until the top-1 drop is
    within `max_drop_pt` points."""
    import nncf
    import openvino as ov

    nncf.set_log_level(logging.ERROR)
    model = ov.Core().read_model(str(onnx_path))
    present = {op.get_friendly_name() for op in model.get_ops()}
    ignored = sorted(set(ignored) & present)
    scope = nncf.IgnoredScope(names=ignored) if ignored else None
    samples = nncf.Dataset(list(calibration.batches(1)))
    subset = min(NNCF_SUBSET_SIZE, len(calibration))
    kept = f", {len(ignored)} layers kept float" if ignored else ""
    try:
        with _quiet_stdout():
            if validation is not None and validation.labels is not None:
                quantized = nncf.quantize_with_accuracy_control(
                    model,
                    samples,
                    nncf.Dataset(_labelled(validation)),
                    _top1,
                    max_drop=max_drop_pt / 100.0,
                    drop_type=nncf.DropType.ABSOLUTE,
                    subset_size=subset,
                    ignored_scope=scope,
                )
                how = f"NNCF INT8 with accuracy control (max drop {max_drop_pt:g} pt)"
            else:
                quantized = nncf.quantize(model, samples, subset_size=subset, ignored_scope=scope)
                how = "NNCF INT8 post-training quantization"
    except Exception as exc:  # NNCF raises its own and OpenVINO's types
        raise CompressionError(f"NNCF could not quantize the model: {error_text(exc)}") from exc
    save_ir(quantized, xml_path)
    fake_quantize = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())
    return IrModel(
        Path(xml_path),
        f"{how}, {subset} calibration samples, {fake_quantize} quantizers{kept}",
    )


def _labelled(dataset: Dataset) -> list[tuple[dict, int]]:
    return [
        (feed, int(label)) for feed, label in zip(dataset.batches(1), dataset.labels, strict=True)
    ]


def _top1(compiled: Any, items: Iterable[tuple[dict, int]]) -> float:
    """NNCF's validation function: top-1 of the compiled model's first output."""
    hits = total = 0
    for feed, label in items:
        hits += int(np.argmax(compiled(feed)[0]) == label)
        total += 1
    return hits / max(total, 1)


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """NNCF draws progress bars on stdout; a CLI printing JSON must not get them."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield
