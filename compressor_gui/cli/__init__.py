"""Command line: `compressor-gui [MODEL]` opens the GUI; subcommands run the same jobs headless.

Each subcommand is a module in this package with `add_arguments(parser)` and `run(args) -> int`.
A CompressorError becomes its message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from compressor_gui.core.errors import CompressorError

# name -> (module, one-line help)
SUBCOMMANDS = {
    "inspect": ("inspect", "list every weight-bearing layer with params, bytes, MACs, sparsity"),
    "compress": ("compress", "quantize / prune / fuse a model from flags or a recipe"),
    "evaluate": (
        "evaluate",
        "accuracy and fidelity as a machine (local or SSH) computes them",
    ),
    "deploy": (
        "deploy",
        "build every form of a plan for a target, measure each there, export the fastest",
    ),
    "bench": ("bench", "benchmark a model on a local runtime or a saved SSH target"),
    "sensitivity": ("sensitivity", "measure how much each single change to each layer costs"),
    "autoplan": ("autoplan", "choose per-layer settings under a size or accuracy budget"),
    "targets": ("targets", "add, list, test or remove saved SSH benchmark targets"),
}


def _available_subcommands() -> dict[str, tuple[object, str]]:
    found = {}
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(f"compressor_gui.cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"compressor_gui.cli.{module_name}":
                raise
            continue
        found[name] = (module, help_text)
    return found


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, tuple[object, str]]]:
    parser = argparse.ArgumentParser(
        prog="compressor-gui",
        description="Inspect, compress and benchmark neural networks. "
        "With no subcommand, opens the desktop app (optionally on MODEL).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = _available_subcommands()
    for name, (module, help_text) in commands.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub)
    return parser, commands


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, commands = build_parser()
    if not argv or argv[0] not in commands and argv[0] not in ("-h", "--help"):
        return _open_gui(argv)
    args = parser.parse_args(argv)
    module, _ = commands[args.command]
    try:
        return int(module.run(args) or 0)
    except CompressorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and friends
        sys.stderr.close()
        return 0


def _open_gui(argv: list[str]) -> int:
    gui = argparse.ArgumentParser(prog="compressor-gui", add_help=False)
    gui.add_argument("model", nargs="?")
    args, _ = gui.parse_known_args(argv)
    from compressor_gui.ui.app import run_gui

    return run_gui(args.model)
