"""The PyInstaller bundle builds and works as a user runs it: CLI, benchmark child process,
the GUI starting up, and a plain message for torch files (the bundle ships without torch)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, RESOURCES

# PyInstaller takes about 2.5 minutes on two quiet cores and over 5 on two shared ones; the
# first test of the module pays for the build
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("bundle")
    pyinstaller = Path(sys.executable).with_name("pyinstaller")
    build = subprocess.run(
        [
            str(pyinstaller),
            "--noconfirm",
            "--distpath",
            str(work / "dist"),
            "--workpath",
            str(work / "build"),
            str(REPO / "packaging" / "compressor-gui.spec"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    return work / "dist" / "compressor-gui" / "compressor-gui"


def run(executable: Path, *args: str, timeout: int = 120, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(executable), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
        cwd=executable.parent,
    )


def test_bundle_ships_without_torch(bundle):
    assert not (bundle.parent / "_internal" / "torch").exists()


def test_bundled_cli_inspects_the_demo_model(bundle):
    result = run(bundle, "inspect", str(RESOURCES / "demo.onnx"))
    assert result.returncode == 0, result.stderr
    assert "total: 23 rows" in result.stdout


def test_bundled_benchmark_runs_its_child_process(bundle):
    result = run(bundle, "bench", str(RESOURCES / "demo.onnx"), "--runs", "20")
    assert result.returncode == 0, result.stderr
    assert "latency ms: p50" in result.stdout


def test_bundled_app_refuses_torch_files_in_plain_words(bundle):
    result = run(bundle, "inspect", str(RESOURCES / "demo.torchscript.pt"))
    assert result.returncode == 2
    assert "has no PyTorch" in result.stderr and "Traceback" not in result.stderr


def test_bundled_gui_starts_and_stays_up(bundle):
    with pytest.raises(subprocess.TimeoutExpired):
        run(bundle, str(RESOURCES / "demo.onnx"), timeout=12, QT_QPA_PLATFORM="offscreen")
