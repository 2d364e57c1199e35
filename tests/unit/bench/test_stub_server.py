"""The stub server's arrival stamps: the kernel's receive time, not the time of the read."""

from __future__ import annotations

import socket
import sys
import time

import pytest

from harness.bench.stub_server import StampedSocket, StampingListener


def read_once(conn: StampedSocket, how: str) -> bytes:
    if how == "recv":
        return conn.recv(1024)
    buf = bytearray(1024)  # recv_into: how asyncio's TLS transport reads
    return bytes(buf[:conn.recv_into(buf)])


@pytest.mark.skipif(sys.platform != "linux", reason="SO_TIMESTAMPNS is Linux's")
@pytest.mark.parametrize("how", ["recv", "recv_into"])
def test_a_read_late_is_stamped_with_when_the_bytes_arrived(how):
    listener = StampingListener.open("127.0.0.1", 0)
    with listener, socket.create_connection(listener.getsockname(), timeout=5) as sender:
        conn, _ = listener.accept()
        with conn:
            assert isinstance(conn, StampedSocket)
            assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            # The kernel turns timestamping on asynchronously the first time a socket asks for it
            # (the stub's first request may go unstamped and be stamped at its read): wait for it.
            deadline = time.monotonic() + 5
            while not conn.stamp and time.monotonic() < deadline:
                sender.sendall(b"x")
                assert conn.recv(16) == b"x"
                time.sleep(0.01)
            assert conn.stamp, "no kernel receive timestamp within 5 s"
            before = time.perf_counter()
            sender.sendall(b"GET / HTTP/1.1\r\n\r\n")
            after = time.perf_counter()
            time.sleep(0.3)  # the server is late to read
            assert read_once(conn, how) == b"GET / HTTP/1.1\r\n\r\n"
            read = time.perf_counter()
    # the kernel stamps the bytes as they arrive, during sendall on loopback; 1 ms for converting
    # CLOCK_REALTIME to perf_counter's clock
    assert before - 0.001 <= conn.stamp <= after + 0.001, (before, conn.stamp, after)
    assert read - conn.stamp > 0.25
