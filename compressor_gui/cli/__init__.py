"""Command line: `compressor-gui [MODEL]` opens the GUI; subcommands run the same jobs headless.

Each subcommand is a module in this package with `add_arguments(parser)` and `run(args) -> int`.
A CompressorError becomes its message on stderr and exit code 2; anything else is an internal
error: one line naming the log file that holds its traceback, exit code 3. Never a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from compressor_gui.core.errors import CompressorError
from compressor_gui.core.logs import out_of_memory_text, quiet_libraries, record_internal_error

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 3

# name -> (module, one-line help)
SUBCOMMANDS = {
    "inspect": ("inspect", "list every weight-bearing layer with params, bytes, MACs, sparsity"),
    "compress": ("compress", "quantize / prune / fuse a model from flags or a recipe"),
    "evaluate": (
        "evaluate",
        "accuracy and fidelity as a machine (local or SSH) computes them",
    ),
    "distill": ("distill", "train a compressed model towards the original to win accuracy back"),
    "deploy": (
        "deploy",
        "build every form of a plan for a target, measure each there, export the fastest",
    ),
    "bench": ("bench", "benchmark a model on a local runtime or a saved SSH target"),
    "sensitivity": ("sensitivity", "measure how much each single change to each layer costs"),
    "autoplan": ("autoplan", "choose per-layer settings under a size or accuracy budget"),
    "compare": ("compare", "where the accuracy went: per-layer error of a compressed model"),
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
    """Run a subcommand, or open the GUI on a model file; return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_libraries()
    try:
        return _dispatch(argv)
    except CompressorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and friends
        sys.stderr.close()
        return 0
    except MemoryError as exc:
        print(f"error: {out_of_memory_text(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:
        print(record_internal_error(exc, "compressor-gui " + " ".join(argv[:1])), file=sys.stderr)
        return EXIT_INTERNAL_ERROR


def _dispatch(argv: list[str]) -> int:
    parser, commands = build_parser()
    if argv and (argv[0] in commands or argv[0].startswith("-")):
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_usage(sys.stderr)
            return EXIT_USER_ERROR
        module, _ = commands[args.command]
        return int(module.run(args) or 0)
    if argv and not Path(argv[0]).exists():
        return _unknown_command(argv[0], commands)
    return _open_gui(argv[0] if argv else None, commands)


def _unknown_command(word: str, commands: dict[str, tuple[object, str]]) -> int:
    """A mistyped verb must not open the GUI (without a display it would hang)."""
    close = difflib.get_close_matches(word, list(commands), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    looks_like_path = "/" in word or "\\" in word or "." in word
    what = (
        f"no file named '{word}', and it is not a command"
        if looks_like_path
        else (f"unknown command '{word}'")
    )
    lines = [f"error: {what}{hint}", "commands:"]
    width = max(len(name) for name in commands)
    lines += [f"  {name.ljust(width)}  {help_text}" for name, (_, help_text) in commands.items()]
    lines.append("or give a model file to open it in the desktop app")
    print("\n".join(lines), file=sys.stderr)
    return EXIT_USER_ERROR


def _open_gui(model: str | None, commands: dict[str, tuple[object, str]]) -> int:
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY")
        or os.environ.get("WAYLAND_DISPLAY")
        or os.environ.get("QT_QPA_PLATFORM")
    ):
        raise CompressorError(
            "no display to show the desktop app on (DISPLAY is not set); run one of the "
            f"commands instead: {', '.join(commands)} (compressor-gui COMMAND --help)"
        )
    from compressor_gui.ui.app import run_gui

    return run_gui(model)
