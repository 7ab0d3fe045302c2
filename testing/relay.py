"""Relay: a TCP relay in a thread, for tests that put something between a client and a server.

It listens on an address of the test's choosing (for example the host side of a network namespace's
veth, so a simulated host can reach a server that listens on loopback only) and pipes every
connection to the target. `hold()` keeps the server's bytes from the clients (a server that takes
requests and answers nothing); `cut()` closes every connection (a server restart).
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress


class Relay:
    """Relays connections made to (`host`, `port`) (port 0: a free one) to `target`."""

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = target
        self._listener = socket.create_server((host, port))
        self.host, self.port = self._listener.getsockname()[:2]
        self.accepted = 0
        self.from_server = 0  # bytes passed on to the clients
        self._flowing = threading.Event()
        self._flowing.set()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name=f"relay {self.host}:{self.port}", daemon=True).start()

    def hold(self) -> None:
        """Stop passing the server's bytes on (requests still go through)."""
        self._flowing.clear()

    def release(self) -> None:
        """Pass the server's bytes on again."""
        self._flowing.set()

    def cut(self) -> None:
        """Close every relayed connection (new ones are still accepted)."""
        for sock in self._sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop listening and close everything."""
        with suppress(OSError):  # wakes the accepting thread: a plain close() would leave it listening
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self.cut()
        self.release()
        for sock in self._sockets:
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_server: bool) -> None:
        try:
            while data := source.recv(65536):
                if from_server:
                    self._flowing.wait()
                    self.from_server += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
