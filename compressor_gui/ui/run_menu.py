"""The Run menu's jobs, started from the window: each asks core/workflows.py for its data and
its job, runs it through the jobs panel, and hands the result to the session (whose Results
history the window shows). No rule lives here: which data, which job, how a result reads are
the application layer's, shared with the CLI.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path

import platformdirs
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMessageBox

from compressor_gui.core.compress import CompressResult
from compressor_gui.core.data import (
    RANDOM_SOURCE,
    SPEC_FILE,
    Dataset,
    is_demo_model,
    load_dataset,
)
from compressor_gui.core.distill_types import DistillOptions, EpochStats
from compressor_gui.core.hardware import MachineInfo
from compressor_gui.core.jobs import CancelToken, Progress
from compressor_gui.core.search import AutoPlanResult, Candidate
from compressor_gui.core.sensitivity import SensitivityPoint, SensitivityTable
from compressor_gui.core.summaries import bench_summary, compress_summary, evaluation_summary
from compressor_gui.core.workflows import (
    CompressRequest,
    SweepRequest,
    autoplan_work,
    bench_input_shapes,
    bench_models_job,
    calibration_data,
    compress_work,
    evaluation_data,
    evaluation_models,
    has_own_data,
    sensitivity_work,
    sweep_data,
)
from compressor_gui.targets import get_target
from compressor_gui.targets.base import BenchResult, Target
from compressor_gui.targets.deploy import Timing, deploy_job
from compressor_gui.targets.evaluate import TargetEvaluation, evaluate_on_target
from compressor_gui.ui.autoplan_dialog import AutoPlanDialog, AutoPlanRequest
from compressor_gui.ui.compute_dialog import ComputeDialog
from compressor_gui.ui.settings import APP_NAME
from compressor_gui.ui.training import DistillDialog


def runs_dir() -> Path:
    """Where compressed models go by default: one folder per run under the user data dir."""
    return Path(platformdirs.user_data_dir(APP_NAME)) / "runs" / time.strftime("%Y%m%d-%H%M%S")


class RunMenu:
    """Starts Compress, Distill, Evaluate, Benchmark, Sensitivity, Auto plan and Deploy for
    the window's session and target (`window`: ui/main_window.py's, typed by its Qt base so
    that imports go one way)."""

    def __init__(self, window: QMainWindow) -> None:
        self.window = window
        self.session = window.session
        self.jobs = window.jobs
        self.data_question: QMessageBox | None = None

    def _loaded(self, needs_graph: bool = True):
        loaded = self.session.opened.loaded if self.session.opened else None
        if loaded is None or (needs_graph and loaded.onnx_model is None):
            return None
        return loaded

    def target(self) -> Target:
        """The target chosen in the toolbar (this machine until the panel has probed)."""
        choice = self.window.targets.current()
        return choice.target if choice else get_target("local")

    # --- data ---------------------------------------------------------------------------------

    def choose_data(self, then: Callable[[], None] | None = None) -> bool:
        """Ask for an .npz (x, optional labels y, or one array per input) and use it."""
        name, _ = QFileDialog.getOpenFileName(
            self.window,
            "Calibration / evaluation data",
            self.window.settings.last_dir(),
            "Data (*.npz);;All files (*)",
        )
        return bool(name) and self.use_data(Path(name), then)

    def choose_data_folder(self, then: Callable[[], None] | None = None) -> bool:
        """Ask for a folder of images (labelled by subfolder) with its preprocess.json."""
        name = QFileDialog.getExistingDirectory(
            self.window,
            f"Image folder (with {SPEC_FILE})",
            self.window.settings.last_dir(),
        )
        return bool(name) and self.use_data(Path(name), then)

    def use_data(self, path: Path, then: Callable[[], None] | None = None) -> bool:
        """Open `path` as the CLI's --data does (core/data.py: .npz or image folder) in a
        worker, against the open model; when it reads, it is the data of every job (and
        `then` runs), else the reason is shown and nothing changes."""
        loaded = self._loaded()
        if loaded is None:  # nothing to check it against yet: each job opens it anyway
            self.session.data_path = path
            self.jobs.log_line(f"data for compress and sensitivity: {path}")
            return True

        def job(_token: CancelToken):
            yield Progress(0, 1, f"reading {path.name}")
            return load_dataset(path, loaded.onnx_model)

        def done(dataset: Dataset) -> None:
            self.session.data_path = path
            labels = "with labels" if dataset.labels is not None else "no labels"
            self.jobs.log_line(
                f"data for compress and sensitivity: {path} ({len(dataset)} samples, {labels})"
            )
            if then is not None:
                self._when_idle(then)

        return self.jobs.start(
            f"Data {path.name}",
            job,
            done,
            on_error=lambda message: self.window.show_error("Data", message),
        )

    def _when_idle(self, step: Callable[[], None]) -> None:
        """Run `step` once the running job has finished (a job's result arrives while it
        still holds the jobs panel)."""

        def go(busy: bool) -> None:
            if not busy:
                self.jobs.busy_changed.disconnect(go)
                step()

        self.jobs.busy_changed.connect(go)

    def with_data(self, what: str, start: Callable[[], None], random_allowed: bool) -> None:
        """Start `start` when the model has data (chosen, beside it, or the demo's); else
        ask first (window-modal, the event loop runs): choose data, or, where fidelity alone
        means something, go on with random inputs."""
        path = self.session.path
        if path is None or has_own_data(path, self.session.data_path):
            start()
            return
        text = (
            f"{path.name} has no data beside it and none was chosen. On random inputs only "
            "fidelity to the original can be measured (output cosine and SQNR), no accuracy."
            if random_allowed
            else f"{what} measures accuracy drops, which need data: choose an .npz with x "
            f"(and labels y, if you have them) or a folder of images with its {SPEC_FILE}. "
            "On random inputs the drops would mean nothing."
        )
        box = QMessageBox(QMessageBox.Icon.Question, f"{what}: no data", text, parent=self.window)
        box.setObjectName("data_question")
        choose = box.addButton("Choose .npz file…", QMessageBox.ButtonRole.AcceptRole)
        folder = box.addButton("Choose image folder…", QMessageBox.ButtonRole.AcceptRole)
        random = None
        if random_allowed:
            random = box.addButton(f"Use {RANDOM_SOURCE}", QMessageBox.ButtonRole.ActionRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def answered() -> None:
            self.data_question = None
            clicked = box.clickedButton()
            if clicked is random:
                start()
            elif clicked is choose:
                self.choose_data(then=start)
            elif clicked is folder:
                self.choose_data_folder(then=start)

        box.finished.connect(answered)
        self.data_question = box
        box.open()

    # --- compress and distill ---------------------------------------------------------------

    def compress(self) -> None:
        """Apply the plan in a worker; the result lands in Results next to the original."""
        self.with_data("Compress", self._start_compress, random_allowed=True)

    def _start_compress(self) -> None:
        loaded = self._loaded(needs_graph=False)
        if loaded is None:
            return
        out = runs_dir() / f"{loaded.path.stem}.compressed.onnx"
        request = CompressRequest(self.session.plan, out, self.session.data_path)
        target = self.target()

        def job(token: CancelToken):  # the target is read when the job runs (SSH)
            return compress_work(loaded, request, target, token, in_child=True)

        self.jobs.start(f"Compress {loaded.path.name}", job, self.compressed)

    def distill(self) -> None:
        """Ask for epochs and QAT (window-modal), then run Compress with recovery training."""
        loaded = self._loaded(needs_graph=False)
        if loaded is None:
            return
        chosen = self.session.data_path
        data = str(chosen) if chosen else "the demo's training split"
        if chosen is None and not is_demo_model(loaded.path):
            data = "no data chosen: Run > Choose data first"
        dialog = DistillDialog(data, self.window)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self.run_distill(dialog.options(), dialog.unlabeled()))
        dialog.open()

    def run_distill(self, options: DistillOptions, unlabeled: Path | None = None) -> None:
        loaded = self._loaded(needs_graph=False)
        if loaded is None:
            return
        out = runs_dir() / f"{loaded.path.stem}.distilled.onnx"
        request = CompressRequest(
            self.session.plan, out, self.session.data_path, distill=options, unlabeled=unlabeled
        )
        target = self.target()
        finish = CancelToken(multiprocessing.get_context("spawn").Event())
        training = self.window.training
        training.begin(finish)
        self.window.views.setCurrentWidget(training)

        def job(token: CancelToken):
            return compress_work(
                loaded, request, target, token, in_child=True, finish_training=finish
            )

        def done(result: CompressResult) -> None:
            training.end(result.distill)
            self.compressed(result, "Distill")

        def failed(message: str) -> None:
            training.end(None)
            self.window.show_error("Distill failed", message)

        def progress(step: Progress) -> None:
            if isinstance(step.payload, EpochStats):
                training.add(step.payload)

        if not self.jobs.start(f"Distill {loaded.path.name}", job, done, failed, progress):
            training.end(None)

    def compressed(self, result: CompressResult, kind: str = "Compress") -> None:
        self.session.compressed_path = result.output_path
        self.session.add_result(compress_summary(result, kind))
        self.window.layer_error.compare_when_idle()

    # --- measuring ----------------------------------------------------------------------------

    def evaluate(self) -> None:
        """Run the original (and the last compressed model) over the data in a worker, on the
        machine chosen in the Target box: this one or an SSH target."""
        self.with_data("Evaluate", self._start_evaluate, random_allowed=True)

    def _start_evaluate(self) -> None:
        loaded = self._loaded()
        if loaded is None:
            return
        choice = self.window.targets.current()
        target = choice.target if choice else get_target("local")
        config = choice.config() if choice else None
        models = evaluation_models(loaded, self.session.compressed_path)
        chosen = self.session.data_path

        def job(token: CancelToken):  # a generator: the data loads in the worker too
            dataset = evaluation_data(loaded, chosen)
            return (yield from evaluate_on_target(target, models, dataset, config, cancel=token))

        name = loaded.path.name
        self.jobs.start(f"Evaluate {name} on {target.name}", job, self._evaluated)

    def _evaluated(self, evaluation: TargetEvaluation) -> None:
        self.session.add_result(evaluation_summary(evaluation, self.session.path.name))

    def benchmark(self) -> None:
        """Time the original (and the last compressed model) on the chosen target, or on every
        target checked in the targets panel at once."""
        choice = self.window.targets.current()
        if choice is None or self.session.path is None:
            message = "No target is ready yet (still probing this machine)."
            self.window.show_error("Benchmark", message)
            return
        models = [("original", self.session.path)]
        if self.session.compressed_path is not None:
            models.append(("compressed", self.session.compressed_path))
        loaded, chosen = self._loaded(), self.session.data_path
        data = (lambda: evaluation_data(loaded, chosen)) if loaded else None
        shapes = (lambda: bench_input_shapes(loaded)) if loaded else None
        if self.window.targets.fanout.start(self.jobs, models, data, shapes):  # 2+ checked
            self.window.targets_dock.raise_()
            return
        config = choice.config()

        def job(token: CancelToken):  # the shapes are tried in the worker, not the GUI thread
            sized = dataclasses.replace(config, input_shapes=shapes()) if shapes else config
            return (yield from bench_models_job(choice.target, models, sized, token))

        def done(outcome: tuple[dict[str, BenchResult], MachineInfo]) -> None:
            results, machine = outcome
            name = self.session.path.name
            self.session.add_result(bench_summary(choice.label, name, results, machine))

        self.jobs.start(f"Benchmark on {choice.label}", job, done)

    def sensitivity(self) -> None:
        """Measure how much each selected layer's (or every layer's) metric drops per option;
        curves fill in live as points land."""
        self.with_data("Sensitivity", self._start_sensitivity, random_allowed=False)

    def _start_sensitivity(self) -> None:
        loaded = self._loaded()
        if loaded is None:
            return
        layers = tuple(self.window.selected_layers()) or None
        target, chosen = self.target(), self.session.data_path
        placement = self.window.settings.compute().placement()

        def job(token: CancelToken):  # a generator: data and target are read in the worker
            dataset = sweep_data(loaded, chosen)
            request = SweepRequest(layers, placement=placement)
            machine = target.machine()
            return (
                yield from sensitivity_work(loaded, dataset, request, machine, token, in_child=True)
            )

        started = self.jobs.start(
            "Sensitivity" if layers is None else f"Sensitivity of {len(layers)} layers",
            job,
            self.session.set_sensitivity,
            progress=self._sensitivity_progress,
        )
        if started:  # the curves grow as points land: show them
            self.window.views.setCurrentWidget(self.window.charts)
            self.window.charts.setCurrentWidget(self.window.charts.sensitivity_plot)

    def _sensitivity_progress(self, step: Progress) -> None:
        if isinstance(step.payload, SensitivityTable):
            self.session.set_sensitivity(step.payload)
        elif isinstance(step.payload, SensitivityPoint):
            self.session.add_sensitivity_point(step.payload)

    def choose_compute(self) -> None:
        """Ask where jobs run (window-modal); the answer is kept in the settings."""
        settings = self.window.settings
        dialog = ComputeDialog(settings.compute(), self.window)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: settings.set_compute(dialog.compute()))
        dialog.open()

    # --- plans and deployment ---------------------------------------------------------------

    def auto_plan(self) -> None:
        """Ask for a budget (window-modal, the event loop runs) and then run Auto plan."""

        def ask() -> None:
            dialog = AutoPlanDialog(self.window)
            dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            dialog.accepted.connect(lambda: self.run_autoplan(dialog.request()))
            dialog.open()

        self.with_data("Auto plan", ask, random_allowed=False)

    def run_autoplan(self, request: AutoPlanRequest) -> None:
        loaded = self._loaded()
        if loaded is None:
            return
        target, chosen = self.target(), self.session.data_path
        where = self.window.settings.compute().placement()

        def job(token: CancelToken):
            dataset = sweep_data(loaded, chosen, request.samples)
            calibration = calibration_data(loaded, chosen, dataset)
            machine = target.machine()
            budget, verification = request.budget, request.verification
            job = autoplan_work(
                loaded,
                dataset,
                calibration,
                budget,
                verification,
                where,
                machine,
                token,
                in_child=True,
                recovery=request.recovery,
            )
            return (yield from job)

        self.jobs.start(f"Auto plan ({request.verification})", job, self._autoplanned)

    def _autoplanned(self, result: AutoPlanResult) -> None:
        self.session.set_autoplan(result)
        self.load_candidate(result.chosen)
        for note in result.notes:
            self.jobs.log_line(f"note: {note}")
        self.window.show_pareto()

    def load_candidate(self, candidate: Candidate) -> None:
        """Make a measured candidate the plan (one undo step); sliders and table follow."""
        self.session.set_plan(candidate.plan, f"plan from Auto plan: {candidate.label}")

    def deploy(self, forms: list[str] | None = None, timing: Timing | None = None) -> None:
        """Deploy the plan to the toolbar's target in a worker; the table lands in the Deploy
        tab (`forms` and `timing` narrow it, as the CLI's --forms / --rounds do)."""
        loaded = self._loaded()
        if loaded is None:
            return
        target, plan, data = self.target(), self.session.plan, self.session.data_path
        view = self.window.deploy_view
        work = view.new_work_dir()

        epochs = view.recovery_epochs.value()

        def job(token: CancelToken):
            sample = evaluation_data(loaded, data)
            timed = timing or Timing()
            result = yield from deploy_job(
                loaded.source,
                target,
                work,
                plan,
                data,
                token,
                forms=forms,
                timing=timed,
                recovery_epochs=epochs,
            )
            return result, sample

        def done(outcome) -> None:
            view.show_result(*outcome)
            self.window.views.setCurrentWidget(view)

        self.jobs.start(f"Deploy {loaded.path.name} on {target.name}", job, done)
