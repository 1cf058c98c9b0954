"""Run > Where jobs run…: local processes or a Dask cluster, kept in the settings; the dialog
says the model and data are sent there and refuses an address or files it cannot use."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox

from compressor_gui.ui.compute_dialog import SENT_THERE, ComputeDialog


def _dialog(window, qtbot) -> ComputeDialog:
    window.compute_action.trigger()
    dialog = window.findChild(ComputeDialog)
    qtbot.waitUntil(dialog.isVisible)
    return dialog


def _ok(dialog, qtbot) -> None:
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)


def test_a_cluster_address_is_kept_and_the_dialog_says_what_is_sent(window, qtbot) -> None:
    dialog = _dialog(window, qtbot)
    assert dialog.sent_there.text() == SENT_THERE and "sent" in SENT_THERE
    qtbot.keyClicks(dialog.cluster, "tcp://127.0.0.1:8786")
    _ok(dialog, qtbot)
    qtbot.waitUntil(lambda: not dialog.isVisible())
    where = window.settings.compute().placement()
    assert where.cluster is not None and where.cluster.address == "tcp://127.0.0.1:8786"


def test_an_address_that_is_not_dask_s_keeps_the_dialog_open(window, qtbot, tmp_path) -> None:
    dialog = _dialog(window, qtbot)
    qtbot.keyClicks(dialog.cluster, "http://scheduler:8786")
    _ok(dialog, qtbot)
    assert dialog.isVisible() and "tcp://HOST:PORT" in dialog.problem.text()
    dialog.cluster.setText("tls://scheduler:8786")
    qtbot.keyClicks(dialog.tls_ca, str(tmp_path / "missing-ca.pem"))
    qtbot.keyClicks(dialog.tls_cert, str(tmp_path / "missing-cert.pem"))
    _ok(dialog, qtbot)
    assert dialog.isVisible() and "does not exist" in dialog.problem.text()
    dialog.cluster.clear()
    dialog.tls_ca.clear()
    dialog.tls_cert.clear()
    dialog.workers.setValue(1)
    _ok(dialog, qtbot)
    qtbot.waitUntil(lambda: not dialog.isVisible())
    assert window.settings.compute().placement().cluster is None
    assert window.settings.compute().placement().workers == 1
