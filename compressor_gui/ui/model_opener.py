"""Opening models in the window: the file dialog, recent files, the untrusted-pickle question,
and the draft of an unsaved plan offered back when its model is opened again."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMessageBox

from compressor_gui.core.errors import CompressorError, PlanError
from compressor_gui.core.workflows import OpenedModel, open_model_job
from compressor_gui.ui.drafts import Draft, discard_draft, load_draft, save_draft

MODEL_FILTER = "Models (*.onnx *.pt *.pth *.pt2 *.ts *.jit *.bin *.ckpt);;All files (*)"


class ModelOpener:
    """Loads models for the window in a worker and keeps the plan's draft on disk."""

    def __init__(self, window: QMainWindow) -> None:
        self.window = window
        self.session = window.session
        self.draft_offer: QMessageBox | None = None
        # every plan change is kept as a draft on disk (debounced: a slider drag is many)
        self.draft_timer = QTimer(window)
        self.draft_timer.setSingleShot(True)
        self.draft_timer.setInterval(300)
        self.draft_timer.timeout.connect(self.keep_draft)
        self.session.plan_changed.connect(self.draft_timer.start)

    def flush_draft(self) -> None:
        """Write the last edit's draft now (the window is closing)."""
        if self.draft_timer.isActive():
            self.draft_timer.stop()
            self.keep_draft()

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self.window, "Open model", self.window.settings.last_dir(), MODEL_FILTER
        )
        if path:
            self.open_path(path)

    def open_path(self, path: str | Path, trust_pickle: bool = False) -> bool:
        """Load in a worker; the window stays usable and shows a dialog if the file is bad."""
        path = Path(path)
        return self.window.jobs.start(
            f"Open {path.name}",
            lambda _token: open_model_job(path, trust_pickle),
            self.opened,
            on_error=lambda message: self._open_failed(path, trust_pickle, message),
        )

    def opened(self, opened: OpenedModel) -> None:
        if self.draft_offer is not None:
            self.draft_offer.reject()  # that model's draft stays on disk for next time
        draft = load_draft(opened.loaded.path)
        self.session.set_model(opened)
        if draft is not None:
            try:
                draft.plan.validate(opened.inventory)
            except PlanError as exc:  # the file changed since: its old plan no longer fits
                self.window.jobs.log_line(
                    f"note: the unsaved plan for this model no longer fits: {exc}"
                )
                discard_draft(opened.loaded.path)
            else:
                self._offer_draft(opened.loaded.path, draft)
        self.window.settings.add_recent(opened.loaded.path)
        self.window.settings.set_last_dir(opened.loaded.path.parent)
        for note in (*opened.loaded.notes, *opened.inventory.assumptions):
            self.window.jobs.log_line(f"note: {note}")

    def _offer_draft(self, path: Path, draft: Draft) -> None:
        """Ask (window-modal, the event loop runs) whether to bring back the unsaved plan."""
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Restore your plan?",
            f"You were editing a plan for {path.name} when the app last closed "
            f"({draft.describe()}).",
            parent=self.window,
        )
        box.setInformativeText("Restore it? (Restoring is one undo step.)")
        restore = box.addButton("Restore", QMessageBox.ButtonRole.AcceptRole)
        discard = box.addButton("Discard", QMessageBox.ButtonRole.DestructiveRole)
        box.setDefaultButton(restore)
        box.setWindowModality(Qt.WindowModality.WindowModal)

        def answered() -> None:
            self.draft_offer = None
            if self.session.path != path:
                return
            if box.clickedButton() is restore:
                self.session.set_plan(draft.plan, "restore the unsaved plan")
            elif box.clickedButton() is discard:
                discard_draft(path)

        box.finished.connect(answered)
        self.draft_offer = box
        box.open()

    def keep_draft(self) -> None:
        if self.session.path is None or self.draft_offer is not None:
            return  # while the offer is open, the draft on disk is what it offers
        try:
            save_draft(self.session.path, self.session.plan)
        except (CompressorError, OSError) as exc:  # a full disk must not stop the editing
            self.window.jobs.log_line(f"could not keep a draft of the plan: {exc}")

    def _open_failed(self, path: Path, trusted: bool, message: str) -> None:
        # The core refuses pickles unless trusted; only the user can say a file is trusted.
        if not trusted and "--trust-pickle" in message:
            box = QMessageBox(
                QMessageBox.Icon.Warning, "Untrusted pickle", message, parent=self.window
            )
            box.setInformativeText(
                "Open it anyway? Only do this for files from a source you trust."
            )
            box.setStandardButtons(
                QMessageBox.StandardButton.Open | QMessageBox.StandardButton.Cancel
            )
            box.setObjectName("trust_dialog")
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.buttonClicked.connect(
                lambda button: (
                    box.standardButton(button) == QMessageBox.StandardButton.Open
                    and self.open_path(path, trust_pickle=True)
                )
            )
            box.open()
            return
        self.window.show_error(f"Could not open {path.name}", message)

    def fill_recent(self) -> None:
        self.window.recent_menu.clear()
        for file in self.window.settings.recent_files():
            self.window.recent_menu.addAction(file, lambda f=file: self.open_path(f))
        self.window.recent_menu.setEnabled(bool(self.window.settings.recent_files()))
