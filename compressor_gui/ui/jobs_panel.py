"""Runs core job generators in a worker thread: progress bar, ETA, cancel, log.

A job is a core generator yielding `Progress`; superqt's `thread_worker` drives it off the
GUI thread and its signals bring each step back. Progress is painted on a 10 Hz timer, not
per step, so a job that yields thousands of times cannot flood the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Any

from pyqtgraph.util.garbage_collector import GarbageCollector
from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import GeneratorWorker, create_worker

from compressor_gui.core.advice import in_window_words
from compressor_gui.core.errors import CompressorError, JobCancelled
from compressor_gui.core.jobs import CancelToken, EtaEstimator, Progress
from compressor_gui.core.logs import out_of_memory_text, record_internal_error
from compressor_gui.core.shapes import InputShapeNeeded
from compressor_gui.formatting import human_seconds

JobFactory = Callable[[CancelToken], Generator[Progress, None, Any]]


def _drive(job: Generator[Progress, None, Any]) -> Generator[Progress, None, Any]:
    return (yield from job)


def error_text(exc: BaseException) -> str:
    """What the user reads: our own errors verbatim; anything else is an internal error, in
    one line naming the log that keeps its traceback."""
    if isinstance(exc, CompressorError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return out_of_memory_text(exc)
    return str(record_internal_error(exc, "a job"))


_garbage_collector: GarbageCollector | None = None


def _collect_garbage_in_the_gui_thread() -> None:
    """Python's cycle collector runs wherever an allocation triggers it; in a worker thread it
    can free a closed window's Qt objects there, whose destructors then wait for the GIL
    while the GUI thread waits for their lock: the app froze (a test run hung so, a job
    thread in gc holding a Qt mutex). pyqtgraph's collector disables automatic collection
    and collects on a timer in the GUI thread instead, once per process."""
    global _garbage_collector
    if _garbage_collector is None:
        _garbage_collector = GarbageCollector(interval=1.0)


class JobsPanel(QWidget):
    """One job at a time; emits `failed(title, message)` so the window can show a dialog."""

    busy_changed = Signal(bool)
    failed = Signal(str, str)
    # a job needs the input shape (core.shapes.InputShapeNeeded): why, and the shapes offered
    shape_needed = Signal(str, object)
    succeeded = Signal(str, object)  # the job's name and what it returned
    cancelled = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        _collect_garbage_in_the_gui_thread()
        self.title = QLabel("No job running")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.eta = QLabel("")
        self.eta.setMinimumWidth(90)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(2000)
        self.log.setPlaceholderText("Job log")

        row = QHBoxLayout()
        row.addWidget(self.bar, 1)
        row.addWidget(self.eta)
        row.addWidget(self.cancel_button)
        box = QVBoxLayout(self)
        box.setContentsMargins(4, 4, 4, 4)
        box.addWidget(self.title)
        box.addLayout(row)
        box.addWidget(self.log, 1)

        self._worker: GeneratorWorker | None = None
        self._job: Generator | None = None
        self._token: CancelToken | None = None
        self._eta: EtaEstimator | None = None
        self._last: Progress | None = None
        self._last_message = ""
        self._name = ""
        self._on_error_callback: Callable[[str], None] | None = None
        self._progress_callback: Callable[[Progress], None] | None = None
        self._succeeded = False
        self._started = 0.0
        self._paint_timer = QTimer(self)
        self._paint_timer.setInterval(100)
        self._paint_timer.timeout.connect(self._paint)

    @property
    def running(self) -> bool:
        return self._worker is not None

    def start(
        self,
        name: str,
        factory: JobFactory,
        on_result: Callable[[Any], None],
        on_error: Callable[[str], None] | None = None,
        progress: Callable[[Progress], None] | None = None,
    ) -> bool:
        """Start a job unless one is running; `on_result` gets its return value and
        `on_error` the message of a failure (default: the `failed` signal), `progress` every step
        (for live results carried in `Progress.payload`); all called in the GUI thread."""
        if self._worker is not None:
            self.log_line(f"'{name}' not started: '{self._name}' is still running")
            return False
        self._name = name
        self._on_error_callback = on_error
        self._progress_callback = progress
        self._token = CancelToken()
        try:
            self._job = factory(self._token)
        except Exception as exc:  # a job that cannot even start is reported like a failure
            self._name = name
            self._on_error(exc)
            return False
        self._eta = EtaEstimator()
        self._last = None
        self._last_message = ""
        self._succeeded = False
        self._started = time.monotonic()
        worker = create_worker(
            _drive,
            self._job,
            _start_thread=False,
            _connect={  # an errored handler given here replaces superqt's default re-raise
                "yielded": self._on_progress,
                "returned": lambda result: self._on_returned(on_result, result),
                "errored": self._on_error,
                "finished": self._on_finished,
            },
        )
        self._worker = worker
        self.title.setText(f"{name}…")
        self.bar.setRange(0, 0)  # busy until the first progress arrives
        self.cancel_button.setEnabled(True)
        self.log_line(f"▶ {name}")
        self._paint_timer.start()
        self.busy_changed.emit(True)
        worker.start()
        return True

    def cancel(self) -> None:
        if self._worker is None or self._token is None:
            return
        self.log_line(f"cancelling {self._name}…")
        self.cancel_button.setEnabled(False)
        self._token.cancel()
        self._worker.quit()

    def log_line(self, text: str) -> None:
        """One timestamped line, in the window's words (menus, not command-line flags)."""
        self.log.appendPlainText(f"{time.strftime('%H:%M:%S')}  {in_window_words(text)}")

    def _on_progress(self, step: object) -> None:
        if isinstance(step, Progress):
            self._last = step
            if self._progress_callback is not None:
                self._progress_callback(step)
            if step.message and step.message != self._last_message:
                self._last_message = step.message
                self.log_line(step.message)

    def _paint(self) -> None:
        step = self._last
        if step is None or self._eta is None:
            return
        if self.bar.maximum() == 0:
            self.bar.setRange(0, 1000)
        self.bar.setValue(round(step.fraction * 1000))
        left = self._eta.seconds_left(step.fraction)
        self.eta.setText(f"{step.fraction:.0%}, ETA {human_seconds(left)}")
        if step.message:
            self.title.setText(f"{self._name}: {step.message}")

    def _on_returned(self, on_result: Callable[[Any], None], result: Any) -> None:
        if self._token is not None and self._token.cancelled:
            return
        self._succeeded = True
        elapsed = time.monotonic() - self._started
        self.log_line(f"✔ {self._name} done in {elapsed:.1f} s")
        self.succeeded.emit(self._name, result)
        try:
            on_result(result)
        except Exception as exc:  # a view failing to show a result must not kill the app
            self._on_error(exc)

    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, JobCancelled):
            return  # reported by _on_finished
        # a shape question in the window's words: the dialog that follows asks for the size
        message = exc.reason if isinstance(exc, InputShapeNeeded) else error_text(exc)
        self.log_line(f"✘ {self._name} failed: {message}")
        if self._on_error_callback is not None:
            self._on_error_callback(message)
        elif isinstance(exc, InputShapeNeeded):
            self.shape_needed.emit(exc.reason, exc.suggested)
        else:
            self.failed.emit(self._name, message)

    def _on_finished(self) -> None:
        cancelled = self._token is not None and self._token.cancelled
        if cancelled and self._job is not None:
            self._job.close()  # runs the job's finally blocks (temp files) now, not at GC
            self.log_line(f"■ {self._name} cancelled")
        self._paint_timer.stop()
        self.bar.setRange(0, 1000)
        self.bar.setValue(1000 if self._succeeded else 0)
        self.title.setText(f"{self._name}: {'cancelled' if cancelled else 'finished'}")
        self.eta.clear()
        self.cancel_button.setEnabled(False)
        self._worker = None
        self._job = None
        self.busy_changed.emit(False)
        if cancelled:
            self.cancelled.emit(self._name)
