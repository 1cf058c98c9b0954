"""The graph tab: netron drawn offline from our own server, no consent screen, no telemetry."""

from __future__ import annotations

import json
import re
import time
import urllib.request

import pytest
from PySide6.QtCore import Qt

from compressor_gui.ui.graph_view import STATE_JS
from compressor_gui.ui.netron_server import CONSENT_SCRIPT, NetronServer


def _page_state(graph, qtbot) -> dict:
    box: dict = {}
    graph.web.page().runJavaScript(STATE_JS, 0, lambda result: box.setdefault("r", result))
    qtbot.waitUntil(lambda: "r" in box, timeout=5_000)
    return json.loads(box["r"]) if box["r"] else {}


def _rendered(graph, qtbot, timeout_s: float = 60) -> dict:
    """Poll the DOM until netron has drawn the graph and put its spinner away."""
    end = time.monotonic() + timeout_s
    state: dict = {}
    while time.monotonic() < end:
        state = _page_state(graph, qtbot)
        if state.get("nodes", 0) > 20 and "spinner" not in state["body"]:
            return state
        qtbot.wait(200)
    pytest.fail(f"netron did not draw the graph in {timeout_s:.0f} s: {state}")


def test_graph_tab_draws_the_model_offline_without_consent_or_update(loaded, qtbot) -> None:
    assert not loaded.graph.started  # nothing starts until the tab is shown
    loaded.views.setCurrentWidget(loaded.graph)
    state = _rendered(loaded.graph, qtbot)
    assert state["nodes"] > 20
    assert state["message"] == ""  # no consent, no "Please update", no error
    assert "message" not in state["body"] and "welcome" not in state["body"]
    assert loaded.graph.interceptor.allowed > 0
    assert loaded.graph.interceptor.blocked == []  # nothing even tried to leave the machine


def test_selecting_a_layer_reveals_it_in_the_graph(loaded, qtbot) -> None:
    loaded.views.setCurrentWidget(loaded.graph)
    _rendered(loaded.graph, qtbot)
    loaded.select_layers(["/block3/conv2/Conv"])
    qtbot.waitUntil(
        lambda: _page_state(loaded.graph, qtbot)["selected"] == ["node-name-/block3/conv2/Conv"],
        timeout=10_000,
    )


def test_closing_the_window_stops_the_netron_server(loaded, qtbot) -> None:
    loaded.views.setCurrentWidget(loaded.graph)
    url = loaded.graph.server.url
    loaded.close()
    assert loaded.graph.server is None
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)


def test_served_page_is_dated_now_consents_and_only_connects_home(demo_path) -> None:
    server = NetronServer()
    try:
        server.set_model(demo_path)
        html = urllib.request.urlopen(server.url, timeout=5).read().decode()
        stamp = re.search(r'<meta name="date" content="([^"]+)">', html).group(1)
        served = time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) - time.timezone
        assert abs(served - time.time()) < 60  # netron's 180-day check counts from here
        assert "connect-src 'self'" in html and f'src="{CONSENT_SCRIPT}"' in html
        assert '<meta name="version" content="0.0.0">' in html  # netron: no telemetry
        model = urllib.request.urlopen(f"{server.url}data/demo.onnx", timeout=5).read()
        assert model == demo_path.read_bytes()
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{server.url}data/../../pyproject.toml", timeout=5)
    finally:
        server.stop()


def test_open_in_browser_opens_the_same_offline_server(loaded, qtbot, monkeypatch) -> None:
    opened = []
    monkeypatch.setattr(
        "compressor_gui.ui.graph_view.QDesktopServices.openUrl", lambda url: opened.append(url)
    )
    qtbot.mouseClick(loaded.graph.browser_button, Qt.MouseButton.LeftButton)
    assert [u.toString() for u in opened] == [loaded.graph.server.url]
    assert opened[0].host() == "127.0.0.1"
