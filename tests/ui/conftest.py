"""Real windows on the bundled demo model, with settings and run folders in a temp dir."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from compressor_gui.ui.paths import demo_model_path


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Keep the user's recent files, theme and runs out of tests (platformdirs reads XDG);
    after each test, the last windows' cycles are collected here, in the GUI thread (the
    app's jobs panel turns automatic collection off: see jobs_panel)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    yield
    gc.collect()


@pytest.fixture(autouse=True, scope="package")
def _automatic_collection_back_after_the_gui_tests():
    """Tests that run after these (no Qt event loop, so no timer) collect as usual."""
    yield
    gc.enable()


@pytest.fixture
def demo_path() -> Path:
    """The bundled demo itself: the core recognises it and uses its calibration/eval splits.
    Nothing is written beside it (compressed models go to the runs folder under XDG_DATA)."""
    return demo_model_path()


@pytest.fixture
def window(qtbot):
    from compressor_gui.ui.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.jobs.cancel()
    qtbot.waitUntil(lambda: not win.jobs.running, timeout=20_000)


@pytest.fixture
def loaded(window, qtbot, demo_path):
    """The window with the demo model opened through the same path a user takes."""
    window.open_path(demo_path)
    qtbot.waitUntil(lambda: window.session.inventory is not None, timeout=20_000)
    qtbot.waitUntil(lambda: not window.jobs.running, timeout=5_000)
    return window


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A real OpenSSH server on 127.0.0.1, started the way tests/targets starts it."""
    from tests.targets.conftest import start_sshd

    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()
