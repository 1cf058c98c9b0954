"""`--report out.html` for every job verb: the job's report (core/report.py) as a
self-contained HTML page with its JSON beside it, written after the job succeeds."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from compressor_gui.core.errors import CompressorError
from compressor_gui.core.report import Report, report_paths, write_report


def _report_path(text: str) -> Path:
    try:
        return report_paths(text)[0]
    except CompressorError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_report_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--report",
        type=_report_path,
        metavar="OUT.html",
        help="also write the result as a self-contained HTML report, with OUT.json beside it",
    )


def save_report(args: argparse.Namespace, build: Callable[[], Report]) -> None:
    """Write the report `build` makes when --report was given; say where on stderr (stdout
    may be JSON)."""
    if args.report is None:
        return
    page, data = write_report(build(), args.report)
    print(f"report: {page} (and {data.name})", file=sys.stderr)
