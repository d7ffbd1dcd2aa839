"""Free TCP ports for the child servers of the local stack and the tests.

A port picked here is only *probably* free: another process can take it
between our probe and the server's bind. Launchers therefore treat a bind
failure at start-up as retryable rather than trusting the port blindly.
"""

from __future__ import annotations

import socket
from collections.abc import Callable


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that was free a moment ago (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct free ports: all sockets stay open until every port is picked.

    Calling `free_port()` in a loop can hand back the same number twice,
    because each socket is closed before the next probe.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


# Tries of a start on a port of our picking before giving up: a lost race is rare, three in a row is not a race.
START_ATTEMPTS = 3


def start_on_a_port(
    requested: int,
    launch: Callable[[int], None],
    wait_ready: Callable[[], None],
    abandon: Callable[[], None],
    start_error: type[Exception],
) -> None:
    """Start a server on `requested`, or (0) on a free port, trying another free one when a start
    fails with `start_error` (the port was taken between our pick and the server's bind).

    `launch(port)` spawns the server on the port, `wait_ready()` raises `start_error` when it never
    becomes ready, and `abandon()` stops what a failed try left running.
    """
    attempts = 1 if requested else START_ATTEMPTS
    for attempt in range(attempts):
        launch(requested or free_port())
        try:
            wait_ready()
            return
        except start_error:
            abandon()
            if attempt == attempts - 1:
                raise
