"""Jobs for tests/core/test_child_jobs.py: module-level, so a spawned process can import them."""

from __future__ import annotations

import ctypes
import time
from pathlib import Path

from compressor_gui.core.errors import PlanError
from compressor_gui.core.jobs import Progress


def counting(steps: int, cancel=None):
    for step in range(steps):
        yield Progress(step, steps, f"step {step}", payload={"square": step * step})
    return sum(range(steps))


def failing(cancel=None):
    yield Progress(0, 1, "about to fail")
    raise PlanError("layer '/nope' is not in this model")


def crashing(cancel=None):
    yield Progress(0, 1, "about to crash")
    ctypes.string_at(0)  # reads address 0: SIGSEGV, as a native crash in a runtime would


def slow_with_cleanup(marker: str, cancel=None):
    """Works until cancelled; its finally block must run in the child (temp files)."""
    Path(marker).write_text("running")
    try:
        while True:
            cancel.raise_if_cancelled()
            yield Progress(0, 1, "working")
            time.sleep(0.05)
    finally:
        Path(marker).write_text("cleaned up")


def buggy(cancel=None):
    """A bug (not bad input) in the child: its traceback exists only in the child."""
    yield Progress(0, 1, "about to hit a bug")
    return {}["missing key"]
