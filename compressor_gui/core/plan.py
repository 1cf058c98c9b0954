"""CompressionPlan: one setting per layer (bits, granularity, prune ratio and pattern).

A plan is data: it round-trips through JSON/YAML recipes, may name layers by glob pattern
("*conv*": 8), and predicts its own size and MACs from an inventory without touching the
graph, fast enough for the GUI to call on every slider move.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compressor_gui.core.errors import PlanError
from compressor_gui.core.int8_forms import FORM_CHOICES

BIT_WIDTHS = (32, 16, 8, 4, 2, 1)
PRUNE_PATTERNS = ("unstructured", "2:4", "channel")
MAX_PRUNE_RATIO = 0.95
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# Activation ranges at the 99.99th percentile: one rare peak no longer coarsens a tensor's
# INT8 steps for every other value (layers-only INT8 on the AVX2 EPYC: PP-OCR det cosine
# 0.909 -> 0.954, rec 0.934 -> 0.949, PicoDet 0.963 -> 0.964; the demo 100 % -> 99.8 % top-1).
DEFAULT_CALIBRATION = "percentile"
IMPORTANCES = ("l1", "l2", "bn_scale")
DEFAULT_MAX_DROP_PT = 1.0

# Layer kinds whose main weight can be stored in fewer than 16 bits or pruned.
QUANTIZABLE_KINDS = (
    "conv",
    "depthwise",
    "group_conv",
    "conv_transpose",
    "linear",
    "rnn",
    "embedding",
)
PRUNABLE_KINDS = ("conv", "depthwise", "group_conv", "conv_transpose", "linear")
# Sizes the quantizer really writes: INT4 MatMul/Gemm weights (MatMulNBits) get one float32
# scale and a 4-bit zero point per block of this many values, INT4 conv weights one float32
# scale per block along the input channels; other INT4, INT8 and 2/1-bit weights one float32
# scale per output channel (INT8 also an 8-bit zero point).
INT4_BLOCK_SIZE = 32
_SCALE_BYTES = 4


@dataclass(frozen=True)
class LayerSetting:
    """What to do to one layer. 32 bits and prune_ratio 0 mean: leave it alone."""

    bits: int = 32
    per_channel: bool = True
    symmetric: bool = True
    prune_ratio: float = 0.0
    prune_pattern: str = "unstructured"

    def __post_init__(self) -> None:
        if self.bits not in BIT_WIDTHS:
            raise PlanError(f"bits must be one of {BIT_WIDTHS}, not {self.bits}")
        if not 0.0 <= self.prune_ratio <= MAX_PRUNE_RATIO:
            raise PlanError(
                f"prune ratio must be within 0..{MAX_PRUNE_RATIO}, not {self.prune_ratio}"
            )
        if self.prune_pattern not in PRUNE_PATTERNS:
            raise PlanError(
                f"prune pattern must be one of {PRUNE_PATTERNS}, not {self.prune_pattern!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_value(
        cls, value: Any, base: LayerSetting | None = None, where: str = ""
    ) -> LayerSetting:
        """A setting from a recipe value: a bit width (8) or a mapping of fields over `base`."""
        base = base or cls()
        if isinstance(value, bool) or not isinstance(value, int | Mapping):
            raise PlanError(f"{where}: expected a bit width or a mapping, got {value!r}")
        if isinstance(value, int):
            return dataclasses.replace(base, bits=value)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise PlanError(
                f"{where}: unknown setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        try:
            return dataclasses.replace(base, **value)
        except PlanError as exc:
            raise PlanError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class LayerPrediction:
    """Predicted cost of one layer after the plan. `size_bytes` is the plain ONNX file;
    `sparse_size_bytes` the size if pruned zeros are stored compressed (CSR-like / 2:4)."""

    size_bytes: int
    sparse_size_bytes: int
    macs: int
    bits: int
    simulated: bool  # 2/1 bits: no runtime kernel, packed size is what a deployment would get


@dataclass(frozen=True)
class Prediction:
    """Per-layer and total predicted size and MACs (no graph rewrite: instant)."""

    layers: Mapping[str, LayerPrediction]
    size_bytes: int
    sparse_size_bytes: int
    macs: int
    original_size_bytes: int
    original_macs: int
    # what an ONNX file holds besides the weights (graph, names, metadata), carried over
    # unchanged into the predicted file; 0 where the file is no ONNX graph
    graph_bytes: int = 0

    @property
    def ratio(self) -> float:
        return self.size_bytes / self.original_size_bytes if self.original_size_bytes else 1.0

    @property
    def file_size_bytes(self) -> int:
        return self.size_bytes + self.graph_bytes

    @property
    def original_file_bytes(self) -> int:
        return self.original_size_bytes + self.graph_bytes

    @property
    def file_ratio(self) -> float:
        """Predicted file over the original file: the ratio Compress reports as "size"."""
        original = self.original_file_bytes
        return self.file_size_bytes / original if original else 1.0


@dataclass(frozen=True)
class CompressionPlan:
    """Per-layer settings keyed by `LayerInfo.name`; then glob `patterns` (the last matching
    one wins); layers matched by neither use `default`."""

    layers: Mapping[str, LayerSetting] = field(default_factory=dict)
    default: LayerSetting = LayerSetting()
    fuse: bool = True
    importance: str = "l1"  # channel pruning importance: l1 | l2 | bn_scale
    calibration: str = DEFAULT_CALIBRATION  # minmax | entropy | percentile
    patterns: tuple[tuple[str, LayerSetting], ...] = ()
    int8_form: str = "auto"  # auto (measured for the target CPU) | u8s8 | u8s8-rr | u8u8
    max_drop_pt: float = DEFAULT_MAX_DROP_PT  # accuracy budget: results over it are warned
    distill_epochs: int = 0  # recovery: train towards the original this long (0: none)

    def __post_init__(self) -> None:
        if isinstance(self.distill_epochs, bool) or not isinstance(self.distill_epochs, int):
            raise PlanError(f"distill_epochs must be a whole number, not {self.distill_epochs!r}")
        if self.distill_epochs < 0:
            raise PlanError(f"distill_epochs must be 0 or more, not {self.distill_epochs}")
        if self.int8_form not in FORM_CHOICES:
            raise PlanError(f"int8_form must be one of {FORM_CHOICES}, not {self.int8_form!r}")
        if not 0.0 <= self.max_drop_pt <= 100.0:
            raise PlanError(f"max_drop_pt must be within 0..100, not {self.max_drop_pt}")
        if self.calibration not in CALIBRATION_METHODS:
            raise PlanError(
                f"calibration must be one of {CALIBRATION_METHODS}, not {self.calibration!r}"
            )
        if self.importance not in IMPORTANCES:
            raise PlanError(f"importance must be one of {IMPORTANCES}, not {self.importance!r}")

    def setting(self, name: str) -> LayerSetting:
        found = self.layers.get(name)
        if found is not None:
            return found
        for pattern, setting in reversed(self.patterns):
            if fnmatch.fnmatchcase(name, pattern):
                return setting
        return self.default

    def with_layers(self, names: Iterable[str], **changes) -> CompressionPlan:
        """A new plan where the named layers get `changes` (e.g. bits=4) on their settings."""
        updated = dict(self.layers)
        for name in names:
            updated[name] = dataclasses.replace(self.setting(name), **changes)
        return dataclasses.replace(self, layers=updated)

    def with_layers_that_fit(
        self, layers: Iterable[Any], **changes: Any
    ) -> tuple[CompressionPlan, list[Misfit]]:
        """The plan with `changes` on each of `layers` (LayerInfo) that can take them, and why
        the others cannot: a selection of mixed layers gets the setting where it applies."""
        fitting: list[str] = []
        skipped: list[Misfit] = []
        for layer in layers:
            problems = misfits(layer, dataclasses.replace(self.setting(layer.name), **changes))
            if problems:
                skipped.append(problems[0])
            else:
                fitting.append(layer.name)
        return self.with_layers(fitting, **changes), skipped

    def with_prune_ratios(self, ratios: Mapping[str, float]) -> CompressionPlan:
        """A new plan where each named layer is pruned unstructured to its own ratio."""
        updated = dict(self.layers)
        for name, ratio in ratios.items():
            updated[name] = dataclasses.replace(
                self.setting(name), prune_ratio=ratio, prune_pattern="unstructured"
            )
        return dataclasses.replace(self, layers=updated)

    # --- applying to a model ---------------------------------------------------------------

    def effective(self, layer: Any) -> LayerSetting:
        """The setting that really applies to `layer` (a LayerInfo): patterns and the default
        only touch what they can (no INT4 on a BatchNorm, no pruning of an LSTM); a layer
        named explicitly is taken at its word (`validate` rejects impossible ones)."""
        setting = self.setting(layer.name)
        if layer.name in self.layers:
            return setting
        changes: dict[str, Any] = {}
        if setting.bits < 16 and layer.kind not in QUANTIZABLE_KINDS:
            changes["bits"] = 32
        if setting.bits < 32 and not layer.dtype.startswith("float"):
            changes["bits"] = 32  # already quantized or integer: nothing to reduce
        if setting.prune_ratio > 0 and layer.kind not in PRUNABLE_KINDS:
            changes["prune_ratio"] = 0.0
        return dataclasses.replace(setting, **changes) if changes else setting

    def resolved(self, inventory: Any) -> dict[str, LayerSetting]:
        """The effective setting of every layer of the inventory (after `validate`)."""
        self.validate(inventory)
        return {layer.name: self.effective(layer) for layer in inventory.layers}

    def validate(self, inventory: Any) -> None:
        """Raise PlanError naming every unknown layer, pattern matching nothing, or setting
        that cannot be applied to the layer it names."""
        by_name = {layer.name: layer for layer in inventory.layers}
        problems: list[str] = []
        for name, setting in self.layers.items():
            layer = by_name.get(name)
            if layer is None:
                close = [n for n in by_name if name.lower() in n.lower()][:3]
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                problems.append(f"no layer named {name!r} in the model{hint}")
                continue
            problems.extend(misfit.message for misfit in misfits(layer, setting))
        for pattern, _ in self.patterns:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in by_name):
                problems.append(f"pattern {pattern!r} matches no layer of the model")
        if problems:
            raise PlanError("the plan does not fit this model: " + "; ".join(problems))

    def predict(self, inventory: Any) -> Prediction:
        """Predicted size and MACs per layer and in total.

        Sizes: the main weight at `bits` (2/1-bit as packed bits) plus its scales (one per
        output channel, or per block of 32 for 4-bit linear layers); other tensors (bias) at
        32 bits, or 16 for FP16 layers. Unstructured and 2:4 pruning keep the dense file
        size; the sparse size counts kept values plus a 1-bit mask (unstructured) or 2-bit
        indices (2:4). Channel pruning removes that share of the layer's params and MACs,
        and the same share of the input channels of the next prunable layer in inventory
        order: fair for chains (residual adds tie channels; the pruner decides exactly).
        """
        layers: dict[str, LayerPrediction] = {}
        total_size = total_sparse = total_macs = 0
        input_keep = 1.0  # kept share of the input channels, from a channel-pruned producer
        for layer in inventory.layers:
            setting = self.effective(layer)
            macs = layer.macs or 0
            params_keep = 1.0
            if layer.kind in PRUNABLE_KINDS and input_keep < 1.0 and layer.kind != "depthwise":
                params_keep = input_keep
            if layer.kind in PRUNABLE_KINDS:
                input_keep = 1.0
            if setting.prune_ratio > 0 and setting.prune_pattern == "channel":
                kept = 1.0 - setting.prune_ratio
                params_keep *= kept
                input_keep = kept
            predicted = _predict_layer(layer, setting, params_keep)
            layers[layer.name] = dataclasses.replace(predicted, macs=int(macs * params_keep))
            total_size += predicted.size_bytes
            total_sparse += predicted.sparse_size_bytes
            total_macs += layers[layer.name].macs
        return Prediction(
            layers=layers,
            size_bytes=total_size,
            sparse_size_bytes=total_sparse,
            macs=total_macs,
            original_size_bytes=inventory.total_bytes,
            original_macs=inventory.total_macs,
        )

    # --- recipes ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-ready dict; settings equal to the default are still written explicitly."""
        return {
            "default": self.default.to_dict(),
            "layers": {name: s.to_dict() for name, s in self.layers.items()},
            "patterns": {pattern: s.to_dict() for pattern, s in self.patterns},
            "fuse": self.fuse,
            "importance": self.importance,
            "calibration": self.calibration,
            "int8_form": self.int8_form,
            "max_drop_pt": self.max_drop_pt,
            "distill_epochs": self.distill_epochs,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompressionPlan:
        """A plan from a recipe dict. Keys of `layers` with glob characters (* ? [) are
        patterns; values are a bit width or a mapping of LayerSetting fields over the default."""
        if not isinstance(data, Mapping):
            raise PlanError(f"a recipe is a mapping of settings, not {type(data).__name__}")
        known = {
            "default",
            "layers",
            "patterns",
            "fuse",
            "importance",
            "calibration",
            "int8_form",
            "max_drop_pt",
            "distill_epochs",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise PlanError(
                f"unknown recipe key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        default = LayerSetting.from_value(data.get("default", {}), where="default")
        layers: dict[str, LayerSetting] = {}
        patterns: list[tuple[str, LayerSetting]] = []
        for section in ("layers", "patterns"):
            entries = data.get(section) or {}
            if not isinstance(entries, Mapping):
                raise PlanError(f"{section} must map layer names to settings")
            for key, value in entries.items():
                setting = LayerSetting.from_value(value, default, where=f"{section}.{key}")
                if section == "patterns" or any(ch in str(key) for ch in "*?["):
                    patterns.append((str(key), setting))
                else:
                    layers[str(key)] = setting
        fuse = data.get("fuse", True)
        if not isinstance(fuse, bool):
            raise PlanError(f"fuse must be true or false, not {fuse!r}")
        return cls(
            layers=layers,
            default=default,
            fuse=fuse,
            importance=str(data.get("importance", "l1")),
            calibration=str(data.get("calibration", DEFAULT_CALIBRATION)),
            patterns=tuple(patterns),
            int8_form=str(data.get("int8_form", "auto")),
            max_drop_pt=_number(data.get("max_drop_pt", DEFAULT_MAX_DROP_PT), "max_drop_pt"),
            distill_epochs=data.get("distill_epochs", 0),
        )


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PlanError(f"{key} must be a number, not {value!r}")
    return float(value)


def load_recipe(path: str | os.PathLike[str]) -> CompressionPlan:
    """Read a recipe (.json, .yaml or .yml) into a plan, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise PlanError(f"recipe {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except (ValueError, ImportError) as exc:
        raise PlanError(f"recipe {path.name} is not valid JSON/YAML: {exc}") from exc
    except Exception as exc:  # yaml.YAMLError and friends
        raise PlanError(f"recipe {path.name} is not valid YAML: {exc}") from exc
    try:
        return CompressionPlan.from_dict(data or {})
    except PlanError as exc:
        raise PlanError(f"recipe {path.name}: {exc}") from None


def save_recipe(plan: CompressionPlan, path: str | os.PathLike[str]) -> Path:
    """Write the plan as JSON or YAML (by suffix), atomically."""
    from compressor_gui.core.model import atomic_write_text

    path = Path(path)
    if path.suffix.lower() == ".json":
        text = json.dumps(plan.to_dict(), indent=2) + "\n"
    elif path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        text = yaml.safe_dump(plan.to_dict(), sort_keys=False)
    else:
        raise PlanError(f"recipe {path.name}: use a .json, .yaml or .yml name")
    return atomic_write_text(path, text)


# --- helpers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Misfit:
    """Why one layer cannot take one setting: a short `reason` shared by every layer it
    applies to (for a one-line summary) and the full `message` naming the layer."""

    layer: str
    op_type: str
    reason: str
    message: str


def misfits(layer: Any, setting: LayerSetting) -> list[Misfit]:
    """Everything that keeps `layer` (a LayerInfo) from taking `setting`; empty if it can."""
    found = []
    if setting.bits < 16 and layer.kind not in QUANTIZABLE_KINDS:
        found.append(
            Misfit(
                layer.name,
                layer.op_type,
                f"cannot be quantized to {setting.bits} bits",
                f"{layer.name} ({layer.op_type}) cannot be quantized to {setting.bits} bits: "
                f"only weights of {', '.join(QUANTIZABLE_KINDS)} layers can (16 or 32 here)",
            )
        )
    if setting.bits < 32 and not layer.dtype.startswith("float"):
        found.append(
            Misfit(
                layer.name,
                layer.op_type,
                f"cannot be reduced to {setting.bits} bits (integer tensors)",
                f"{layer.name} is already {layer.dtype}: it cannot be quantized again",
            )
        )
    if setting.prune_ratio > 0 and layer.kind not in PRUNABLE_KINDS:
        found.append(
            Misfit(
                layer.name,
                layer.op_type,
                "cannot be pruned",
                f"{layer.name} ({layer.kind}) cannot be pruned",
            )
        )
    if setting.prune_ratio > 0 and setting.prune_pattern == "2:4":
        inner = layer.weight_shape[1] if len(layer.weight_shape) > 1 else 0
        if layer.kind == "depthwise" or inner * math.prod(layer.weight_shape[2:]) < 4:
            found.append(
                Misfit(
                    layer.name,
                    layer.op_type,
                    "cannot be pruned 2:4 (fewer than 4 inputs per output)",
                    f"{layer.name} has fewer than 4 inputs per output: no 2:4 groups",
                )
            )
    return found


def skipped_summary(skipped: Iterable[Misfit], most_op_types: int = 5) -> str:
    """One line for the layers a setting skipped: "12 layers skipped: 8 BatchNormalization,
    4 Add cannot be quantized to 8 bits" ("" when none was); each layer counts once, under
    its first reason."""
    by_reason: dict[str, dict[str, set[str]]] = {}
    layers: set[str] = set()
    for misfit in skipped:
        if misfit.layer in layers:
            continue
        by_reason.setdefault(misfit.reason, {}).setdefault(misfit.op_type, set()).add(misfit.layer)
        layers.add(misfit.layer)
    if not layers:
        return ""
    parts = []
    for reason, by_op in by_reason.items():
        counts = sorted(((len(names), op) for op, names in by_op.items()), key=lambda c: -c[0])
        shown = [f"{count} {op}" for count, op in counts[:most_op_types]]
        if rest := sum(count for count, _ in counts[most_op_types:]):
            shown.append(f"{rest} other")
        parts.append(f"{', '.join(shown)} {reason}")
    noun = "layer" if len(layers) == 1 else "layers"
    return f"{len(layers)} {noun} skipped: " + "; ".join(parts)


def lead_layer(layers: Sequence[Any]) -> Any:
    """The layer whose setting a selection's controls show: the first one that can be
    quantized (a BatchNorm first in the selection would always read 32 bits), else the first."""
    return next((layer for layer in layers if layer.kind in QUANTIZABLE_KINDS), layers[0])


def _predict_layer(layer: Any, setting: LayerSetting, params_keep: float) -> LayerPrediction:
    main_full = math.prod(layer.weight_shape) if layer.weight_shape else 0
    main = min(main_full + layer.coded_params, layer.params)
    rest = layer.params - main
    # scales run per output channel: axis 1 of an RNN's [directions, gates * hidden, in]
    channel_axis = 1 if layer.kind == "rnn" else 0
    out_channels = layer.weight_shape[channel_axis] if len(layer.weight_shape) > channel_axis else 1
    main = int(main * params_keep)
    itemsize = layer.size_bytes / layer.params if layer.params else 4.0
    rest_bytes = rest * (2 if setting.bits == 16 else itemsize)
    if setting.bits == 32:
        main_bytes = main * itemsize
    elif setting.bits == 16:
        main_bytes = main * 2
    elif setting.bits == 4 and layer.kind == "linear":
        blocks = math.ceil(main / INT4_BLOCK_SIZE)
        main_bytes = math.ceil(main / 2) + blocks * _SCALE_BYTES + math.ceil(blocks / 2)
    elif setting.bits == 4 and _conv_blocks(layer):
        main_bytes = math.ceil(main / 2) + _conv_blocks(layer) * params_keep * _SCALE_BYTES
    else:
        scales = (out_channels if setting.per_channel else 1) * (2 if layer.coded_params else 1)
        zero_points = scales if setting.bits == 8 else 0
        main_bytes = math.ceil(main * setting.bits / 8) + scales * _SCALE_BYTES + zero_points
    size = int(main_bytes + rest_bytes)
    sparse = size
    if setting.prune_ratio > 0 and setting.prune_pattern in ("unstructured", "2:4") and main:
        value_bits = 32 if setting.bits == 32 else setting.bits
        if setting.prune_pattern == "2:4":
            kept_values = main // 2
            index_bits = kept_values * 2
        else:
            kept_values = int(round(main * (1.0 - setting.prune_ratio)))
            index_bits = main  # one presence bit per position
        dense_values = math.ceil(main * value_bits / 8)
        sparse_values = math.ceil((kept_values * value_bits + index_bits) / 8)
        sparse = size - dense_values + min(dense_values, sparse_values)
    return LayerPrediction(
        size_bytes=size,
        sparse_size_bytes=int(sparse),
        macs=0,
        bits=setting.bits,
        simulated=setting.bits in (1, 2),
    )


def _conv_blocks(layer: Any) -> int:
    """INT4 scale count of a conv weight blocked along its input channels (0: not blocked,
    fewer input channels than one block, as in depthwise convs)."""
    shape = layer.weight_shape
    if layer.kind not in ("conv", "group_conv") or len(shape) < 2 or shape[1] < INT4_BLOCK_SIZE:
        return 0
    return shape[0] * math.ceil(shape[1] / INT4_BLOCK_SIZE) * math.prod(shape[2:])
