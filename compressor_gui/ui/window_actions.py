"""The window's actions, menus and toolbar: which command sits where, with its shortcut and
tooltip. The commands themselves are the window's, its model opener's and its Run menu's."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QLabel, QMainWindow, QToolBar

from compressor_gui.ui.int8_form_menu import Int8FormMenu
from compressor_gui.ui.paths import demo_model_path


def _action(w: QMainWindow, text: str, slot: Callable, shortcut=None, tip: str = "") -> QAction:
    action = QAction(text, w)
    action.triggered.connect(slot)
    if shortcut is not None:
        action.setShortcut(shortcut)
    if tip:
        action.setToolTip(tip)
        action.setStatusTip(tip)
    return action


def build_actions(w: QMainWindow) -> None:
    """Create the actions as attributes of the window (`w.compress_action`, ...)."""
    Key = QKeySequence.StandardKey
    w.open_action = _action(w, "Open…", w.opener.open_dialog, Key.Open, "Open a model file")
    w.demo_action = _action(w, "Open demo model", lambda: w.open_path(demo_model_path()))
    w.save_recipe_action = _action(w, "Save recipe…", w.save_recipe_dialog, Key.Save)
    w.load_recipe_action = _action(w, "Load recipe…", w.load_recipe_dialog)
    w.save_report_action = _action(
        w,
        "Save report…",
        lambda: w.last_report.save_dialog(w, w.settings.last_dir()),
        tip="The last job's figures as a self-contained HTML page (and JSON beside it)",
    )
    w.quit_action = _action(w, "Quit", w.close, Key.Quit)
    history = w.session.history
    # short toolbar labels; what would be undone goes into the tooltip
    w.undo_action = _action(w, "Undo", history.undo, Key.Undo)
    w.redo_action = _action(w, "Redo", history.redo, Key.Redo)

    def history_changed() -> None:
        w.undo_action.setEnabled(history.can_undo())
        w.redo_action.setEnabled(history.can_redo())
        w.undo_action.setToolTip(f"Undo {history.undo_text()}")
        w.redo_action.setToolTip(f"Redo {history.redo_text()}")

    w.session.history_changed.connect(history_changed)
    history_changed()
    w.reset_action = _action(w, "Reset plan", w.reset_plan)
    w.global_prune_action = _action(
        w,
        "Prune globally…",
        w.global_prune_dialog,
        tip="Zero a share of the selected (or all) layers' weights under one magnitude "
        "threshold: layers with many small weights give more",
    )
    w.compress_action = _action(
        w, "Compress", w.runs.compress, tip="Apply the plan and write a compressed model"
    )
    w.distill_action = _action(
        w,
        "Distill…",
        w.runs.distill,
        tip="Compress with recovery: train the pruned plan towards the original "
        "(knowledge distillation, optionally quantization-aware), then write it",
    )
    w.sensitivity_action = _action(
        w, "Sensitivity", w.runs.sensitivity, tip="Measure each layer's accuracy drop per option"
    )
    w.autoplan_action = _action(
        w, "Auto plan", w.runs.auto_plan, tip="Find a plan under a size or accuracy budget"
    )
    w.evaluate_action = _action(
        w,
        "Evaluate",
        w.runs.evaluate,
        tip="Accuracy of the original (and the last compressed model) on the chosen data, "
        "and how closely the compressed outputs follow the original's",
    )
    w.deploy_action = _action(
        w,
        "Deploy",
        w.runs.deploy,
        tip="Build every form of the plan the target can run (runtime x precision), time "
        "and score each there, and recommend the fastest within the accuracy budget",
    )
    w.bench_action = _action(
        w, "Benchmark", w.runs.benchmark, tip="Time the original and compressed model on the target"
    )
    w.data_action = _action(
        w,
        "Choose data file…",
        lambda: w.runs.choose_data(),  # not triggered(checked) as its `then`
        tip="Calibration/evaluation data: an .npz with x (and labels y), or one array per input",
    )
    w.data_folder_action = _action(
        w,
        "Choose image folder…",
        lambda: w.runs.choose_data_folder(),
        tip="Calibration/evaluation data: a folder of images (a subfolder per class for "
        "labels) with a preprocess.json giving size, mean, std, scale and channels",
    )
    w.compute_action = _action(
        w,
        "Where jobs run…",
        w.runs.choose_compute,
        tip="Local processes for Sensitivity and Auto plan, or a Dask cluster",
    )
    w.input_shape_action = _action(
        w,
        "Input shape…",
        lambda: w.opener.ask_input_shape(),
        tip="The size each dynamic input takes in every job (calibration, evaluation, "
        "sensitivity, benchmark, deploy)",
    )
    w.theme_action = _action(w, "Dark theme", w.toggle_theme)
    w.theme_action.setCheckable(True)


def build_menus(w: QMainWindow) -> None:
    """The menu bar and the toolbar over the actions `build_actions` made."""
    menu = w.menuBar()
    file_menu = menu.addMenu("&File")
    file_menu.addActions([w.open_action, w.demo_action])
    w.recent_menu = file_menu.addMenu("Open recent")
    w.recent_menu.aboutToShow.connect(w.opener.fill_recent)
    file_menu.addSeparator()
    file_menu.addActions([w.save_recipe_action, w.load_recipe_action])
    file_menu.addAction(w.save_report_action)
    file_menu.addSeparator()
    file_menu.addAction(w.quit_action)
    edit_menu = menu.addMenu("&Edit")
    edit_menu.addActions([w.undo_action, w.redo_action, w.reset_action])
    edit_menu.addSeparator()
    edit_menu.addAction(w.global_prune_action)
    w.int8_form_menu = Int8FormMenu(w.session, w)
    edit_menu.addMenu(w.int8_form_menu)
    model_menu = menu.addMenu("&Model")
    model_menu.addAction(w.input_shape_action)
    # the jobs a model makes possible: in the Run menu and the toolbar, off while one runs
    w.job_actions = (
        w.sensitivity_action,
        w.autoplan_action,
        w.compress_action,
        w.distill_action,
        w.evaluate_action,
        w.layer_error.action,
        w.bench_action,
        w.deploy_action,
    )
    run_menu = menu.addMenu("&Run")
    run_menu.addActions(w.job_actions)
    run_menu.addSeparator()
    run_menu.addActions([w.data_action, w.data_folder_action, w.compute_action])
    view_menu = menu.addMenu("&View")
    view_menu.addAction(w.theme_action)
    view_menu.addActions([w.jobs_dock.toggleViewAction(), w.results_dock.toggleViewAction()])

    bar = QToolBar("Main")
    bar.setObjectName("toolbar_main")
    bar.setMovable(False)
    bar.addActions([w.open_action, w.undo_action, w.redo_action])
    bar.addSeparator()
    bar.addWidget(QLabel(" Target "))
    bar.addWidget(w.targets.combo)
    bar.addSeparator()
    bar.addActions(w.job_actions)
    w.addToolBar(bar)
    w.toolbar = bar
