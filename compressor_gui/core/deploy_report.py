"""The deployment folder: the chosen form in its runtime's format, the recipe, a run script
that works with the folder's files, and the deploy report (core/report.py: HTML with the
plots as inline SVG, and JSON) of every candidate the target measured.

The folder is built in a temp folder beside its destination and renamed into place, so a
folder that exists is always complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from compressor_gui.core.data import Dataset, save_npz
from compressor_gui.core.deploy import DeployResult, copy_form
from compressor_gui.core.errors import CompressorError
from compressor_gui.core.job_reports import deploy_report
from compressor_gui.core.plan import save_recipe
from compressor_gui.core.report import report_html
from compressor_gui.core.run_snippets import snippet

REPORT_HTML, REPORT_JSON, RECIPE, SAMPLE = (
    "report.html",
    "report.json",
    "recipe.json",
    "sample_input.npz",
)


def write_deployment(
    result: DeployResult, folder: str | os.PathLike[str], sample: Dataset, key: str | None = None
) -> Path:
    """Write the form `key` (default: the recommended one) with everything needed to run it
    into `folder`, replacing a previous deployment there as one rename."""
    key = key or result.recommendation.key
    form = result.form(key)
    if form.path is None or not form.path.exists():
        raise CompressorError(f"{form.spec.label} has no files to export: {form.error or 'gone'}")
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    staging.chmod(0o755)  # mkdtemp's 0700 is for scratch, not for a folder to ship
    try:
        copy_form(form.path, staging)
        save_recipe(result.plan, staging / RECIPE)
        save_npz(staging / SAMPLE, next(sample.batches(1)))
        name, text = snippet(form.spec.runtime, form.spec.precision, form.spec.device)
        (staging / name).write_text(text, encoding="utf-8")
        data = {**result.to_dict(), "exported": key, "run_script": name}
        (staging / REPORT_JSON).write_text(json.dumps(data, indent=2), encoding="utf-8")
        report = deploy_report(result, key)
        (staging / REPORT_HTML).write_text(report_html(report), encoding="utf-8")
        _replace_folder(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _replace_folder(new: Path, folder: Path) -> None:
    """Move `new` onto `folder`; an old folder is moved aside first and removed after."""
    old = None
    if folder.exists():
        if not folder.is_dir():
            raise CompressorError(f"{folder} exists and is not a folder: choose another -o")
        old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.old."))
        os.replace(folder, old / folder.name)
    os.replace(new, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
