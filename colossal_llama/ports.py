"""Ports are never fixed: the system picks one that no one holds now."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` now ("" = every interface, for a master other nodes reach); the caller binds it
    a moment later (torchrun, a gloo group)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
