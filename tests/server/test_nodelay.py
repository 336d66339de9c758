"""Every server turns Nagle's algorithm off on the connections it accepts.

A reply written in pieces (a large message in chunks, then its
terminator) would otherwise wait, piece by piece, for the client's delayed
acknowledgement: 40 ms on Linux.  ``no_delay`` in ``adapters/server/_base.py``
says why asyncio does not do it for us.  The servers run in this process,
so the server's end of a connection is found among this process's file
descriptors, by its peer address.
"""

from __future__ import annotations

import os
import socket
import sys

import pytest

from pop3proto.adapters.server import MemoryBackend
from pop3proto.adapters.server._base import no_delay
from tests.helpers import USER
from tests.helpers.servers import running_server

RUNTIMES = ["sync", "asyncio", "trio"]


def _server_end(client: socket.socket) -> socket.socket:
    """A duplicate of the socket in this process whose peer is *client*."""
    wanted = client.getsockname()
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:  # closed meanwhile (the listing's own descriptor)
            continue
        try:
            if sock.type == socket.SOCK_STREAM and sock.getpeername() == wanted:
                return sock
        except OSError:  # a listener, or not connected
            pass
        sock.close()
    raise AssertionError(f"no socket of this process is connected to {wanted}")


def _nodelay(sock: socket.socket) -> bool:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
@pytest.mark.parametrize("kind", RUNTIMES)
def test_accepted_connections_send_without_delay(kind: str) -> None:
    with running_server(kind, MemoryBackend({USER: [b"Subject: x\r\n\r\nhi\r\n"]})) as running:
        with running.connect() as client:
            assert client.recv(1024).startswith(b"+OK")  # accepted and greeted
            # The check can tell: a socket left alone has Nagle on.
            assert not _nodelay(client)
            with _server_end(client) as server_end:
                assert _nodelay(server_end)
            client.sendall(b"QUIT\r\n")
            assert client.recv(1024).startswith(b"+OK")
        running.wait_idle()


def test_no_delay_leaves_other_sockets_alone() -> None:
    """A Unix socket (or a test pipe) has no Nagle to turn off."""
    left, right = socket.socketpair()
    with left, right:
        no_delay(left)  # no error
    with (
        socket.create_server(("127.0.0.1", 0)) as listener,
        socket.create_connection(listener.getsockname()) as tcp,
    ):
        no_delay(tcp)
        assert _nodelay(tcp)
