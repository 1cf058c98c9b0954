"""The plan being edited, kept on disk after every change, so that a crash, a killed process
or a window closed without saving loses nothing: reopening the model offers the plan back.

One draft per model file (keyed by its absolute path), written atomically as a JSON recipe in
the user data folder; the default plan counts as "nothing to restore".
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from compressor_gui.core.errors import CompressorError
from compressor_gui.core.plan import CompressionPlan, load_recipe, save_recipe
from compressor_gui.ui.settings import APP_NAME


@dataclass(frozen=True)
class Draft:
    plan: CompressionPlan
    saved_at: float  # seconds since the epoch

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.saved_at))
        count = len(self.plan.layers)
        return f"{count} layer setting{'' if count == 1 else 's'}, last changed {when}"


def draft_path(model: Path) -> Path:
    key = hashlib.sha256(str(Path(model).resolve()).encode()).hexdigest()[:20]
    return Path(platformdirs.user_data_dir(APP_NAME)) / "drafts" / f"{key}.json"


def save_draft(model: Path, plan: CompressionPlan) -> None:
    save_recipe(plan, draft_path(model))


def load_draft(model: Path) -> Draft | None:
    """The draft for `model`, or None when there is none, it is the default plan, or it no
    longer reads (a draft is a convenience: it must never stop a model from opening)."""
    path = draft_path(model)
    try:
        plan = load_recipe(path)
        saved_at = path.stat().st_mtime
    except (CompressorError, OSError):
        return None
    return None if plan == CompressionPlan() else Draft(plan, saved_at)


def discard_draft(model: Path) -> None:
    draft_path(model).unlink(missing_ok=True)
