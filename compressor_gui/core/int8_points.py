"""INT8 sensitivity as onnxruntime computes it on this machine: one layer quantized at a time.

A float simulation of INT8 weights misses what the runtime really does to activations (and,
on CPUs without VNNI, the saturating U8S8 sums), so its INT8 points predicted a world the CPU
did not compute. Here the model is fused as Compress fuses it, calibrated once (onnxruntime's
calibration cache), and each layer is then quantized alone with the same form Compress would
choose, run in a real session, and scored. Calling the whole calibrating quantizer per point
would be 10-100x slower; re-using the calibration keeps a point to one QDQ pass + one session.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx

from compressor_gui.core.data import Dataset, calibration_reader
from compressor_gui.core.errors import CompressionError, CompressorError, error_text
from compressor_gui.core.evaluate import make_session
from compressor_gui.core.graph import contained
from compressor_gui.core.hardware import MachineInfo
from compressor_gui.core.int8_forms import FORMS, Int8Form
from compressor_gui.core.plan import CompressionPlan, LayerSetting
from compressor_gui.core.quant_passes import CALIBRATION_SAMPLES, Int8Options
from compressor_gui.core.quantize import quantize_model

RUNTIME_HOW = "onnxruntime INT8"


class RuntimeInt8Layers:
    """Prepared once per sweep: the fused model, its calibration ranges and the INT8 form;
    `first_output(layer, batches)` runs the model with only that layer quantized."""

    def __init__(self, model: onnx.ModelProto, dataset: Dataset, machine: MachineInfo) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="int8-points-")
        folder = Path(self._tmp.name)
        self.model = _fused(model, dataset)
        uniform = quantize_model(
            self.model,
            CompressionPlan(default=LayerSetting(bits=8), fuse=False),
            dataset,
            options=Int8Options(machine=machine),
        )
        if not uniform.int8_form_name:
            raise CompressionError("static INT8 did not quantize this model: no INT8 form")
        self.form: Int8Form = FORMS[uniform.int8_form_name]
        self.form_reason = uniform.int8_form
        self._source = folder / "fused.onnx"
        onnx.save(self.model, str(self._source))
        self._cache = folder / "calibration.json"
        self._dataset = dataset
        self._calibrate(folder / "calibrated.onnx")

    def close(self) -> None:
        self._tmp.cleanup()

    def _quantize(self, target: Path, nodes: Sequence[str] | None) -> None:
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

        weight_type = QuantType.QUInt8 if self.form.weight_type == "u8" else QuantType.QInt8
        reader = (
            None
            if self._cache.exists()
            else calibration_reader(self._dataset, CALIBRATION_SAMPLES, 16)
        )
        with contained():
            quantize_static(
                str(self._source),
                str(target),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=weight_type,
                reduce_range=self.form.reduce_range,
                nodes_to_quantize=list(nodes) if nodes is not None else None,
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
                calibration_cache_path=str(self._cache),
            )

    def _calibrate(self, target: Path) -> None:
        try:
            self._quantize(target, None)
        except Exception as exc:  # the quantizer raises anything on odd graphs
            raise CompressionError(f"INT8 calibration failed: {error_text(exc, 200)}") from exc

    def first_output(self, layer: str, batches: Sequence[dict]) -> np.ndarray:
        """The first output over all batches with only `layer` quantized in the chosen form."""
        target = Path(self._tmp.name) / "one_layer.onnx"
        try:
            self._quantize(target, [layer])
        except Exception as exc:
            raise CompressionError(f"{layer}: INT8 alone failed: {error_text(exc, 200)}") from exc
        session = make_session(target, threads=1)
        name = session.get_outputs()[0].name
        outputs = []
        for feed in batches:
            output = session.run([name], feed)[0]
            batched = all(np.ndim(v) and len(v) == len(output) for v in feed.values())
            outputs.append(output if batched else output[None])
        return np.concatenate(outputs)


def runtime_int8_points(model, dataset, batches, reference, todo, here, cache, notes, cancel):
    """Measure INT8 points with each layer really quantized (RuntimeInt8Layers),
    yielding (layer, option, (value, drop, output SQNR, how)) as each finishes; a layer the
    quantizer cannot take alone keeps its simulated point, with a note."""
    try:
        prepared = RuntimeInt8Layers(model, dataset, here)
    except CompressorError as exc:
        notes.append(f"INT8 points simulated (weights only): {exc}")
        return
    try:
        how = f"{RUNTIME_HOW} {prepared.form.name}"
        cache.int8_form = prepared.form.name
        notes.append(
            f"INT8 points: each layer quantized alone and run in onnxruntime on "
            f"{here.cpu_model} ({here.isa_class}); form {prepared.form_reason}"
        )
        for layer, option in todo:
            cancel.raise_if_cancelled()
            try:
                outputs = prepared.first_output(layer, batches)
            except CompressorError as exc:
                notes.append(f"{exc}: its INT8 point is simulated")
                continue
            value, out_db = reference.score(outputs)
            drop = 100.0 * (reference.baseline - value)
            yield layer, option, (value, drop, out_db, how)
    finally:
        prepared.close()


def _fused(model: onnx.ModelProto, dataset: Dataset) -> onnx.ModelProto:
    """The model as Compress quantizes it: BatchNorm folded (layer names survive), checked
    on the sweep's data as Compress checks it."""
    from compressor_gui.core.fuse import check_feeds, fuse_model

    try:
        return fuse_model(model, feeds=check_feeds(dataset))[0]
    except CompressorError:
        return model
