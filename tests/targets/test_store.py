"""Saved targets: JSON in the config dir, never a password in it."""

from __future__ import annotations

import keyring
import pytest
from keyring.backend import KeyringBackend

from compressor_gui.core.errors import TargetError
from compressor_gui.targets.store import (
    TargetSpec,
    get_password,
    load_target,
    load_targets,
    remove_target,
    save_target,
    set_password,
)


class MemoryKeyring(KeyringBackend):
    """A real keyring backend kept in memory (this machine has no OS keyring)."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def set_password(self, service, username, password):
        self.entries[service, username] = password

    def get_password(self, service, username):
        return self.entries.get((service, username))

    def delete_password(self, service, username):
        self.entries.pop((service, username), None)


def test_targets_round_trip_through_the_config_dir(config_dir):
    spec = TargetSpec(name="jetson", host="10.0.0.5", user="nvidia", key_file="/k")
    save_target(spec)
    assert load_target("jetson") == spec
    assert list(config_dir.iterdir()) == [config_dir / "targets.json"]
    remove_target("jetson")
    assert load_targets() == {}


def test_password_goes_to_the_keyring_never_the_file(config_dir):
    previous = keyring.get_keyring()
    memory = MemoryKeyring()
    keyring.set_keyring(memory)
    try:
        spec = TargetSpec(name="pw", host="h", user="u", password_in_keyring=True)
        set_password(spec, "s3cret")
        save_target(spec)
        assert "s3cret" not in (config_dir / "targets.json").read_text()
        assert get_password(spec) == "s3cret"
        remove_target("pw")
        assert memory.entries == {}
    finally:
        keyring.set_keyring(previous)


def test_no_keyring_is_a_clear_error(config_dir):
    from keyring.backends.fail import Keyring as FailKeyring

    previous = keyring.get_keyring()
    keyring.set_keyring(FailKeyring())
    try:
        with pytest.raises(TargetError, match="key file or the SSH agent"):
            set_password(TargetSpec(name="pw", host="h", user="u"), "x")
    finally:
        keyring.set_keyring(previous)


def test_damaged_file_says_where_it_is(config_dir):
    config_dir.mkdir()
    (config_dir / "targets.json").write_text("{oops")
    with pytest.raises(TargetError, match="targets.json is damaged"):
        load_targets()


def test_bad_names_are_refused():
    with pytest.raises(TargetError):
        TargetSpec(name="local", host="h", user="u")
