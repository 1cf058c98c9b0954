"""Calibration and evaluation data: an .npz, the bundled demo split, or a folder of images.

Every source becomes a `Dataset` checked against the model's inputs, so a wrong shape, dtype
or missing key is reported before any inference runs. An array per model input holds the
samples on axis 0: either that axis *is* the model's batch axis ("batch" form, rank equal to
the input's; samples can be fed many at a time) or an extra one ("sample" form, rank + 1;
fed one at a time, e.g. a recurrent state or a scalar sample rate).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from compressor_gui.core.errors import CompressorError
from compressor_gui.core.shapes import (
    InputSpec,
    input_specs,
    random_feed,
    resolve_input_shapes,
    shape_text,
)

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
DEMO_MODEL = RESOURCES / "demo.onnx"
SPEC_FILE = "preprocess.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff")


@dataclass(frozen=True)
class Dataset:
    """Samples for every model input (axis 0), optional labels, and where they came from."""

    inputs: Mapping[str, np.ndarray]
    forms: Mapping[str, str]  # input name -> "batch" | "sample"
    labels: np.ndarray | None = None
    class_names: tuple[str, ...] = ()
    source: str = ""
    max_batch: int | None = None  # None: any batch size the samples allow
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def batches(self, batch_size: int = 64, limit: int | None = None) -> Iterator[dict]:
        """Feeds of up to `batch_size` samples (1 where an input is in sample form)."""
        count = len(self) if limit is None else min(limit, len(self))
        step = self.feed_step(batch_size)
        for start in range(0, count, step):
            stop = min(start + step, count)
            yield {
                name: (
                    array[start:stop] if self.forms[name] == "batch" else np.asarray(array[start])
                )
                for name, array in self.inputs.items()
            }

    def feed_step(self, batch_size: int = 64) -> int:
        """Samples per run: `batch_size`, 1 where an input is in sample form, at most the
        model's fixed batch (a remote runner feeds the same way, so outputs match)."""
        step = batch_size if all(f == "batch" for f in self.forms.values()) else 1
        if self.max_batch is not None:
            step = min(step, self.max_batch)
        return max(step, 1)

    def subset(self, count: int) -> Dataset:
        """The first `count` samples (calibration rarely needs more than a few hundred)."""
        return self.part(0, count)

    def part(self, start: int, stop: int | None = None) -> Dataset:
        """Samples start..stop (a held-out part is the tail of the data)."""
        labels = None if self.labels is None else self.labels[start:stop]
        inputs = {name: array[start:stop] for name, array in self.inputs.items()}
        return Dataset(
            inputs, self.forms, labels, self.class_names, self.source, self.max_batch, self.notes
        )


MIN_TUNING_SAMPLES = 32  # fewer samples than this in each half: no held-out part


def is_demo_model(path: str | os.PathLike[str]) -> bool:
    try:
        return Path(path).resolve() == DEMO_MODEL.resolve()
    except OSError:
        return False


def demo_dataset(model: onnx.ModelProto, split: str = "eval") -> Dataset:
    """The bundled demo data: "eval" (held-out, labeled) or "calib" (training samples)."""
    if split not in ("eval", "calib"):
        raise CompressorError(f"demo split is 'eval' or 'calib', not {split!r}")
    return load_dataset(RESOURCES / f"demo_{split}.npz", model)


def tuning_split(model: onnx.ModelProto, dataset: Dataset) -> tuple[Dataset, Dataset, str]:
    """(data to tune on, held-out data to measure on, how): a search must be judged on data
    it did not tune on. The demo's eval split is paired with its calibration split; other
    data is halved (too little to halve is used for both, and the note says so)."""
    if _same_file(dataset.source, RESOURCES / "demo_eval.npz"):
        tune = demo_dataset(model, "calib")
        return (
            tune,
            dataset,
            f"tuned on the demo's {len(tune)} calibration samples, "
            + (f"measured on its {len(dataset)} held-out samples"),
        )
    if len(dataset) < 2 * MIN_TUNING_SAMPLES:
        return dataset, dataset, f"only {len(dataset)} samples: tuned and measured on all of them"
    half = len(dataset) // 2
    return (
        dataset.part(0, half),
        dataset.part(half),
        f"tuned on the first {half} samples, measured on the other {len(dataset) - half}",
    )


def _same_file(source: str, path: Path) -> bool:
    try:
        return bool(source) and Path(source).resolve() == path.resolve()
    except OSError:
        return False


def load_dataset(path: str | os.PathLike[str], model: onnx.ModelProto) -> Dataset:
    """Open an .npz file or an image folder and check it against the model's inputs."""
    path = Path(path)
    if not path.exists():
        raise CompressorError(f"data {path} does not exist")
    if path.is_dir():
        return _image_folder(path, model)
    if path.suffix.lower() != ".npz":
        raise CompressorError(
            f"data {path.name}: give an .npz file (x[, y]) or a folder of images with {SPEC_FILE}"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except Exception as exc:  # zipfile / format errors
        raise CompressorError(f"data {path.name} is not a readable .npz file: {exc}") from exc
    return dataset_from_arrays(arrays, model, source=str(path))


def dataset_from_arrays(
    arrays: Mapping[str, np.ndarray], model: onnx.ModelProto, *, source: str = "arrays"
) -> Dataset:
    """Match arrays to model inputs: by input name, or `x` for a single-input model;
    `y` holds integer labels and `class_names` their names."""
    specs = input_specs(model)
    names = [s.name for s in specs]
    label = Path(source).name
    if all(s.name in arrays for s in specs):
        chosen = {s.name: arrays[s.name] for s in specs}
    elif len(specs) == 1 and "x" in arrays:
        chosen = {specs[0].name: arrays["x"]}
    else:
        wanted = "'x'" if len(specs) == 1 and names != ["x"] else ""
        wanted += (" or " if wanted else "") + ", ".join(repr(n) for n in names)
        raise CompressorError(
            f"data {label} has keys {', '.join(sorted(arrays)) or 'none'}; the model needs "
            f"{wanted} (one array per model input, samples on axis 0)"
        )
    inputs: dict[str, np.ndarray] = {}
    forms: dict[str, str] = {}
    max_batch: int | None = None
    for spec in specs:
        array, form = _check_input(spec, chosen[spec.name], label)
        inputs[spec.name], forms[spec.name] = array, form
        if form == "batch" and spec.shape and spec.shape[0] is not None:
            max_batch = spec.shape[0] if max_batch is None else min(max_batch, spec.shape[0])
    counts = {name: len(array) for name, array in inputs.items()}
    if len(set(counts.values())) > 1:
        raise CompressorError(f"data {label}: inputs hold different sample counts {counts}")
    count = next(iter(counts.values()))
    if count == 0:
        raise CompressorError(f"data {label} holds no samples")
    labels = arrays.get("y")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != count:
            raise CompressorError(
                f"data {label}: y must be {count} integer class labels, not "
                f"{labels.dtype} of shape {labels.shape}"
            )
    class_names = tuple(str(c) for c in arrays.get("class_names", ()))
    return Dataset(inputs, forms, labels, class_names, source, max_batch)


RANDOM_SOURCE = "random inputs: fidelity only"


def eval_data_beside(model_path: str | os.PathLike[str]) -> Path | None:
    """`<stem>_eval.npz` (or `_calib`) next to the model, as the demo ships its data."""
    path = Path(model_path)
    for suffix in ("_eval.npz", "_calib.npz"):
        candidate = path.with_name(path.stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def compress_data_file(
    model_path: str | os.PathLike[str], chosen: str | os.PathLike[str] | None
) -> Path | None:
    """The data Compress calibrates on: the user's choice, else none for the bundled demo (it
    calibrates on its calibration split and is measured on its held-out split), else the
    data shipped beside the model."""
    if chosen is not None:
        return Path(chosen)
    return None if is_demo_model(model_path) else eval_data_beside(model_path)


def eval_dataset(
    model_path: str | os.PathLike[str],
    model: onnx.ModelProto,
    data: str | os.PathLike[str] | None = None,
    input_shapes: Sequence[Sequence[int]] = (),
) -> Dataset:
    """What Evaluate runs on: the given data, else `<stem>_eval.npz` beside the model, the
    demo's held-out split, or random inputs of the resolved input shapes (labelled as good
    for fidelity only)."""
    data_file = data or eval_data_beside(model_path)
    if data_file is not None:
        return load_dataset(data_file, model)
    if is_demo_model(model_path):
        return demo_dataset(model, "eval")
    return random_dataset(model, shapes=resolve_input_shapes(model, input_shapes))


def save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """np.savez's layout, written by hand: savez takes names as keyword arguments, and an
    input called `file` would collide with its own parameter."""
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asarray(array), allow_pickle=False)
    return path


def random_dataset(
    model: onnx.ModelProto,
    count: int = 32,
    seed: int = 0,
    shapes: Mapping[str, Sequence[int]] | None = None,
) -> Dataset:
    """`count` made-up samples of the input `shapes` (default: dynamic dims 1, see
    `shapes.random_feed`): with no data, fidelity against the original can still be measured."""
    inputs = random_feed(model, shapes, count=count, seed=seed)
    forms = dict.fromkeys(inputs, "sample")
    return Dataset(inputs, forms, source=RANDOM_SOURCE)


def _check_input(spec: InputSpec, array: Any, label: str) -> tuple[np.ndarray, str]:
    array = np.asarray(array)
    rank = len(spec.shape)
    if array.ndim == rank and rank > 0:
        form, per_sample = "batch", array.shape[1:]
        expected = spec.shape[1:]
    elif array.ndim == rank + 1:
        form, per_sample = "sample", array.shape[1:]
        expected = spec.shape
    else:
        raise CompressorError(
            f"data {label}: {spec.name!r} has shape {array.shape}, but the model input is "
            f"{shape_text(spec.shape)}; give samples on axis 0 (rank {rank} or {rank + 1})"
        )
    for got, want in zip(per_sample, expected, strict=True):
        if want is not None and got != want:
            raise CompressorError(
                f"data {label}: {spec.name!r} has shape {array.shape}, but the model input is "
                f"{shape_text(spec.shape)}"
            )
    if form == "batch" and spec.shape[0] is not None and spec.shape[0] != 1:
        raise CompressorError(
            f"data {label}: the model's {spec.name!r} has a fixed batch of {spec.shape[0]}; "
            f"give an array of shape [N, {', '.join(str(d) for d in spec.shape)}]"
        )
    if array.dtype.kind != spec.dtype.kind and not (
        array.dtype.kind in "iu" and spec.dtype.kind in "iu"
    ):
        raise CompressorError(
            f"data {label}: {spec.name!r} is {array.dtype}, but the model wants {spec.dtype}"
        )
    return np.ascontiguousarray(array, dtype=spec.dtype), form


# --- image folders -----------------------------------------------------------------------


def _image_folder(folder: Path, model: onnx.ModelProto) -> Dataset:
    """Images (or .npy arrays) resized and normalized by the folder's preprocess.json:
    {"size": [H, W], "mean": [...], "std": [...], "scale": 1/255, "channels": "RGB" | "L"}.
    Images in subfolders are labeled by subfolder name, in sorted order."""
    spec_path = folder / SPEC_FILE
    if not spec_path.is_file():
        raise CompressorError(
            f"image folder {folder.name} needs a {SPEC_FILE} describing preprocessing, e.g. "
            '{"size": [224, 224], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], '
            '"scale": 0.00392157, "channels": "RGB"}'
        )
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        height, width = (int(v) for v in spec["size"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CompressorError(f'{spec_path}: needs "size": [H, W] ({exc})') from exc
    channels = str(spec.get("channels", "RGB"))
    if channels not in ("RGB", "L"):
        raise CompressorError(f"{spec_path}: channels is 'RGB' or 'L', not {channels!r}")
    depth = 3 if channels == "RGB" else 1
    mean = np.asarray(spec.get("mean", [0.0] * depth), np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec.get("std", [1.0] * depth), np.float32).reshape(-1, 1, 1)
    scale = float(spec.get("scale", 1.0 / 255.0))
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and (p.suffix.lower() in IMAGE_SUFFIXES or p.suffix.lower() == ".npy")
    )
    if not files:
        raise CompressorError(f"image folder {folder.name} holds no images or .npy arrays")
    classes = sorted({p.parent.name for p in files if p.parent != folder})
    images = [_read_image(p, channels, (height, width)) for p in files]
    x = (np.stack(images).astype(np.float32) * scale - mean) / std
    arrays: dict[str, np.ndarray] = {"x": x.astype(np.float32)}
    if classes and all(p.parent != folder for p in files):
        arrays["y"] = np.asarray([classes.index(p.parent.name) for p in files], np.int64)
        arrays["class_names"] = np.asarray(classes)
    return dataset_from_arrays(arrays, model, source=str(folder))


def _read_image(path: Path, channels: str, size: tuple[int, int]) -> np.ndarray:
    """One image as float32 CHW (values as stored, 0..255 for 8-bit files), resized."""
    from PIL import Image

    if path.suffix.lower() == ".npy":
        array = np.load(path, allow_pickle=False).astype(np.float32)
        if array.ndim == 2:
            array = array[:, :, None]
        if array.ndim != 3:
            raise CompressorError(f"{path.name}: an image array is HxW or HxWxC")
        if channels == "L" and array.shape[2] != 1:
            array = array.mean(axis=2, keepdims=True)
        elif channels == "RGB" and array.shape[2] == 1:
            array = np.repeat(array, 3, axis=2)
    else:
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert(channels), np.float32)
        except OSError as exc:
            raise CompressorError(f"{path.name} is not a readable image: {exc}") from exc
        if array.ndim == 2:
            array = array[:, :, None]
    chw = array.transpose(2, 0, 1)
    if chw.shape[1:] != size:
        height, width = size
        # Bilinear per channel in float ("F") mode, so values keep their range and precision.
        chw = np.stack(
            [
                np.asarray(
                    Image.fromarray(np.ascontiguousarray(plane), mode="F").resize(
                        (width, height), Image.Resampling.BILINEAR
                    ),
                    np.float32,
                )
                for plane in chw
            ]
        )
    return chw


# --- onnxruntime calibration ---------------------------------------------------------------


def calibration_reader(dataset: Dataset, limit: int = 256, batch_size: int = 16) -> Any:
    """An onnxruntime `CalibrationDataReader` over the first `limit` samples."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._iter = dataset.batches(batch_size, limit)

        def get_next(self) -> dict | None:
            return next(self._iter, None)

        def rewind(self) -> None:
            self._iter = dataset.batches(batch_size, limit)

    return _Reader()
