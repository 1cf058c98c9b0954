"""Jobs in a child process: progress and results cross over, errors keep their message, a
native crash is an error (not the end of the app), and a cancel runs the child's cleanup."""

from __future__ import annotations

import threading
import time

import pytest

from compressor_gui.core.errors import CompressorError, JobCancelled, PlanError
from compressor_gui.core.jobs import CancelToken, job_in_child_process, run_job
from compressor_gui.core.logs import InternalError
from tests.core import child_job_functions as jobs


def test_progress_payloads_and_the_result_come_back():
    steps = []
    result = run_job(job_in_child_process(jobs.counting, 5), steps.append)
    assert result == 10
    assert [s.message for s in steps] == [f"step {i}" for i in range(5)]
    assert steps[-1].payload == {"square": 16}


def test_an_error_in_the_child_keeps_its_type_and_message():
    with pytest.raises(PlanError, match="'/nope' is not in this model"):
        run_job(job_in_child_process(jobs.failing))


def test_a_bug_in_the_child_is_logged_there_and_named_to_the_parent(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSOR_GUI_LOG_DIR", str(tmp_path))  # the spawned child inherits it
    with pytest.raises(InternalError) as raised:
        run_job(job_in_child_process(jobs.buggy))
    assert str(raised.value) == (
        f"internal error: KeyError: 'missing key'; details in {tmp_path / 'compressor-gui.log'}"
    )
    log = (tmp_path / "compressor-gui.log").read_text()
    assert "Traceback" in log and "in buggy" in log


def test_a_native_crash_in_the_child_is_an_error_for_the_parent():
    with pytest.raises(CompressorError, match="compress crashed: its process died of SIGSEGV"):
        run_job(job_in_child_process(jobs.crashing, what="compress"))


def test_cancel_stops_the_child_and_runs_its_cleanup(tmp_path):
    marker = tmp_path / "marker"
    token = CancelToken()
    job = job_in_child_process(jobs.slow_with_cleanup, str(marker), cancel=token)
    next(job)  # the child is running
    threading.Timer(0.3, token.cancel).start()
    start = time.monotonic()
    with pytest.raises(JobCancelled):
        run_job(job)
    assert time.monotonic() - start < 5
    assert marker.read_text() == "cleaned up"
