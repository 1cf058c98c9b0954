"""`compressor-gui inspect MODEL [--json]`: every weight-bearing layer and its true cost."""

from __future__ import annotations

import argparse
import json

from compressor_gui.core.inventory import LayerInfo, ModelInventory
from compressor_gui.core.jobs import run_job
from compressor_gui.core.model import LoadedModel, load_model
from compressor_gui.core.shapes import parse_shape
from compressor_gui.core.workflows import open_model_job
from compressor_gui.formatting import human_bytes, human_count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="ONNX, TorchScript (.pt) or torch.export (.pt2) file")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--all", action="store_true", help="also list 'other' tensors")
    add_loading_arguments(parser)


def add_loading_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every command that opens a model shares."""
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow unpickling a plain torch.save file (it can run code: only for trusted files)",
    )
    parser.add_argument(
        "--input-shape",
        action="append",
        metavar="DIMS",
        help="input shape like 1x3x224x224 (repeat per input, in order): the size every run "
        "of the model uses where it declares dynamic dims",
    )


def parse_shapes(specs: list[str] | None) -> list[tuple[int, ...]] | None:
    """`--input-shape` values (one per input, in order) as shapes; None when none given."""
    return [parse_shape(spec) for spec in specs] if specs else None


def open_model(args: argparse.Namespace) -> LoadedModel:
    return load_model(
        args.model, trust_pickle=args.trust_pickle, input_shapes=parse_shapes(args.input_shape)
    )


def run(args: argparse.Namespace) -> int:
    job = open_model_job(args.model, args.trust_pickle, parse_shapes(args.input_shape))
    opened = run_job(job)
    loaded, inventory = opened.loaded, opened.inventory
    if args.json:
        payload = {
            "model": str(loaded.path),
            "format": loaded.format,
            "file_size_bytes": loaded.file_size_bytes,
            "notes": list(loaded.notes),
            **inventory.to_dict(),
        }
        print(json.dumps(payload, indent=2))
        return 0
    print(format_report(loaded, inventory, show_other=args.all))
    return 0


def format_report(loaded: LoadedModel, inventory: ModelInventory, *, show_other: bool) -> str:
    rows: list[LayerInfo] = [
        layer for layer in inventory.layers if show_other or layer.kind != "other"
    ]
    others = [layer for layer in inventory.layers if layer.kind == "other"]
    header = (
        "layer",
        "op",
        "kind",
        "shape",
        "dtype",
        "params",
        "bytes",
        "MACs",
        "sparsity",
        "min",
        "max",
        "std",
    )
    table = [header]
    for layer in rows:
        table.append(
            (
                _shorten(layer.name, 44),
                layer.op_type,
                layer.kind,
                "x".join(map(str, layer.weight_shape)) or "scalar",
                layer.dtype,
                human_count(layer.params),
                human_bytes(layer.size_bytes),
                human_count(layer.macs),
                f"{layer.sparsity:.1%}",
                f"{layer.weight_min:.3g}",
                f"{layer.weight_max:.3g}",
                f"{layer.weight_std:.3g}",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [f"{loaded.path.name}  ({loaded.format}, {human_bytes(loaded.file_size_bytes)})"]
    lines += [f"  note: {note}" for note in loaded.notes]
    for spec in inventory.inputs:
        lines.append(f"  input  {spec.name}: {list(spec.shape)} {spec.dtype}")
    for spec in inventory.outputs:
        lines.append(f"  output {spec.name}: {list(spec.shape)} {spec.dtype}")
    lines += [f"  assumed: {text}" for text in inventory.assumptions]
    lines.append("")
    for index, row in enumerate(table):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    if others and not show_other:
        other_params = sum(layer.params for layer in others)
        lines.append(
            f"(+ {len(others)} other tensors: {human_count(other_params)} params, "
            f"{human_bytes(sum(layer.size_bytes for layer in others))}; --all lists them)"
        )
    unknown = inventory.macs_unknown
    lines.append("")
    lines.append(
        f"total: {len(inventory.layers)} rows, {human_count(inventory.total_params)} params "
        f"({inventory.total_params}), {human_bytes(inventory.total_bytes)}, "
        f"{human_count(inventory.total_macs)} MACs"
        + (f" (n/a for {len(unknown)} layers)" if unknown else "")
        + f", sparsity {inventory.total_zeros / max(inventory.total_params, 1):.1%}"
    )
    return "\n".join(lines)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3) :]
