"""The on-disk cache of sensitivity points: one JSON file per model, data and measuring machine,
so a sweep that was stopped, or repeated, measures only the points it has not measured yet."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import onnx

from compressor_gui.core.data import Dataset
from compressor_gui.core.hardware import MachineInfo, machine_key
from compressor_gui.core.model import atomic_write_text

# Bump when the simulation changes, so cached points made by an older one are not reused.
SIM_VERSION = "sim-3"
_SAVE_INTERVAL_S = 2.0


# --- files ---------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where sweeps are cached: $COMPRESSOR_GUI_CACHE_DIR, else the user cache folder."""
    override = os.environ.get("COMPRESSOR_GUI_CACHE_DIR")
    if override:
        return Path(override) / "sensitivity"
    import platformdirs

    return Path(platformdirs.user_cache_dir("compressor-gui")) / "sensitivity"


def model_sha256(model: onnx.ModelProto) -> str:
    return hashlib.sha256(model.SerializeToString()).hexdigest()


def data_sha256(dataset: Dataset) -> str:
    digest = hashlib.sha256()
    arrays = sorted(dataset.inputs.items())
    if dataset.labels is not None:
        arrays.append(("__labels__", dataset.labels))
    for name, array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def point_key(layer: str, option: str) -> str:
    return f"{SIM_VERSION}|{option}|{layer}"


def _cache_file(folder: Path, model_hash: str, data_hash: str, machine: str) -> Path:
    """One file per model, data and measuring machine family + runtime version: INT8 points
    made on one CPU family are never reused on another."""
    family = hashlib.sha256(machine.encode()).hexdigest()[:12]
    return folder / f"{model_hash[:24]}-{data_hash[:24]}-{family}.json"


def _read_cache(path: Path, model_hash: str, data_hash: str, machine: str) -> dict[str, dict]:
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    expected = (model_hash, data_hash, machine)
    if (stored.get("model_sha256"), stored.get("data_sha256"), stored.get("machine")) != expected:
        return {}
    return dict(stored.get("points", {}))


def _write_cache(
    path: Path, model_hash: str, data_hash: str, machine: str, points: dict[str, dict]
) -> None:
    payload = {
        "model_sha256": model_hash,
        "data_sha256": data_hash,
        "machine": machine,
        "points": points,
    }
    atomic_write_text(path, json.dumps(payload))


class SweepCache:
    """The sweep's on-disk points for one model, data and measuring machine."""

    def __init__(self, model, dataset, here: MachineInfo, enabled: bool) -> None:
        self.model_hash, self.data_hash = model_sha256(model), data_sha256(dataset)
        self.machine = machine_key(here)
        self.path = _cache_file(cache_dir(), self.model_hash, self.data_hash, self.machine)
        self.enabled = enabled
        self.points = (
            _read_cache(self.path, self.model_hash, self.data_hash, self.machine) if enabled else {}
        )
        self._saved = time.monotonic()

    @property
    def int8_form(self) -> str:
        return self.points.get("__int8_form__", {}).get("name", "")

    @int8_form.setter
    def int8_form(self, name: str) -> None:
        self.points["__int8_form__"] = {"name": name}

    def int8_note(self, here: MachineInfo) -> tuple[str, ...]:
        """Where the cached INT8 points were measured, when there are any."""
        if not self.int8_form:
            return ()
        return (
            f"INT8 points: each layer quantized alone and run in onnxruntime on "
            f"{here.cpu_model} ({here.isa_class}), form {self.int8_form} (from the cache)",
        )

    def save(self) -> None:
        if self.enabled:
            _write_cache(self.path, self.model_hash, self.data_hash, self.machine, self.points)
            self._saved = time.monotonic()

    def save_now_and_then(self) -> None:
        if time.monotonic() - self._saved > _SAVE_INTERVAL_S:
            self.save()
