"""Flags several verbs share, written once: the output (--json, --report), how the model
is opened (--trust-pickle, --input-shape) and which data (--data, --eval-data, --samples)."""

from __future__ import annotations

import argparse

from compressor_gui.cli.inspect import add_loading_arguments
from compressor_gui.cli.reporting import add_report_argument

MODEL_HELP = "ONNX, TorchScript (.pt) or torch.export (.pt2) file"


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The tail of every job verb: --json, --report and how the model is opened."""
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_report_argument(parser)
    add_loading_arguments(parser)


def add_data_argument(parser: argparse.ArgumentParser, help: str, flag: str = "--data") -> None:
    """`--data D` (or `--eval-data E`): a dataset file or folder; `help` says its role."""
    parser.add_argument(flag, metavar=flag.removeprefix("--")[0].upper(), help=help)


def add_samples_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--samples", type=int, default=256, help="use the first N samples (default 256)"
    )
