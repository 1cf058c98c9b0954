"""Persistent preferences (recent files, theme, window layout, last folder, where jobs run,
each model's input shape) over QSettings.

QSettings writes an INI file in the platformdirs config folder, so the location is the same
one the CLI and the target store use, and tests can point it at a temp folder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import platformdirs
from PySide6.QtCore import QByteArray, QSettings

from compressor_gui.core.errors import CompressorError
from compressor_gui.core.executors import ClusterConfig, Placement
from compressor_gui.core.shapes import dims_text, parse_shape

APP_NAME = "compressor-gui"
MAX_RECENT = 8
DEFAULT_WORKERS = 2
_COMPUTE_TEXT = ("cluster", "tls_ca_file", "tls_cert_file", "tls_key_file")


@dataclass(frozen=True)
class ComputeSettings:
    """Local worker processes, or a Dask scheduler address (empty: local) and its TLS files."""

    workers: int = DEFAULT_WORKERS
    cluster: str = ""
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""

    def placement(self) -> Placement:
        """What the jobs take; a CompressorError when the address or files are not usable."""
        if not self.cluster:
            return Placement(max(1, self.workers))
        files = (self.tls_ca_file, self.tls_cert_file, self.tls_key_file)
        return Placement(cluster=ClusterConfig(self.cluster, *(f or None for f in files)))


def settings_file() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / "gui.ini"


class Settings:
    """Typed accessors over one INI-backed QSettings."""

    def __init__(self, path: Path | None = None) -> None:
        self._qs = QSettings(str(path or settings_file()), QSettings.Format.IniFormat)

    def recent_files(self) -> list[str]:
        value = self._qs.value("recent_files", [])
        if isinstance(value, str):  # QSettings returns a bare string for one-item lists
            value = [value]
        return [str(v) for v in value or []]

    def add_recent(self, path: str | Path) -> None:
        path = str(Path(path).resolve())
        files = [path, *(f for f in self.recent_files() if f != path)][:MAX_RECENT]
        self._qs.setValue("recent_files", files)

    def theme(self) -> str:
        return str(self._qs.value("theme", "dark"))

    def set_theme(self, theme: str) -> None:
        self._qs.setValue("theme", theme)

    def last_dir(self) -> str:
        return str(self._qs.value("last_dir", str(Path.home())))

    def set_last_dir(self, folder: str | Path) -> None:
        self._qs.setValue("last_dir", str(folder))

    def target(self) -> str:
        return str(self._qs.value("target", "local:cpu"))

    def set_target(self, key: str) -> None:
        self._qs.setValue("target", key)

    def compute(self) -> ComputeSettings:
        """Where sensitivity and auto plan run: local processes, or a Dask cluster."""
        text = {key: str(self._qs.value(f"compute/{key}", "")) for key in _COMPUTE_TEXT}
        workers = int(self._qs.value("compute/workers", DEFAULT_WORKERS))
        return ComputeSettings(workers=workers, **text)

    def set_compute(self, compute: ComputeSettings) -> None:
        self._qs.setValue("compute/workers", compute.workers)
        for key in _COMPUTE_TEXT:
            self._qs.setValue(f"compute/{key}", getattr(compute, key))

    def input_shapes(self, model: str | Path) -> tuple[tuple[int, ...], ...]:
        """The input shapes last answered for this very file (same path, size and time of
        change), one per real input in order; () when none or the file has changed."""
        value = self._qs.value(f"input_shapes/{_file_key(model)}", [])
        if isinstance(value, str):  # QSettings returns a bare string for one-item lists
            value = [value]
        try:
            return tuple(parse_shape(str(text)) for text in value or [])
        except CompressorError:  # an edited settings file must not stop a model opening
            return ()

    def set_input_shapes(self, model: str | Path, shapes: Sequence[Sequence[int]]) -> None:
        self._qs.setValue(f"input_shapes/{_file_key(model)}", [dims_text(s) for s in shapes])

    def window_state(self) -> tuple[QByteArray | None, QByteArray | None]:
        return self._qs.value("geometry"), self._qs.value("window_state")

    def set_window_state(self, geometry: QByteArray, state: QByteArray) -> None:
        self._qs.setValue("geometry", geometry)
        self._qs.setValue("window_state", state)

    def sync(self) -> None:
        self._qs.sync()


def _file_key(model: str | Path) -> str:
    """A model file as it is now: its absolute path, size and time of change (a file edited
    or replaced in place gets a new key, so an old answer is never applied to it)."""
    path = Path(model).resolve()
    try:
        stat = path.stat()
        identity = f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}"
    except OSError:
        identity = str(path)
    return hashlib.sha256(identity.encode()).hexdigest()[:20]
