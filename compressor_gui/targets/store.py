"""Saved SSH targets as JSON in the user config dir; passwords only ever go to the OS keyring.

COMPRESSOR_GUI_CONFIG_DIR overrides the folder (tests, portable installs).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from compressor_gui.core.errors import TargetError
from compressor_gui.core.model import atomic_write_text

KEYRING_SERVICE = "compressor-gui"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class TargetSpec:
    """How to reach one SSH box; `python` is the interpreter that has onnxruntime there."""

    name: str
    host: str
    user: str
    port: int = 22
    key_file: str | None = None
    use_agent: bool = True
    python: str = "python3"
    remote_tmp: str = "/tmp"
    password_in_keyring: bool = False

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name) or self.name == "local":
            raise TargetError(
                f"target name {self.name!r} is not usable: letters, digits, '.', '_', '-' "
                "(and not 'local')"
            )
        if not 0 < int(self.port) < 65536:
            raise TargetError(f"port {self.port} is not a TCP port")

    @property
    def address(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


def config_dir() -> Path:
    override = os.environ.get("COMPRESSOR_GUI_CONFIG_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_config_dir("compressor-gui"))


def targets_file() -> Path:
    return config_dir() / "targets.json"


def known_hosts_file() -> Path:
    """Host keys the user accepted in this app (the system known_hosts is read as well)."""
    return config_dir() / "known_hosts"


def load_targets() -> dict[str, TargetSpec]:
    path = targets_file()
    if not path.exists():
        return {}
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["targets"]
        known = {f.name for f in fields(TargetSpec)}
        specs = [TargetSpec(**{k: v for k, v in e.items() if k in known}) for e in entries]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TargetError(f"{path} is damaged ({exc}): fix or delete it") from exc
    return {spec.name: spec for spec in specs}


def load_target(name: str) -> TargetSpec:
    targets = load_targets()
    if name not in targets:
        saved = ", ".join(sorted(targets)) or "none"
        raise TargetError(
            f"no saved target {name!r} (saved: {saved}); add one with "
            "`compressor-gui targets add NAME USER@HOST`"
        )
    return targets[name]


def save_target(spec: TargetSpec) -> Path:
    targets = load_targets()
    targets[spec.name] = spec
    return _write(targets)


def remove_target(name: str) -> None:
    targets = load_targets()
    spec = targets.pop(name, None)
    if spec is None:
        raise TargetError(f"no saved target {name!r}")
    if spec.password_in_keyring:
        delete_password(spec)
    _write(targets)


def _write(targets: dict[str, TargetSpec]) -> Path:
    payload = {"targets": [asdict(spec) for spec in targets.values()]}
    return atomic_write_text(targets_file(), json.dumps(payload, indent=2) + "\n")


def _keyring_user(spec: TargetSpec) -> str:
    return f"{spec.name}:{spec.address}"


def set_password(spec: TargetSpec, password: str) -> None:
    import keyring
    import keyring.errors

    try:
        keyring.set_password(KEYRING_SERVICE, _keyring_user(spec), password)
    except keyring.errors.KeyringError as exc:
        raise TargetError(
            f"no usable OS keyring here to keep the password ({exc}); "
            "use a key file or the SSH agent instead"
        ) from exc


def get_password(spec: TargetSpec) -> str | None:
    import keyring
    import keyring.errors

    try:
        return keyring.get_password(KEYRING_SERVICE, _keyring_user(spec))
    except keyring.errors.KeyringError as exc:
        raise TargetError(f"cannot read the password from the OS keyring: {exc}") from exc


def delete_password(spec: TargetSpec) -> None:
    import keyring
    import keyring.errors

    try:
        keyring.delete_password(KEYRING_SERVICE, _keyring_user(spec))
    except keyring.errors.PasswordDeleteError:
        pass  # already gone
    except keyring.errors.KeyringError as exc:
        raise TargetError(f"cannot remove the password from the OS keyring: {exc}") from exc
