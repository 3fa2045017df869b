"""A TCP proxy that delays every chunk by a fixed time in each direction: a network hop for
kernels without ``tc netem`` (the bench says which one it used).

``python -m bench.delay_proxy LISTEN_HOST:PORT TARGET_HOST:PORT DELAY_MS`` (one way). It runs
as a process of its own so its threads never compete with the measured client for the GIL.
Order is kept: each direction is one queue, written by one thread at each chunk's due time.
"""

from __future__ import annotations

import collections
import contextlib
import socket
import sys
import threading
import time


def _pump(source: socket.socket, sink: socket.socket, delay_s: float) -> None:
    queue: collections.deque[tuple[float, bytes]] = collections.deque()
    ready = threading.Condition()

    def read() -> None:
        try:
            while chunk := source.recv(65536):
                with ready:
                    queue.append((time.monotonic() + delay_s, chunk))
                    ready.notify()
        except OSError:
            pass
        with ready:
            queue.append((0.0, b""))  # end of stream
            ready.notify()

    threading.Thread(target=read, daemon=True).start()
    try:
        while True:
            with ready:
                while not queue:
                    ready.wait()
                due, chunk = queue.popleft()
            if not chunk:
                break
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def serve(listen: tuple[str, int], target: tuple[str, int], delay_s: float) -> None:
    server = socket.create_server(listen)
    while True:
        client, _ = server.accept()
        upstream = socket.create_connection(target)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pump, args=(source, sink, delay_s), daemon=True).start()


def _address(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


if __name__ == "__main__":
    serve(_address(sys.argv[1]), _address(sys.argv[2]), float(sys.argv[3]) / 1000)
