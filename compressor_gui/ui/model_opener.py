"""Opening models in the window: the file dialog, recent files, the untrusted-pickle question,
the input shape (asked once per model file, remembered for its next opening), and the draft
of an unsaved plan offered back when its model is opened again."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMessageBox

from compressor_gui.core.errors import CompressorError, PlanError
from compressor_gui.core.jobs import Progress
from compressor_gui.core.shapes import (
    ShapeQuestion,
    declared_input_shapes,
    dims_text,
    input_specs,
)
from compressor_gui.core.workflows import (
    OpenedModel,
    open_model_job,
    sized_at_opening,
    with_input_shapes_job,
)
from compressor_gui.ui.drafts import Draft, discard_draft, load_draft, save_draft
from compressor_gui.ui.input_shape_dialog import InputShapeDialog

MODEL_FILTER = "Models (*.onnx *.pt *.pth *.pt2 *.ts *.jit *.bin *.ckpt);;All files (*)"


class ModelOpener:
    """Loads models for the window in a worker and keeps the plan's draft on disk."""

    def __init__(self, window: QMainWindow) -> None:
        self.window = window
        self.session = window.session
        self.draft_offer: QMessageBox | None = None
        self.shape_dialog: InputShapeDialog | None = None
        self.remembered_shapes = False  # the open model's shapes are last time's answer
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
        remembered = self.window.settings.input_shapes(path)

        def job(_token):  # dynamic input dims are tried before any job needs them
            opened = yield from _open_at(path, trust_pickle, remembered)
            question = None
            if opened.loaded.onnx_model is not None:
                yield Progress(2, 2, "trying the model at its dynamic input dims")
                opened, question, note = sized_at_opening(opened)
                if note is not None:
                    yield Progress(2, 2, note)
            return opened, question

        return self.window.jobs.start(
            f"Open {path.name}",
            job,
            lambda outcome: self.opened(*outcome),
            on_error=lambda message: self._open_failed(path, trust_pickle, message),
        )

    def opened(self, opened: OpenedModel, question: ShapeQuestion | None = None) -> None:
        if self.draft_offer is not None:
            self.draft_offer.reject()  # that model's draft stays on disk for next time
        draft = load_draft(opened.loaded.path)
        self.remembered_shapes = bool(opened.loaded.input_shapes) and (
            opened.loaded.input_shapes == self.window.settings.input_shapes(opened.loaded.path)
        )
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
        if self.remembered_shapes:
            text = ", ".join(map(dims_text, opened.loaded.input_shapes))
            self.window.jobs.log_line(
                f"input shape {text}: your answer when this model was last open "
                "(Model ▸ Input shape… changes it)"
            )
        if question is not None:
            self.ask_input_shape(question.reason, question.suggested)

    # --- input shapes ---------------------------------------------------------------------

    def ask_input_shape(
        self, reason: str | None = None, suggested: dict[str, tuple[int, ...]] | None = None
    ) -> None:
        """Ask (window-modal, the event loop runs) the shape of each dynamic input, saying
        `reason` (why a job needs it); the answer is tried once, then used by every job on
        this model and remembered for its next opening."""
        opened = self.session.opened
        if opened is None or opened.loaded.onnx_model is None or self.shape_dialog is not None:
            return
        model = opened.loaded.onnx_model
        current = suggested or declared_input_shapes(model, self.current_shapes())[0]
        reason = (
            f"{reason} Give the size it takes: every job on this model then uses it."
            if reason
            else "The size each input takes in every job (calibration, evaluation on random "
            "inputs, sensitivity, benchmark, deploy). Dynamic dims are marked ?."
        )
        dialog = InputShapeDialog(model, current, reason, self.window)
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def answered(result: int) -> None:
            self.shape_dialog = None
            if result == InputShapeDialog.DialogCode.Accepted:
                self.set_input_shapes(dialog.shapes())

        dialog.finished.connect(answered)
        self.shape_dialog = dialog
        dialog.open()

    def current_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shapes the user gave for the open model, by input name ({} if none)."""
        opened = self.session.opened
        if opened is None or opened.loaded.onnx_model is None or not opened.loaded.input_shapes:
            return {}
        return _by_name(opened.loaded.onnx_model, opened.loaded.input_shapes)

    def set_input_shapes(self, shapes: tuple[tuple[int, ...], ...]) -> bool:
        """Try the model at `shapes` in a worker, then make them the model's; a shape it does
        not run at asks again, with onnxruntime's reason."""
        opened = self.session.opened
        if opened is None:
            return False
        text = ", ".join("x".join(map(str, shape)) for shape in shapes)

        def done(reshaped: OpenedModel) -> None:
            if self.session.path != reshaped.loaded.path:
                return  # another model was opened meanwhile
            self.window.settings.set_input_shapes(reshaped.loaded.path, shapes)
            self.remembered_shapes = False
            self.session.set_input_shapes(reshaped)
            self.window.jobs.log_line(f"input shape {text}: every job on this model uses it")

        return self.window.jobs.start(
            f"Input shape {text}",
            lambda _token: with_input_shapes_job(opened, shapes),
            done,
            on_error=lambda message: self.ask_input_shape(
                message, _by_name(opened.loaded.onnx_model, shapes)
            ),
        )

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


def _open_at(path: Path, trust_pickle: bool, remembered: tuple[tuple[int, ...], ...]):
    """Open the model at the shapes remembered for it; if they no longer fit (the settings
    file was edited), as if none were."""
    if remembered:
        try:
            return (yield from open_model_job(path, trust_pickle, remembered))
        except CompressorError:
            pass
    return (yield from open_model_job(path, trust_pickle))


def _by_name(model, shapes: tuple[tuple[int, ...], ...]) -> dict[str, tuple[int, ...]]:
    return dict(zip((spec.name for spec in input_specs(model)), shapes, strict=False))
