"""Where a model runs: this machine (local.py) or a saved SSH box (ssh.py, jetson.py)."""

from __future__ import annotations

from compressor_gui.targets.base import Target


def get_target(name: str | None, accept_host_key: str | None = None) -> Target:
    """The target called `name`: "local" (or None) for this machine, else a saved SSH target
    (`accept_host_key`: a new host key fingerprint the user confirmed)."""
    if name in (None, "", "local"):
        from compressor_gui.targets.local import LocalTarget

        return LocalTarget()
    from compressor_gui.targets.ssh import SshTarget
    from compressor_gui.targets.store import load_target

    return SshTarget(load_target(name), accept_host_key=accept_host_key)
