"""Test helper: a Python process started with this folder on PYTHONPATH imports this module
at start-up (site.py), and so do its spawned and forked children. Every attempt to reach a
non-loopback address (a DNS lookup or a connect) is appended to $NETGUARD_LOG and refused."""

from __future__ import annotations

import os
import socket

_LOG = os.environ.get("NETGUARD_LOG", "")
_LOOPBACK = ("127.", "::1", "localhost", "0.0.0.0")
_connect, _connect_ex, _getaddrinfo = (
    socket.socket.connect,
    socket.socket.connect_ex,
    socket.getaddrinfo,
)


def _outside(host: object) -> bool:
    return isinstance(host, str) and bool(host) and not host.startswith(_LOOPBACK)


def _refuse(what: str) -> None:
    with open(_LOG, "a", encoding="utf-8") as log:
        log.write(f"{os.getpid()} {what}\n")
    raise OSError(f"netguard: outside connection refused: {what}")


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and _outside(address[0]):
        _refuse(f"connect {address}")
    return _connect(self, address)


def _guarded_connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and _outside(address[0]):
        _refuse(f"connect_ex {address}")
    return _connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if _outside(host):
        _refuse(f"getaddrinfo {host}")
    return _getaddrinfo(host, *args, **kwargs)


if _LOG:
    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex
    socket.getaddrinfo = _guarded_getaddrinfo
