"""The main window: layer table, charts, per-layer controls, jobs, results and targets.

Everything heavy (loading, inventory, compression, benchmarks) runs through the jobs panel
in a worker; the window only shows core dataclasses and turns clicks into plan edits.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QItemSelection, QItemSelectionModel, Qt
from PySide6.QtGui import QDragEnterEvent, QDropEvent
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
    QScrollArea,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from compressor_gui.core.errors import CompressorError, PlanError
from compressor_gui.core.jobs import CancelToken, Progress
from compressor_gui.core.plan import CompressionPlan, load_recipe, save_recipe
from compressor_gui.core.prune import global_prune_ratios
from compressor_gui.core.shapes import declared_input_shapes, dims_text
from compressor_gui.formatting import human_bytes, human_count
from compressor_gui.ui.charts import ChartsPanel
from compressor_gui.ui.deploy_view import DeployView
from compressor_gui.ui.errors import error_box
from compressor_gui.ui.graph_view import GraphView
from compressor_gui.ui.jobs_panel import JobsPanel
from compressor_gui.ui.layer_controls import LayerControls
from compressor_gui.ui.layer_error import LayerErrorFeature
from compressor_gui.ui.layer_table import COLUMN_NAMES, LayerFilterProxy, LayerTableModel
from compressor_gui.ui.model_opener import ModelOpener
from compressor_gui.ui.report_saver import LastReport
from compressor_gui.ui.results_view import ResultsView
from compressor_gui.ui.run_menu import RunMenu
from compressor_gui.ui.session import Session
from compressor_gui.ui.settings import Settings
from compressor_gui.ui.targets_panel import TargetsPanel
from compressor_gui.ui.theme import apply_theme
from compressor_gui.ui.training import TrainingPanel
from compressor_gui.ui.window_actions import build_actions, build_menus

RECIPE_FILTER = "Recipes (*.json *.yaml *.yml)"


def _scrolled(widget: QWidget) -> QScrollArea:
    """`widget` in a frameless scroll area: its minimum height no longer sets the window's,
    which must fit a laptop screen."""
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    area.setWidget(widget)
    return area


class MainWindow(QMainWindow):
    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__()
        self.settings = settings or Settings()
        self.session = Session(self)
        self.setWindowTitle("Compressor")
        self.setAcceptDrops(True)
        self.resize(1500, 920)
        left = self._build_table()
        self._build_views(left)
        self._build_docks()
        self.layer_error = LayerErrorFeature(self)
        self.totals = QLabel("Open a model to start")
        self.statusBar().addPermanentWidget(self.totals, 1)
        self.input_shape = QLabel("")
        self.input_shape.setToolTip("The input shape every job uses: click to change it")
        self.input_shape.linkActivated.connect(lambda _link: self.opener.ask_input_shape())
        self.statusBar().addPermanentWidget(self.input_shape)

        self.opener = ModelOpener(self)
        self.runs = RunMenu(self)
        build_actions(self)
        build_menus(self)
        self._wire()
        self.set_theme(self.settings.theme())
        geometry, state = self.settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)

    # --- construction -----------------------------------------------------------------------

    def _build_table(self) -> QWidget:
        """The layer table with its filter, and the hint shown until a model is open."""
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
        return left

    def _build_views(self, left: QWidget) -> None:
        """Charts, graph, training and deploy tabs over the per-layer controls, right of
        the table."""
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
        # scrolled, so a longer selection note never makes the window grow past the screen
        controls_area = _scrolled(self.controls)
        # room for the sliders and pattern; a long skipped-layers note scrolls instead
        controls_area.setMinimumHeight(self.controls.minimumSizeHint().height())
        right.addWidget(controls_area)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 1)
        self.main_split = QSplitter()
        self.main_split.addWidget(left)
        self.main_split.addWidget(right)
        self.main_split.setSizes([720, 780])
        self.setCentralWidget(self.main_split)

    def _build_docks(self) -> None:
        """Jobs, results and targets along the bottom."""
        self.jobs = JobsPanel()
        self.last_report = LastReport(self.jobs)
        self.results = ResultsView()
        self.jobs_dock = self._dock("Jobs", self.jobs, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.results_dock = self._dock(
            "Results", self.results, Qt.DockWidgetArea.BottomDockWidgetArea
        )
        self.splitDockWidget(self.jobs_dock, self.results_dock, Qt.Orientation.Horizontal)
        self.targets = TargetsPanel(self.settings.target())
        self.targets_dock = self._dock(  # scrolled: its many fields would set a tall minimum
            "Targets", _scrolled(self.targets), Qt.DockWidgetArea.BottomDockWidgetArea
        )
        self.tabifyDockWidget(self.results_dock, self.targets_dock)
        self.results_dock.raise_()
        # the charts and graph above need the height more than the logs below
        self.resizeDocks([self.jobs_dock], [280], Qt.Orientation.Vertical)

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{title.lower()}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _wire(self) -> None:
        self.session.result_added.connect(self.results.add)
        self.session.result_added.connect(self._result_added)
        self.session.model_changed.connect(self._model_changed)
        self.session.plan_changed.connect(self._update_totals)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        self.charts.layer_clicked.connect(self.select_layers)
        self.charts.candidate_clicked.connect(self.runs.load_candidate)
        self.views.currentChanged.connect(self._view_changed)
        self.jobs.failed.connect(self.show_error)
        self.jobs.shape_needed.connect(self.opener.ask_input_shape)
        self.jobs.cancelled.connect(lambda _name: self.training.end(None))
        self.deploy_view.failed.connect(lambda message: self.show_error("Export", message))
        self.deploy_view.exported.connect(lambda folder: self.jobs.log_line(f"exported {folder}"))
        self.jobs.busy_changed.connect(self._busy_changed)
        self.targets.combo.currentIndexChanged.connect(self._target_changed)
        self._busy_changed(False)

    # --- opening models --------------------------------------------------------------------

    def open_path(self, path: str | Path, trust_pickle: bool = False) -> bool:
        """Load in a worker; the window stays usable and shows a dialog if the file is bad."""
        return self.opener.open_path(path, trust_pickle)

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
        self._show_input_shape()
        self.controls.set_layers([])
        self.charts.set_selection([])
        self._busy_changed(self.jobs.running)

    def _show_input_shape(self) -> None:
        """The shapes jobs run at, in the status bar; a click asks for others."""
        loaded = self.session.opened.loaded if self.session.opened else None
        if loaded is None or loaded.onnx_model is None:
            self.input_shape.clear()
            return
        shapes, assumed = declared_input_shapes(loaded.onnx_model, self.opener.current_shapes())
        text = ", ".join(dims_text(shape) for shape in shapes.values())
        guessed = any(a.source == "assumed" and a.dim > 0 for a in assumed)  # not the batch
        note = " (dynamic dims taken as 1)" if guessed else ""
        if self.opener.remembered_shapes:
            note = " (remembered from last time)"
        self.input_shape.setText(f'input <a href="shape">{text}</a>{note}')

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
        prediction = self.session.prediction()
        original = (
            f"original {human_bytes(prediction.original_file_bytes)}, "
            f"{human_count(inv.total_macs)} MACs"
        )
        edits = self.session.edit_count()
        ratio = prediction.file_ratio
        text = (
            f"predicted size {human_bytes(prediction.file_size_bytes)} ({ratio:.2f}x, "
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
        for action in (*self.job_actions, self.global_prune_action, self.input_shape_action):
            action.setEnabled(has_model and not busy)
        self.open_action.setEnabled(not busy)

    def show_pareto(self) -> None:
        self.views.setCurrentWidget(self.charts)
        self.charts.setCurrentWidget(self.charts.pareto)

    def _result_added(self) -> None:
        self.results_dock.raise_()

    @property
    def compressed_path(self) -> Path | None:
        """The last model Compress (or Distill) wrote for the open model."""
        return self.session.compressed_path

    @property
    def data_path(self) -> Path | None:
        """The data chosen in the Run menu (a file or an image folder); None: the data rule
        decides."""
        return self.session.data_path

    @data_path.setter
    def data_path(self, path: Path | None) -> None:
        self.session.data_path = path

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
        self.opener.flush_draft()  # the last edit, not yet written
        self.jobs.cancel()
        self.graph.shutdown()
        self.deploy_view.discard()
        self.settings.set_window_state(self.saveGeometry(), self.saveState())
        self.settings.sync()
        super().closeEvent(event)
