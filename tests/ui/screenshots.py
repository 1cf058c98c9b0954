"""Take the README screenshots from a real window on the demo model (run under xvfb-run):

xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python -m tests.ui.screenshots
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtWidgets import QApplication

from compressor_gui.core.search import Budget
from compressor_gui.ui.autoplan_dialog import AutoPlanRequest
from compressor_gui.ui.graph_view import STATE_JS

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def _wait(app: QApplication, condition, timeout_s: float = 180) -> None:
    end = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def _settle(app: QApplication, seconds: float = 0.5) -> None:
    _wait(app, lambda: False, seconds)


def _graph_nodes(app: QApplication, graph) -> int:
    """How many graph nodes netron has drawn (asked of the page's DOM)."""
    box: dict = {}
    graph.web.page().runJavaScript(STATE_JS, 0, lambda result: box.setdefault("r", result))
    _wait(app, lambda: "r" in box, 5)
    state = json.loads(box["r"]) if box.get("r") else {}
    return state.get("nodes", 0) if "spinner" not in state.get("body", "spinner") else 0


def compressed_demo(app: QApplication):
    """A window on the demo with a mixed plan compressed (and compared, which follows)."""
    from compressor_gui.ui.main_window import MainWindow
    from compressor_gui.ui.paths import demo_model_path

    window = MainWindow()
    window.resize(1560, 960)
    window.show()
    window.open_path(demo_model_path())
    _wait(app, lambda: window.session.inventory is not None and not window.jobs.running)
    _wait(app, lambda: window.targets.current() is not None)
    convs = [n.name for n in window.session.inventory.layers if n.op_type in ("Conv", "Gemm")]
    window.select_layers(convs)
    window.controls.bits.set_bits(8)
    window.select_layers(["/block3/conv2/Conv", "/block2/conv2/Conv"])
    window.controls.bits.set_bits(4)
    window.controls.prune.setValue(50)
    window.select_layers(["/block3/conv1/Conv"])
    window.compress_action.trigger()
    _wait(app, lambda: window.layer_error.view.result is not None and not window.jobs.running, 600)
    return window


def shoot_layer_error(app: QApplication, window) -> None:
    """The Layer error tab after the compress, its worst layer selected."""
    window.set_theme("dark")
    window.views.setCurrentWidget(window.charts)
    window.charts.setCurrentWidget(window.layer_error.view)
    window.select_layers([window.layer_error.view.result.layers[0].name])
    _settle(app)
    window.grab().save(str(OUT / "layer-error.png"))
    window.select_layers(["/block3/conv1/Conv"])


def shoot_input_shape(app: QApplication, window, tmp: Path) -> None:
    """The question a detector with dynamic height and width gets on opening (the dialog is
    a window of its own: the screen is grabbed where the main window is)."""
    import onnx

    from tests import modelgen

    path = tmp / "detector.onnx"
    onnx.save(modelgen.dynamic_detector(), str(path))
    window.views.setCurrentWidget(window.charts)
    window.charts.setCurrentWidget(window.charts.size_chart)
    window.open_path(path)
    _wait(app, lambda: window.opener.shape_dialog is not None, 60)
    _settle(app, 1)
    frame = window.frameGeometry()
    shot = app.primaryScreen().grabWindow(0, frame.x(), frame.y(), frame.width(), frame.height())
    shot.save(str(OUT / "input-shape.png"))
    window.opener.shape_dialog.reject()


def main() -> int:
    import os

    tmp = tempfile.mkdtemp(prefix="cg-shots-")
    os.environ.update(XDG_CONFIG_HOME=f"{tmp}/config", XDG_DATA_HOME=f"{tmp}/data")
    app = QApplication(sys.argv)
    OUT.mkdir(parents=True, exist_ok=True)
    window = compressed_demo(app)
    shoot_layer_error(app, window)
    window.bench_action.trigger()
    _wait(app, lambda: not window.jobs.running)
    window.results.history.setCurrentRow(0)
    for theme in ("dark", "light"):
        window.set_theme(theme)
        window.charts.setCurrentWidget(window.charts.size_chart)
        _settle(app)
        window.grab().save(str(OUT / f"main-{theme}.png"))
    window.set_theme("dark")
    window.charts.setCurrentWidget(window.charts.histogram)
    _settle(app)
    window.grab().save(str(OUT / "histogram.png"))
    window.select_layers(["/block1/conv1/Conv", "/fc/Gemm"])
    window.charts.setCurrentWidget(window.charts.sensitivity_plot)
    window.sensitivity_action.trigger()
    _wait(app, lambda: not window.jobs.running, 300)
    _settle(app)
    window.grab().save(str(OUT / "sensitivity.png"))

    window.runs.run_autoplan(AutoPlanRequest(Budget(size_ratio=1 / 4), "simulated", 128))
    _wait(app, lambda: window.session.autoplan is not None and not window.jobs.running, 300)
    _settle(app)
    window.grab().save(str(OUT / "pareto.png"))

    window.views.setCurrentWidget(window.graph)
    _wait(app, lambda: _graph_nodes(app, window.graph) > 20, 60)
    window.select_layers(["/block3/conv2/Conv"])
    _settle(app, 2)
    window.grab().save(str(OUT / "graph.png"))
    shoot_input_shape(app, window, Path(tmp))
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
