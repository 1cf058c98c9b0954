"""`compressor-gui deploy` on the demo to this machine, run as a user runs it (a process of
its own, whose children inherit a guard refusing any non-loopback connection): the folder,
its run script, its report in a real browser engine, and nothing sent anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.report_pages import opened

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "resources" / "demo.onnx"
GUARD = REPO / "tests" / "netguard"


def _guarded_env(home: Path, log: Path) -> dict[str, str]:
    """A fresh home (no telemetry consent file: NNCF's default is to send) and the guard."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NNCF_CI", "NNCF_DEV")}
    env.update(HOME=str(home), PYTHONPATH=str(GUARD), NETGUARD_LOG=str(log))
    return env


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> tuple[Path, dict, Path]:
    root = tmp_path_factory.mktemp("deploy")
    log, home = root / "netguard.log", root / "home"
    home.mkdir()
    command = [
        sys.executable,
        "-m",
        "compressor_gui",
        "deploy",
        str(DEMO),
        "-o",
        str(root / "out"),
        "--forms",
        "ort-int8,ov-int8",
        "--rounds",
        "1",
        "--runs",
        "10",
        "--json",
        "--report",
        str(root / "deploy.html"),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, env=_guarded_env(home, log), timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return root / "out", json.loads(done.stdout), log


def test_deploy_writes_the_recommended_form_with_recipe_report_and_hashes(deployed) -> None:
    folder, report, _ = deployed
    rows = {row["key"]: row for row in report["candidates"]}
    assert set(rows) == {"ort-fp32", "ort-int8", "ov-int8"}
    assert all(row["p50_ms"] and row["top1"] is not None for row in rows.values())
    chosen = rows[report["recommended"]]
    assert chosen["p50_ms"] <= rows["ort-fp32"]["p50_ms"]  # never slower than the original
    assert rows["ort-fp32"]["top1"] - chosen["top1"] <= 0.01
    suffix = ".xml" if chosen["runtime"] == "openvino" else ".onnx"
    for name, digest in chosen["sha256"].items():  # the hashes name what was measured
        assert len(digest) == 64 and name.endswith((suffix, ".bin"))
    names = {p.name for p in folder.iterdir()}
    assert {f"model{suffix}", "recipe.json", "report.html", "report.json"} <= names
    assert json.loads((folder / "report.json").read_text())["recommended"] == chosen["key"]
    assert report["machine"]["isa_class"] and report["runtime_versions"]["onnxruntime"]


def test_deployed_run_script_runs_with_the_folders_files(deployed) -> None:
    folder, report, _ = deployed
    script = json.loads((folder / "report.json").read_text())["run_script"]
    done = subprocess.run(
        [sys.executable, script], cwd=folder, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "output 0: shape [1, 10]" in done.stdout and "median latency" in done.stdout


def test_deploy_attempts_no_outside_connection(deployed) -> None:
    _, report, log = deployed
    assert any(row["key"] == "ov-int8" and not row["error"] for row in report["candidates"])
    assert not log.exists() or log.read_text() == ""  # OpenVINO and NNCF ran, sent nothing


def test_the_guard_sees_openvino_telemetry_without_our_block(tmp_path) -> None:
    """Why the block exists, and that the guard above would have caught a send: a plain
    `import openvino` with no consent file tries to reach its analytics host."""
    log = tmp_path / "netguard.log"
    script = "import time, openvino; time.sleep(1.5)"
    env = _guarded_env(tmp_path, log)
    subprocess.run([sys.executable, "-c", script], env=env, timeout=120, check=True)
    assert "google-analytics" in log.read_text()


def test_deploy_report_shows_every_candidate_as_measured(deployed) -> None:
    folder, printed, _ = deployed
    page, data = opened(folder.parent / "deploy.html")
    for row in printed["candidates"]:
        assert row["label"] in page.cells
        assert f"{row['p50_ms']:.3f}" in page.cells and f"{row['cosine']:.4f}" in page.cells
    assert data["kind"] == "deploy" and data["result"]["recommended"] == printed["recommended"]
    assert page.marks == 2 * len(printed["candidates"])  # a bar and a point per form


def test_report_opens_in_a_browser_engine_with_every_plot_drawn(deployed, qtbot) -> None:
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        os.environ.setdefault("QTWEBENGINE_DISABLE_SANDBOX", "1")
    from PySide6.QtCore import QUrl
    from PySide6.QtWebEngineWidgets import QWebEngineView

    folder, report, _ = deployed
    view = QWebEngineView()
    qtbot.addWidget(view)
    view.resize(1000, 800)
    view.show()
    with qtbot.waitSignal(view.loadFinished, timeout=30_000) as loaded:
        view.load(QUrl.fromLocalFile(str(folder / "report.html")))
    assert loaded.args == [True]
    script = """JSON.stringify(Array.from(document.querySelectorAll('svg.plot')).map(svg =>
        Array.from(svg.querySelectorAll('.datum')).filter(el => {
            const box = el.getBoundingClientRect(); return box.width > 0 && box.height > 0;
        }).length))"""
    box: dict = {}
    view.page().runJavaScript(script, 0, lambda result: box.setdefault("drawn", result))
    qtbot.waitUntil(lambda: "drawn" in box, timeout=10_000)
    drawn = json.loads(box["drawn"])
    assert drawn == [3, 3]  # two plots, each with a mark for every measured form
