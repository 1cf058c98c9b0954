"""The app's own log: tracebacks of internal errors and the libraries' chatter, kept off the
user's terminal. A user sees one line and the log file's path, never a traceback.

Both doors use it: the CLI turns an unexpected exception into "internal error: ...; details
in LOG" and exit code 3; the GUI shows the same line in a dialog and keeps running.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from pathlib import Path

import platformdirs

from compressor_gui.core.errors import error_text

LOG_DIR_ENV = "COMPRESSOR_GUI_LOG_DIR"
LOG_FILE_NAME = "compressor-gui.log"
_ORT_FATAL_ONLY = 4  # onnxruntime's severities: 0 verbose .. 3 error, 4 fatal


class InternalError(Exception):
    """An unexpected failure (a bug, not bad input) whose traceback is already in the log.

    Raised where the traceback cannot travel (a child process) so the receiver can show the
    one line without logging it again."""

    def __init__(self, line: str, log_path: Path) -> None:
        super().__init__(line)
        self.line = line
        self.log_path = log_path

    def __reduce__(self):  # crosses process boundaries intact
        return (InternalError, (self.line, self.log_path))

    def __str__(self) -> str:
        return f"internal error: {self.line}; details in {self.log_path}"


def log_dir() -> Path:
    """Where the log lives: $COMPRESSOR_GUI_LOG_DIR, else the platform's user log folder."""
    override = os.environ.get(LOG_DIR_ENV)
    return Path(override) if override else Path(platformdirs.user_log_dir("compressor-gui"))


def log_path() -> Path:
    return log_dir() / LOG_FILE_NAME


def one_line(exc: BaseException) -> str:
    """The exception as one short line: its type and the first line of its message."""
    first = error_text(exc, 200)
    return f"{type(exc).__name__}: {first}" if str(exc).strip() else type(exc).__name__


def out_of_memory_text(exc: MemoryError) -> str:
    """A MemoryError is the machine's limit, not a bug: say so, and what to try."""
    detail = f" ({one_line(exc)})" if str(exc) else ""
    return (
        f"ran out of memory{detail}; close other programs, use smaller inputs or a machine "
        "with more memory"
    )


def record_internal_error(exc: BaseException, context: str = "") -> InternalError:
    """Append the traceback of `exc` to the log and return the error the user is shown.
    An InternalError already logged (in a child process) is returned as it is."""
    if isinstance(exc, InternalError):
        return exc
    path = log_path()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"--- {stamp} internal error{f' in {context}' if context else ''}\n")
            handle.write(details)
    except OSError:  # a log we cannot write must not hide the error itself
        path = Path("(log not writable: " + str(path) + ")")
    return InternalError(one_line(exc), path)


def quiet_libraries() -> None:
    """Route Python warnings and library logging to the log file, and turn onnxruntime's
    native logging down to fatal errors only (its failures reach us as exceptions anyway).
    Idempotent; called by the CLI, the GUI and every child process."""
    root = logging.getLogger()
    if not any(getattr(h, "_compressor_gui", False) for h in root.handlers):
        handler = _LazyFileHandler()
        handler._compressor_gui = True
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root.addHandler(handler)
        logging.captureWarnings(True)
    try:
        import onnxruntime

        onnxruntime.set_default_logger_severity(_ORT_FATAL_ONLY)
    except ImportError:  # the remote runner's machine, or a bundle without onnxruntime
        pass


class _LazyFileHandler(logging.Handler):
    """Opens the log file on the first record, so a run that logs nothing creates nothing."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            path = log_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(self.format(record) + "\n")
        except OSError:
            pass
