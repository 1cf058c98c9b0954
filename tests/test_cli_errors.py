"""Never a traceback: a mistyped verb is an unknown command (the GUI is not opened), bad input
is one line and exit 2, an unexpected failure is one line naming the log and exit 3."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnx
import pytest

import compressor_gui.cli.inspect
from compressor_gui.cli import main
from tests import modelgen


def test_a_mistyped_verb_is_an_unknown_command_with_a_suggestion(capsys):
    assert main(["inspekt", "model.onnx"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'inspekt' (did you mean 'inspect'?)" in err
    assert "compress" in err and "sensitivity" in err  # the list of verbs


def test_a_missing_model_path_is_named_not_opened_in_the_gui(capsys):
    assert main(["missing.onnx"]) == 2
    assert "no file named 'missing.onnx'" in capsys.readouterr().err


def test_without_a_display_the_gui_is_refused_not_hung(tmp_path, demo_onnx):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "compressor_gui", str(demo_onnx)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 2
    assert "no display" in result.stderr and "Traceback" not in result.stderr


def test_an_unexpected_exception_is_one_line_naming_the_log_and_exit_3(
    tmp_path, monkeypatch, capsys
):
    def broken(_args):
        raise RuntimeError("boom in inspect")

    monkeypatch.setattr(compressor_gui.cli.inspect, "run", broken)
    model = tmp_path / "fc.onnx"
    onnx.save(modelgen.linear(), str(model))
    assert main(["inspect", str(model)]) == 3
    err = capsys.readouterr().err.strip()
    log = tmp_path / "logs" / "compressor-gui.log"
    assert err == f"internal error: RuntimeError: boom in inspect; details in {log}"
    text = log.read_text()
    assert "Traceback" in text and "boom in inspect" in text and "def broken" not in err


def _model_with_an_unused_initializer(path):
    model = modelgen.linear()
    model.graph.initializer.append(
        onnx.numpy_helper.from_array(__import__("numpy").zeros(3, "float32"), "unused")
    )
    onnx.save(model, str(path))


@pytest.mark.parametrize("quiet", [False, True])
def test_onnxruntime_warnings_stay_off_the_terminal(tmp_path, quiet):
    """onnxruntime warns natively ("Removing initializer") on stderr unless quieted."""
    path = tmp_path / "unused.onnx"
    _model_with_an_unused_initializer(path)
    code = (
        "from compressor_gui.core.logs import quiet_libraries\n"
        + ("quiet_libraries()\n" if quiet else "")
        + f"import onnxruntime as o; o.InferenceSession({str(path)!r}, "
        "providers=['CPUExecutionProvider'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert ("Removing initializer" in result.stderr) is not quiet


def test_running_out_of_memory_is_the_machine_not_a_bug(tmp_path, monkeypatch, capsys):
    def too_big(_args):
        raise MemoryError("Unable to allocate 16.0 TiB for an array")

    monkeypatch.setattr(compressor_gui.cli.inspect, "run", too_big)
    assert main(["inspect", "whatever.onnx"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ran out of memory (MemoryError: Unable to allocate 16.0 TiB")
    assert not (tmp_path / "logs").exists()


def _bench_until_its_runtime_child_runs(model) -> subprocess.Popen:
    """`bench` timing for a few seconds in its own process group, once its child runs."""
    import time

    process = subprocess.Popen(
        [sys.executable, "-m", "compressor_gui", "bench", str(model), "--duration", "3"]
        + ["--threads", "1", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    deadline = time.monotonic() + 120
    # two children: multiprocessing's resource tracker, then the runtime's process
    while len(children.read_text().split()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # the child is past its imports, in the timed loop
    return process


@pytest.mark.parametrize(
    ("signal_name", "to_group", "exit_code"),
    [("SIGINT", True, 130), ("SIGTERM", False, -15)],
    ids=["ctrl-c", "sigterm"],
)
def test_stopping_a_running_cli_leaves_no_traceback_from_its_child(
    demo_onnx, signal_name, to_group, exit_code
):
    import os
    import signal

    process = _bench_until_its_runtime_child_runs(demo_onnx)
    number = getattr(signal, signal_name)
    if to_group:  # Ctrl-C in a terminal reaches the whole process group
        os.killpg(process.pid, number)
    else:
        process.send_signal(number)
    # stderr closes when the child, which shares it, has ended too
    _, err = process.communicate(timeout=60)
    assert process.returncode == exit_code
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
