"""File > Save report…: the report of the last job that measured something (compress,
distill, evaluate, benchmark, sensitivity, auto plan, where-did-accuracy-go, deploy), written
as the CLI's `--report` writes it: a self-contained HTML page with its JSON beside it."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFileDialog, QWidget

from compressor_gui.core.errors import CompressorError
from compressor_gui.core.report import Report, write_report
from compressor_gui.targets.job_reports import report_for
from compressor_gui.ui.errors import error_box
from compressor_gui.ui.jobs_panel import JobsPanel


class LastReport(QObject):
    """Keeps the report of the last finished job that has one."""

    def __init__(self, jobs: JobsPanel) -> None:
        super().__init__(jobs)
        self.jobs = jobs
        self.report: Report | None = None
        jobs.succeeded.connect(self._finished)

    def _finished(self, _name: str, result: object) -> None:
        report = report_for(result)
        if report is not None:
            self.report = report

    def save_dialog(self, parent: QWidget, folder: str) -> None:
        """Ask where, then save; says so when no job has measured anything yet."""
        if self.report is None:
            error_box(
                parent,
                "Save report",
                "No report yet: run a job first (Compress, "
                "Evaluate, Benchmark, Sensitivity, Auto plan, Deploy…).",
            )
            return
        suggested = str(Path(folder) / f"{self.report.kind}-report.html")
        name, _ = QFileDialog.getSaveFileName(
            parent, "Save report", suggested, "HTML report (*.html)"
        )
        if name:
            self.save(parent, Path(name))

    def save(self, parent: QWidget, path: Path) -> Path | None:
        if path.suffix.lower() not in (".html", ".htm"):
            path = path.with_suffix(path.suffix + ".html")
        try:
            page, data = write_report(self.report, path)
        except CompressorError as exc:
            error_box(parent, "Could not save the report", str(exc))
            return None
        self.jobs.log_line(f"report saved to {page} (and {data.name})")
        return page
