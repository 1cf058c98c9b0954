"""The main window: layer table, charts, per-layer controls, jobs, results and targets.

Everything heavy (loading, inventory, compression, benchmarks) runs through the jobs panel
in a worker; the window only shows core dataclasses and turns clicks into plan edits.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Generator
from pathlib import Path

import numpy as np
import platformdirs
from PySide6.QtCore import QItemSelection, QItemSelectionModel, Qt, QTimer
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QTableView,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from compressor_gui.core.compress import CompressResult, compress_source_job
from compressor_gui.core.data import compress_data_file, demo_dataset, eval_dataset, is_demo_model
from compressor_gui.core.distill import DistillOptions, EpochStats
from compressor_gui.core.errors import CompressorError, PlanError
from compressor_gui.core.evaluate import comparison_rows
from compressor_gui.core.hardware import MachineInfo
from compressor_gui.core.inventory import build_inventory, build_tensor_inventory
from compressor_gui.core.jobs import CancelToken, Progress, job_in_child_process
from compressor_gui.core.model import load_model
from compressor_gui.core.plan import CompressionPlan, load_recipe, save_recipe
from compressor_gui.core.prune import global_prune_ratios
from compressor_gui.core.search import AutoPlanResult, Candidate, autoplan_source_job
from compressor_gui.core.sensitivity import (
    SensitivityPoint,
    SensitivityTable,
    sensitivity_source_job,
)
from compressor_gui.formatting import human_bytes, human_count
from compressor_gui.targets import get_target
from compressor_gui.targets.base import BenchConfig, BenchResult, Target
from compressor_gui.targets.deploy import Timing, deploy_job
from compressor_gui.targets.evaluate import TargetEvaluation, evaluate_on_target
from compressor_gui.targets.local import LocalTarget
from compressor_gui.ui.autoplan_dialog import AutoPlanDialog, AutoPlanRequest
from compressor_gui.ui.charts import ChartsPanel
from compressor_gui.ui.compute_dialog import ComputeDialog
from compressor_gui.ui.deploy_view import DeployView
from compressor_gui.ui.drafts import Draft, discard_draft, load_draft, save_draft
from compressor_gui.ui.errors import error_box
from compressor_gui.ui.graph_view import GraphView
from compressor_gui.ui.int8_form_menu import Int8FormMenu
from compressor_gui.ui.jobs_panel import JobsPanel
from compressor_gui.ui.layer_controls import LayerControls
from compressor_gui.ui.layer_error import LayerErrorFeature
from compressor_gui.ui.layer_table import COLUMN_NAMES, LayerFilterProxy, LayerTableModel
from compressor_gui.ui.paths import demo_model_path
from compressor_gui.ui.report_saver import LastReport
from compressor_gui.ui.results_view import Comparison, ResultsView, RunRecord, change_text
from compressor_gui.ui.session import OpenedModel, Session
from compressor_gui.ui.settings import APP_NAME, Settings
from compressor_gui.ui.targets_panel import TargetsPanel
from compressor_gui.ui.theme import apply_theme
from compressor_gui.ui.training import DistillDialog, TrainingPanel

MODEL_FILTER = "Models (*.onnx *.pt *.pth *.pt2 *.ts *.jit *.bin *.ckpt);;All files (*)"
RECIPE_FILTER = "Recipes (*.json *.yaml *.yml)"


def open_model_job(path: Path, trust_pickle: bool) -> Generator[Progress, None, OpenedModel]:
    """Load a model and build its inventory off the GUI thread (big models take seconds)."""
    yield Progress(0, 2, f"reading {path.name}")
    loaded = load_model(path, trust_pickle=trust_pickle)
    yield Progress(1, 2, "counting layers, bytes and MACs")
    if loaded.onnx_model is not None:
        inventory = build_inventory(loaded.onnx_model)
    else:
        tensors = {k: np.asarray(v) for k, v in (loaded.state_dict or {}).items()}
        inventory = build_tensor_inventory(tensors)
    yield Progress(2, 2, f"{len(inventory.layers)} layers")
    return OpenedModel(loaded, inventory)


def bench_models_job(
    target: Target, models: list[tuple[str, Path]], config: BenchConfig, cancel: CancelToken
) -> Generator[Progress, None, tuple[dict[str, BenchResult], MachineInfo]]:
    """Benchmark several models one after another as one job with one progress bar; returns
    the results and the machine that ran them."""
    results: dict[str, BenchResult] = {}
    for index, (label, path) in enumerate(models):
        job = target.benchmark(path, config, cancel)
        while True:
            try:
                step = next(job)
            except StopIteration as stop:
                results[label] = stop.value
                break
            yield Progress(index + step.fraction, len(models), f"{label}: {step.message}")
    return results, target.machine()


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.2%}"


def runs_dir() -> Path:
    """Where compressed models go by default: one folder per run under the user data dir."""
    return Path(platformdirs.user_data_dir(APP_NAME)) / "runs" / time.strftime("%Y%m%d-%H%M%S")


class MainWindow(QMainWindow):
    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__()
        self.settings = settings or Settings()
        self.session = Session(self)
        self.setWindowTitle("Compressor")
        self.setAcceptDrops(True)
        self.resize(1500, 920)

        # layer table + filter (left)
        self.table_model = LayerTableModel(self.session)
        self.proxy = LayerFilterProxy(self.table_model)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # inventory order until asked
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableView.SelectionMode.ExtendedSelection)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter layers by name or op (e.g. conv, block2, Gemm)")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.proxy.set_filter_text)
        self.empty_hint = QLabel(
            "Drop a model here (.onnx, TorchScript .pt, .pt2)\nor use File ▸ Open, "
            "or File ▸ Open demo model"
        )
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint_font = self.empty_hint.font()
        hint_font.setPointSizeF(hint_font.pointSizeF() * 1.3)
        self.empty_hint.setFont(hint_font)
        left = QWidget()
        left_box = QVBoxLayout(left)
        left_box.setContentsMargins(4, 4, 4, 4)
        left_box.addWidget(self.filter)
        left_box.addWidget(self.empty_hint, 1)
        left_box.addWidget(self.table, 1)
        self.table.hide()

        # charts + graph (right, top) and controls (right, bottom)
        self.charts = ChartsPanel(self.session)
        self.views = QTabWidget()
        self.views.addTab(self.charts, "Charts")
        self.graph = GraphView()
        self.views.addTab(self.graph, "Graph")
        self.training = TrainingPanel()
        self.views.addTab(self.training, "Training")
        self.deploy_view = DeployView()
        self.views.addTab(self.deploy_view, "Deploy")
        self.controls = LayerControls(self.session)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.views)
        right.addWidget(self.controls)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 1)
        self.main_split = QSplitter()
        self.main_split.addWidget(left)
        self.main_split.addWidget(right)
        self.main_split.setSizes([720, 780])
        self.setCentralWidget(self.main_split)

        # docks: jobs, results, targets (bottom)
        self.jobs = JobsPanel()
        self.last_report = LastReport(self.jobs)
        self.results = ResultsView()
        self.jobs_dock = self._dock("Jobs", self.jobs, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.results_dock = self._dock(
            "Results", self.results, Qt.DockWidgetArea.BottomDockWidgetArea
        )
        self.splitDockWidget(self.jobs_dock, self.results_dock, Qt.Orientation.Horizontal)
        self.targets = TargetsPanel(self.settings.target())
        self.targets_dock = self._dock(
            "Targets", self.targets, Qt.DockWidgetArea.BottomDockWidgetArea
        )
        self.tabifyDockWidget(self.results_dock, self.targets_dock)
        self.results_dock.raise_()
        # the charts and graph above need the height more than the logs below
        self.resizeDocks([self.jobs_dock], [280], Qt.Orientation.Vertical)
        self.compressed_path: Path | None = None
        self.data_path: Path | None = None  # chosen by Run > Choose data; else found or demo
        self.layer_error = LayerErrorFeature(self)

        self.totals = QLabel("Open a model to start")
        self.statusBar().addPermanentWidget(self.totals, 1)

        self._build_actions()
        self._wire()
        self.set_theme(self.settings.theme())
        geometry, state = self.settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)

    # --- construction -----------------------------------------------------------------------

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{title.lower()}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        action.triggered.connect(slot)
        if shortcut is not None:
            action.setShortcut(shortcut)
        if tip:
            action.setToolTip(tip)
            action.setStatusTip(tip)
        return action

    def _build_actions(self) -> None:
        Key = QKeySequence.StandardKey
        self.open_action = self._action("Open…", self.open_dialog, Key.Open, "Open a model file")
        self.demo_action = self._action(
            "Open demo model", lambda: self.open_path(demo_model_path())
        )
        self.save_recipe_action = self._action("Save recipe…", self.save_recipe_dialog, Key.Save)
        self.load_recipe_action = self._action("Load recipe…", self.load_recipe_dialog)
        self.save_report_action = self._action(
            "Save report…",
            lambda: self.last_report.save_dialog(self, self.settings.last_dir()),
            tip="The last job's figures as a self-contained HTML page (and JSON beside it)",
        )
        self.quit_action = self._action("Quit", self.close, Key.Quit)
        stack = self.session.undo_stack
        # short toolbar labels; what would be undone goes into the tooltip
        self.undo_action = self._action("Undo", stack.undo, Key.Undo)
        self.redo_action = self._action("Redo", stack.redo, Key.Redo)
        stack.canUndoChanged.connect(self.undo_action.setEnabled)
        stack.canRedoChanged.connect(self.redo_action.setEnabled)
        stack.undoTextChanged.connect(lambda t: self.undo_action.setToolTip(f"Undo {t}"))
        stack.redoTextChanged.connect(lambda t: self.redo_action.setToolTip(f"Redo {t}"))
        self.undo_action.setEnabled(False)
        self.redo_action.setEnabled(False)
        self.reset_action = self._action("Reset plan", self.reset_plan)
        self.global_prune_action = self._action(
            "Prune globally…",
            self.global_prune_dialog,
            tip="Zero a share of the selected (or all) layers' weights under one magnitude "
            "threshold: layers with many small weights give more",
        )
        self.compress_action = self._action(
            "Compress", self.compress, tip="Apply the plan and write a compressed model"
        )
        self.distill_action = self._action(
            "Distill…",
            self.distill,
            tip="Compress with recovery: train the pruned plan towards the original "
            "(knowledge distillation, optionally quantization-aware), then write it",
        )
        self.sensitivity_action = self._action(
            "Sensitivity", self.sensitivity, tip="Measure each layer's accuracy drop per option"
        )
        self.autoplan_action = self._action(
            "Auto plan", self.auto_plan, tip="Find a plan under a size or accuracy budget"
        )
        self.evaluate_action = self._action(
            "Evaluate",
            self.evaluate,
            tip="Accuracy of the original (and the last compressed model) on the chosen data, "
            "and how closely the compressed outputs follow the original's",
        )
        self.deploy_action = self._action(
            "Deploy",
            self.deploy,
            tip="Build every form of the plan the target can run (runtime x precision), time "
            "and score each there, and recommend the fastest within the accuracy budget",
        )
        self.bench_action = self._action(
            "Benchmark", self.benchmark, tip="Time the original and compressed model on the target"
        )
        self.data_action = self._action(
            "Choose data…", self.choose_data, tip="Calibration/evaluation .npz (x, optional y)"
        )
        self.compute_action = self._action(
            "Where jobs run…",
            self.choose_compute,
            tip="Local processes for Sensitivity and Auto plan, or a Dask cluster",
        )
        self.theme_action = self._action("Dark theme", self.toggle_theme)
        self.theme_action.setCheckable(True)

        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addActions([self.open_action, self.demo_action])
        self.recent_menu = file_menu.addMenu("Open recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        file_menu.addSeparator()
        file_menu.addActions([self.save_recipe_action, self.load_recipe_action])
        file_menu.addAction(self.save_report_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        edit_menu = menu.addMenu("&Edit")
        edit_menu.addActions([self.undo_action, self.redo_action, self.reset_action])
        edit_menu.addSeparator()
        edit_menu.addAction(self.global_prune_action)
        self.int8_form_menu = Int8FormMenu(self.session, self)
        edit_menu.addMenu(self.int8_form_menu)
        # the jobs a model makes possible: in the Run menu and the toolbar, off while one runs
        self.job_actions = (
            self.sensitivity_action,
            self.autoplan_action,
            self.compress_action,
            self.distill_action,
            self.evaluate_action,
            self.layer_error.action,
            self.bench_action,
            self.deploy_action,
        )
        run_menu = menu.addMenu("&Run")
        run_menu.addActions(self.job_actions)
        run_menu.addSeparator()
        run_menu.addActions([self.data_action, self.compute_action])
        view_menu = menu.addMenu("&View")
        view_menu.addAction(self.theme_action)
        view_menu.addActions(
            [self.jobs_dock.toggleViewAction(), self.results_dock.toggleViewAction()]
        )

        bar = QToolBar("Main")
        bar.setObjectName("toolbar_main")
        bar.setMovable(False)
        bar.addActions([self.open_action, self.undo_action, self.redo_action])
        bar.addSeparator()
        bar.addWidget(QLabel(" Target "))
        bar.addWidget(self.targets.combo)
        bar.addSeparator()
        bar.addActions(self.job_actions)
        self.addToolBar(bar)
        self.toolbar = bar

    def _wire(self) -> None:
        # every plan change is kept as a draft on disk (debounced: a slider drag is many)
        self._draft_timer = QTimer(self)
        self._draft_timer.setSingleShot(True)
        self._draft_timer.setInterval(300)
        self._draft_timer.timeout.connect(self._keep_draft)
        self._draft_offer: QMessageBox | None = None
        self.session.plan_changed.connect(self._draft_timer.start)
        self.session.model_changed.connect(self._model_changed)
        self.session.plan_changed.connect(self._update_totals)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        self.charts.layer_clicked.connect(self.select_layers)
        self.charts.candidate_clicked.connect(self.load_candidate)
        self.views.currentChanged.connect(self._view_changed)
        self.jobs.failed.connect(self.show_error)
        self.jobs.cancelled.connect(lambda _name: self.training.end(None))
        self.deploy_view.failed.connect(lambda message: self.show_error("Export", message))
        self.deploy_view.exported.connect(lambda folder: self.jobs.log_line(f"exported {folder}"))
        self.jobs.busy_changed.connect(self._busy_changed)
        self.targets.combo.currentIndexChanged.connect(self._target_changed)
        self._busy_changed(False)

    # --- opening models --------------------------------------------------------------------

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open model", self.settings.last_dir(), MODEL_FILTER
        )
        if path:
            self.open_path(path)

    def open_path(self, path: str | Path, trust_pickle: bool = False) -> bool:
        """Load in a worker; the window stays usable and shows a dialog if the file is bad."""
        path = Path(path)
        return self.jobs.start(
            f"Open {path.name}",
            lambda _token: open_model_job(path, trust_pickle),
            self._opened,
            on_error=lambda message: self._open_failed(path, trust_pickle, message),
        )

    def _opened(self, opened: OpenedModel) -> None:
        if self._draft_offer is not None:
            self._draft_offer.reject()  # that model's draft stays on disk for next time
        draft = load_draft(opened.loaded.path)
        self.session.set_model(opened)
        if draft is not None:
            try:
                draft.plan.validate(opened.inventory)
            except PlanError as exc:  # the file changed since: its old plan no longer fits
                self.jobs.log_line(f"note: the unsaved plan for this model no longer fits: {exc}")
                discard_draft(opened.loaded.path)
            else:
                self._offer_draft(opened.loaded.path, draft)
        self.settings.add_recent(opened.loaded.path)
        self.settings.set_last_dir(opened.loaded.path.parent)
        for note in (*opened.loaded.notes, *opened.inventory.assumptions):
            self.jobs.log_line(f"note: {note}")

    def _offer_draft(self, path: Path, draft: Draft) -> None:
        """Ask (window-modal, the event loop runs) whether to bring back the unsaved plan."""
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Restore your plan?",
            f"You were editing a plan for {path.name} when the app last closed "
            f"({draft.describe()}).",
            parent=self,
        )
        box.setInformativeText("Restore it? (Restoring is one undo step.)")
        restore = box.addButton("Restore", QMessageBox.ButtonRole.AcceptRole)
        discard = box.addButton("Discard", QMessageBox.ButtonRole.DestructiveRole)
        box.setDefaultButton(restore)
        box.setWindowModality(Qt.WindowModality.WindowModal)

        def answered() -> None:
            self._draft_offer = None
            if self.session.path != path:
                return
            if box.clickedButton() is restore:
                self.session.set_plan(draft.plan, "restore the unsaved plan")
            elif box.clickedButton() is discard:
                discard_draft(path)

        box.finished.connect(answered)
        self._draft_offer = box
        box.open()

    def _keep_draft(self) -> None:
        if self.session.path is None or self._draft_offer is not None:
            return  # while the offer is open, the draft on disk is what it offers
        try:
            save_draft(self.session.path, self.session.plan)
        except (CompressorError, OSError) as exc:  # a full disk must not stop the editing
            self.jobs.log_line(f"could not keep a draft of the plan: {exc}")

    def _open_failed(self, path: Path, trusted: bool, message: str) -> None:
        # The core refuses pickles unless trusted; only the user can say a file is trusted.
        if not trusted and "--trust-pickle" in message:
            box = QMessageBox(QMessageBox.Icon.Warning, "Untrusted pickle", message, parent=self)
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
        self.show_error(f"Could not open {path.name}", message)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for file in self.settings.recent_files():
            self.recent_menu.addAction(file, lambda f=file: self.open_path(f))
        self.recent_menu.setEnabled(bool(self.settings.recent_files()))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 (Qt API)
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 (Qt API)
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if files:
            event.acceptProposedAction()
            self.open_path(files[0])

    # --- table, selection, totals ------------------------------------------------------------

    def _model_changed(self) -> None:
        inv = self.session.inventory
        has_model = inv is not None
        self.empty_hint.setVisible(not has_model)
        self.table.setVisible(has_model)
        if has_model:
            self.setWindowTitle(f"Compressor — {self.session.path.name}")
            self._fit_table_columns()
        self.graph.set_model(self.session.path)
        self.compressed_path = None  # it belonged to the model that was open before
        self.controls.set_layers([])
        self.charts.set_selection([])
        self._busy_changed(self.jobs.running)

    def _fit_table_columns(self) -> None:
        """Size columns to their contents and widen the table's pane (up to 55% of the
        window) so the inventory columns through Sparsity show without scrolling."""
        self.table.resizeColumnsToContents()
        self.table.setColumnWidth(0, min(self.table.columnWidth(0), 260))
        last = COLUMN_NAMES.index("Sparsity")
        needed = sum(self.table.columnWidth(c) for c in range(last + 1))
        needed += self.table.verticalScrollBar().sizeHint().width() + 16
        left, right = self.main_split.sizes()
        total = left + right
        if needed > left:
            wanted = min(needed, int(total * 0.55))
            self.main_split.setSizes([wanted, total - wanted])

    def selected_layers(self) -> list[str]:
        rows = self.table.selectionModel().selectedRows()
        rows = sorted(rows, key=lambda index: index.row())
        return [self.table_model.layer(self.proxy.mapToSource(i).row()).name for i in rows]

    def select_layers(self, names: list[str] | str) -> None:
        names = [names] if isinstance(names, str) else names
        selection = QItemSelection()
        for row in range(self.table_model.rowCount()):
            if self.table_model.layer(row).name in names:
                index = self.proxy.mapFromSource(self.table_model.index(row, 0))
                if index.isValid():
                    selection.select(index, index)
        flags = (
            QItemSelectionModel.SelectionFlag.ClearAndSelect
            | QItemSelectionModel.SelectionFlag.Rows
        )
        self.table.selectionModel().select(selection, flags)
        if not selection.isEmpty():
            self.table.scrollTo(selection.indexes()[0])

    def _selection_changed(self, *_args) -> None:
        names = self.selected_layers()
        self.controls.set_layers(names)
        self.charts.set_selection(names)
        if names and self.graph.started:
            self.graph.reveal(names[0])

    def _view_changed(self) -> None:
        """The graph view starts netron (a server and a Chromium) only when first shown."""
        if self.views.currentWidget() is self.graph and not self.graph.started:
            self.graph.ensure_started()
            if names := self.selected_layers():
                self.graph.reveal(names[0])

    def _update_totals(self) -> None:
        inv = self.session.inventory
        if inv is None:
            self.totals.setText("Open a model to start")
            return
        original = f"original {human_bytes(inv.total_bytes)}, {human_count(inv.total_macs)} MACs"
        prediction = self.session.prediction()
        edits = self.session.edit_count()
        ratio = prediction.ratio
        text = (
            f"predicted size {human_bytes(prediction.size_bytes)} ({ratio:.2f}x, "
            f"{1 / ratio if ratio else 0:.1f}x smaller) · MACs {human_count(prediction.macs)} · "
            f"{original} · plan: {edits} edits"
        )
        try:  # say at once when an edit cannot be applied, not only when Compress fails
            self.session.plan.validate(inv)
            self.totals.setToolTip("")
        except PlanError as exc:
            text += " · ⚠ plan does not fit: " + str(exc).split(": ", 1)[-1].split(";")[0]
            self.totals.setToolTip(str(exc))
        self.totals.setText(text)

    def reset_plan(self) -> None:
        self.session.set_plan(CompressionPlan(), "reset plan")

    def global_prune_dialog(self) -> None:
        """Ask for the share of weights to zero (window-modal, the event loop runs)."""
        if self.session.opened is None:
            return
        scope = f"{len(self.selected_layers())} selected layers" if self.selected_layers() else ""
        dialog = QInputDialog(self)
        dialog.setWindowTitle("Prune globally")
        dialog.setLabelText(
            f"Share of the weights of {scope or 'all Conv/Gemm/MatMul layers'} to zero (%),\n"
            "under one magnitude threshold (each layer at most 95%):"
        )
        dialog.setInputMode(QInputDialog.InputMode.IntInput)
        dialog.setIntRange(0, 95)
        dialog.setIntStep(5)
        dialog.setIntValue(50)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self.prune_globally(dialog.intValue() / 100))
        dialog.open()

    def prune_globally(self, ratio: float) -> None:
        """Rank the weights in a worker (a big model has millions), then set each layer's
        unstructured ratio in one undo step."""
        loaded = self.session.opened.loaded if self.session.opened else None
        if loaded is None or loaded.onnx_model is None:
            return
        layers = self.selected_layers() or None
        scope = "all layers" if layers is None else f"{len(layers)} layers"

        def job(_token: CancelToken):
            yield Progress(0, 1, "ranking weights by magnitude")
            return global_prune_ratios(loaded.onnx_model, ratio, layers)

        def apply(ratios: dict[str, float]) -> None:
            plan = self.session.plan.with_prune_ratios(ratios)
            self.session.set_plan(plan, f"prune {ratio:.0%} globally over {scope}")

        self.jobs.start(f"Global prune {ratio:.0%}", job, apply)

    # --- jobs --------------------------------------------------------------------------------

    def _busy_changed(self, busy: bool) -> None:
        has_model = self.session.opened is not None
        for action in (*self.job_actions, self.global_prune_action):
            action.setEnabled(has_model and not busy)
        self.open_action.setEnabled(not busy)

    def compress(self) -> None:
        """Apply the plan in a worker; the result lands in Results next to the original."""
        loaded = self.session.opened.loaded if self.session.opened else None
        if loaded is None:
            return
        out = runs_dir() / f"{loaded.path.stem}.compressed.onnx"
        plan = self.session.plan
        data = compress_data_file(loaded.path, self.data_path)
        target = self._target()

        def job(token: CancelToken):  # a generator: the target is read in the worker (SSH)
            return (
                yield from job_in_child_process(
                    compress_source_job,
                    loaded.source,
                    plan,
                    out,
                    data,
                    cancel=token,
                    target=target.machine(),
                    what="compress",
                )
            )

        self.jobs.start(f"Compress {loaded.path.name}", job, self._compressed)

    def _target(self) -> Target:
        """The target chosen in the toolbar (this machine until the panel has probed)."""
        choice = self.targets.current()
        return choice.target if choice else get_target("local")

    def distill(self) -> None:
        """Ask for epochs and QAT (window-modal), then run Compress with recovery training."""
        loaded = self.session.opened.loaded if self.session.opened else None
        if loaded is None:
            return
        data = str(self.data_path) if self.data_path else "the demo's training split"
        if self.data_path is None and not is_demo_model(loaded.path):
            data = "no data chosen: Run > Choose data first"
        dialog = DistillDialog(data, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self.run_distill(dialog.options()))
        dialog.open()

    def run_distill(self, options: DistillOptions) -> None:
        loaded = self.session.opened.loaded if self.session.opened else None
        if loaded is None:
            return
        out = runs_dir() / f"{loaded.path.stem}.distilled.onnx"
        plan, data = self.session.plan, self.data_path
        finish = CancelToken(multiprocessing.get_context("spawn").Event())
        self.training.begin(finish)
        self.views.setCurrentWidget(self.training)

        def job(token: CancelToken):
            return job_in_child_process(
                compress_source_job,
                loaded.source,
                plan,
                out,
                data,
                cancel=token,
                what="distill",
                distill=options,
                finish_training=finish,
            )

        def done(result: CompressResult) -> None:
            self.training.end(result.distill)
            self._compressed(result, "Distill")

        def progress(step: Progress) -> None:
            if isinstance(step.payload, EpochStats):
                self.training.add(step.payload)

        started = self.jobs.start(
            f"Distill {loaded.path.name}", job, done, self._distill_failed, progress
        )
        if not started:
            self.training.end(None)

    def _distill_failed(self, message: str) -> None:
        self.training.end(None)
        self.show_error("Distill failed", message)

    def _compressed(self, result: CompressResult, kind: str = "Compress") -> None:
        self.compressed_path = result.output_path
        before, after = result.before, result.after

        rows = [
            Comparison(
                "size",
                human_bytes(before.size_bytes),
                human_bytes(after.size_bytes),
                change_text("size", before.size_bytes, after.size_bytes),
            )
        ]
        if before.eval is not None and after.eval is not None:
            rows.append(Comparison("top-1", _percent(before.eval.top1), _percent(after.eval.top1)))
            rows.append(
                Comparison(
                    "agreement with original", "100.00%", _percent(after.eval.agreement_top1)
                )
            )
        if before.latency is not None and after.latency is not None:
            rows.append(
                Comparison(
                    "latency p50 (ORT CPU)",
                    f"{before.latency.p50_ms:.3f} ms",
                    f"{after.latency.p50_ms:.3f} ms",
                    change_text("time", before.latency.p50_ms, after.latency.p50_ms),
                )
            )
        notes = [f"written to {result.output_path}", f"data: {result.data_source}"]
        if result.measured_on:
            notes.append(f"measured on: {result.measured_on.summary}")
        if result.target and result.target != result.measured_on:
            notes.append(f"made for: {result.target.summary}")
        notes += [*result.steps, *(f"warning: {w}" for w in result.warnings)]
        self.results.add(RunRecord(kind, result.input_path.name, tuple(rows), tuple(notes)))
        self.results_dock.raise_()
        self.layer_error.compare_when_idle()

    def choose_data(self) -> None:
        name, _ = QFileDialog.getOpenFileName(
            self,
            "Calibration / evaluation data",
            self.settings.last_dir(),
            "Data (*.npz);;All files (*)",
        )
        if name:
            self.data_path = Path(name)
            self.jobs.log_line(f"data for compress and sensitivity: {name}")

    def evaluate(self) -> None:
        """Run the original (and the last compressed model) over the chosen data in a worker,
        on the machine chosen in the Target box: this one or an SSH target."""
        loaded = self.session.opened.loaded if self.session.opened else None
        if loaded is None or loaded.onnx_model is None:
            return
        choice = self.targets.current()
        target = choice.target if choice else LocalTarget()
        config = choice.config() if choice else None
        models = [("original", loaded.path if loaded.format == "onnx" else loaded.onnx_model)]
        if self.compressed_path is not None:
            models.append(("compressed", self.compressed_path))

        def job(token: CancelToken):  # a generator: the data loads in the worker too
            dataset = self.eval_dataset(loaded)
            return evaluate_on_target(target, models, dataset, config, cancel=token)

        self.jobs.start(f"Evaluate {loaded.path.name} on {target.name}", job, self._evaluated)

    def _evaluated(self, evaluation: TargetEvaluation) -> None:
        results = list(evaluation.results.values())
        compressed = results[1] if len(results) > 1 else None
        rows = [Comparison(*row) for row in comparison_rows(results[0], compressed)]
        machine = evaluation.machine
        notes = [
            f"ran on {evaluation.target}: {machine.summary} · INT8 family {machine.isa_class}",
            f"runtime: {evaluation.runtime}",
            f"data: {evaluation.data_source}",
        ]
        if compressed is None:
            notes.append("no compressed model yet: Compress first to compare")
        title = f"Evaluate on {evaluation.target}"
        record = RunRecord(title, self.session.path.name, tuple(rows), tuple(notes))
        self.results.add(record)
        self.results_dock.raise_()

    def benchmark(self) -> None:
        """Time the original (and the last compressed model) on the chosen target, or on every
        target checked in the targets panel at once."""
        choice = self.targets.current()
        if choice is None or self.session.path is None:
            self.show_error("Benchmark", "No target is ready yet (still probing this machine).")
            return
        models = [("original", self.session.path)]
        if self.compressed_path is not None:
            models.append(("compressed", self.compressed_path))
        loaded = self.session.opened.loaded if self.session.opened else None
        data = (lambda: self.eval_dataset(loaded)) if loaded and loaded.onnx_model else None
        if self.targets.fanout.start(self.jobs, models, data):  # two or more targets checked
            self.targets_dock.raise_()
            return
        config = choice.config()
        self.jobs.start(
            f"Benchmark on {choice.label}",
            lambda token: bench_models_job(choice.target, models, config, token),
            lambda results: self._benchmarked(choice.label, results),
        )

    def _benchmarked(self, label: str, outcome: tuple[dict[str, BenchResult], MachineInfo]) -> None:
        results, machine = outcome
        original, compressed = results.get("original"), results.get("compressed")
        metrics = (
            ("latency p50", "time", lambda r: r.latency.p50_ms, lambda v: f"{v:.3f} ms"),
            ("latency p99", "time", lambda r: r.latency.p99_ms, lambda v: f"{v:.3f} ms"),
            ("throughput", "rate", lambda r: r.throughput_per_s, lambda v: f"{v:.0f} /s"),
            ("file size", "size", lambda r: Path(r.model_path).stat().st_size, human_bytes),
        )
        rows = []
        for metric, kind, value, text in metrics:
            before = value(original) if original else None
            after = value(compressed) if compressed else None
            rows.append(
                Comparison(
                    metric,
                    "" if before is None else text(before),
                    "" if after is None else text(after),
                    change_text(kind, before, after),
                )
            )
        notes = [f"ran on: {machine.summary} · INT8 family {machine.isa_class}"]
        notes += [f"{name}: {note}" for name, r in results.items() for note in r.notes]
        record = RunRecord(
            f"Benchmark ({label})", self.session.path.name, tuple(rows), tuple(notes)
        )
        self.results.add(record)
        self.results_dock.raise_()

    def sensitivity(self) -> None:
        """Measure how much each selected layer's (or every layer's) metric drops per option;
        curves fill in live as points land."""
        loaded = self.session.opened.loaded if self.session.opened else None
        if loaded is None or loaded.onnx_model is None:
            return
        layers = self.selected_layers() or None
        target = self._target()

        def job(token: CancelToken):  # a generator: data and target are read in the worker
            dataset = self.eval_dataset(loaded)
            where = self.settings.compute().placement()
            return (
                yield from job_in_child_process(
                    sensitivity_source_job,
                    loaded.source,
                    dataset,
                    layers=layers,
                    machine=target.machine(),
                    workers=where.workers,
                    cluster=where.cluster,
                    cancel=token,
                    what="sensitivity",
                )
            )

        self.jobs.start(
            "Sensitivity" if layers is None else f"Sensitivity of {len(layers)} layers",
            job,
            self.session.set_sensitivity,
            progress=self._sensitivity_progress,
        )

    def choose_compute(self) -> None:
        """Ask where jobs run (window-modal); the answer is kept in the settings."""
        dialog = ComputeDialog(self.settings.compute(), self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self.settings.set_compute(dialog.compute()))
        dialog.open()

    def deploy(self, forms: list[str] | None = None, timing: Timing | None = None) -> None:
        """Deploy the plan to the toolbar's target in a worker; the table lands in the Deploy
        tab (`forms` and `timing` narrow it, as the CLI's --forms / --rounds do)."""
        loaded = self.session.opened.loaded if self.session.opened else None
        if loaded is None or loaded.onnx_model is None:
            return
        target, plan, data = self._target(), self.session.plan, self.data_path
        work = self.deploy_view.new_work_dir()

        def job(token: CancelToken):
            sample = self.eval_dataset(loaded)
            timed = timing or Timing()
            result = yield from deploy_job(
                loaded.source, target, work, plan, data, token, forms=forms, timing=timed
            )
            return result, sample

        def done(outcome) -> None:
            self.deploy_view.show_result(*outcome)
            self.views.setCurrentWidget(self.deploy_view)

        self.jobs.start(f"Deploy {loaded.path.name} on {target.name}", job, done)

    def eval_dataset(self, loaded):
        """The chosen data, else `<stem>_eval.npz` beside the model, the demo's own, or random."""
        return eval_dataset(loaded.path, loaded.onnx_model, self.data_path)

    def auto_plan(self) -> None:
        """Ask for a budget (window-modal, the event loop runs) and then run Auto plan."""
        dialog = AutoPlanDialog(self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self.run_autoplan(dialog.request()))
        dialog.open()

    def run_autoplan(self, request: AutoPlanRequest) -> None:
        loaded = self.session.opened.loaded if self.session.opened else None
        if loaded is None or loaded.onnx_model is None:
            return
        target = self._target()

        def job(token: CancelToken):
            dataset = self.eval_dataset(loaded).subset(request.samples)
            calibration = (
                demo_dataset(loaded.onnx_model, "calib")
                if is_demo_model(loaded.path) and self.data_path is None
                else dataset
            )
            where = self.settings.compute().placement()
            return (
                yield from job_in_child_process(
                    autoplan_source_job,
                    loaded.source,
                    dataset,
                    request.budget,
                    calibration=calibration,
                    verification=request.verification,
                    machine=target.machine(),
                    workers=where.workers,
                    cluster=where.cluster,
                    cancel=token,
                    what="auto plan",
                )
            )

        self.jobs.start(f"Auto plan ({request.verification})", job, self._autoplanned)

    def _autoplanned(self, result: AutoPlanResult) -> None:
        self.session.set_autoplan(result)
        self.load_candidate(result.chosen)
        for note in result.notes:
            self.jobs.log_line(f"note: {note}")
        self.views.setCurrentWidget(self.charts)
        self.charts.setCurrentWidget(self.charts.pareto)

    def load_candidate(self, candidate: Candidate) -> None:
        """Make a measured candidate the plan (one undo step); sliders and table follow."""
        self.session.set_plan(candidate.plan, f"plan from Auto plan: {candidate.label}")

    def _sensitivity_progress(self, step: Progress) -> None:
        if isinstance(step.payload, SensitivityTable):
            self.session.set_sensitivity(step.payload)
        elif isinstance(step.payload, SensitivityPoint):
            self.session.add_sensitivity_point(step.payload)

    # --- recipes -------------------------------------------------------------------------------

    def save_recipe_dialog(self) -> None:
        name, _ = QFileDialog.getSaveFileName(
            self, "Save recipe", self.settings.last_dir(), RECIPE_FILTER
        )
        if name:
            self.save_recipe(Path(name))

    def save_recipe(self, path: Path) -> None:
        try:
            save_recipe(self.session.plan, path)
        except CompressorError as exc:
            self.show_error("Could not save the recipe", str(exc))
            return
        self.jobs.log_line(f"recipe saved to {path}")

    def load_recipe_dialog(self) -> None:
        name, _ = QFileDialog.getOpenFileName(
            self, "Load recipe", self.settings.last_dir(), RECIPE_FILTER
        )
        if name:
            self.load_recipe(Path(name))

    def load_recipe(self, path: Path) -> None:
        """Replace the plan with a recipe (one undo step), checked against this model."""
        try:
            plan = load_recipe(path)
            if self.session.inventory is not None:
                plan.predict(self.session.inventory)
        except CompressorError as exc:
            self.show_error(f"Could not load {path.name}", str(exc))
            return
        self.session.set_plan(plan, f"load recipe {path.name}")

    # --- misc ----------------------------------------------------------------------------------

    def show_error(self, title: str, message: str) -> QMessageBox:
        """A window-modal box that does not block the event loop (jobs keep running); long
        text goes into its scrollable details."""
        return error_box(self, title, message)

    def set_theme(self, theme: str) -> None:
        colors = apply_theme(QApplication.instance(), theme, self)
        self.theme_action.setChecked(theme == "dark")
        self.charts.set_colors(colors)
        self.layer_error.view.set_colors(colors)
        self.training.set_colors(colors)
        self.deploy_view.chart.set_colors(colors)
        self.settings.set_theme(theme)

    def toggle_theme(self) -> None:
        self.set_theme("dark" if self.theme_action.isChecked() else "light")

    def _target_changed(self) -> None:
        choice = self.targets.current()
        if choice is not None:
            self.settings.set_target(choice.key)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        if self._draft_timer.isActive():  # the last edit, not yet written
            self._draft_timer.stop()
            self._keep_draft()
        self.jobs.cancel()
        self.graph.shutdown()
        self.deploy_view.discard()
        self.settings.set_window_state(self.saveGeometry(), self.saveState())
        self.settings.sync()
        super().closeEvent(event)
