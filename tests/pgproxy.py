"""A TCP proxy on loopback between a jobrunner process and PostgreSQL, for fault tests.

`pause()` is a network partition: the proxy stops forwarding in both directions and stops
accepting, but closes nothing, so whoever is on the other side sees silence, not an error (a
new connection completes its TCP handshake in the listen backlog and then hears nothing).
`resume()` forwards what waited and accepts again. `pause_on(pattern)` pauses the moment a
client sends a statement holding `pattern` (it reaches the server; its answer waits). `pause(refuse=True)` and `drop()` are the
server going away instead: new connections are refused, and `drop()` also closes every open
one (as a restart of the server does).

Threads, not asyncio: each connection is two pumps that read only while forwarding is on.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlparse, urlunparse

TICK_S = 0.02  # how soon a pump or the acceptor notices a pause, a resume or the end


class PgProxy:
    def __init__(self, upstream: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.upstream = upstream
        self.forwarding = threading.Event()
        self.forwarding.set()
        self.refusing = False
        self.closed = False
        self.lock = threading.Lock()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.accepted = 0
        self.trigger: bytes | None = None  # pause_on(): pause once a client sends this
        self.recording: bytearray | None = None  # record(): what clients send, as sent
        self.listener = self._listen(0)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, name="pgproxy-accept", daemon=True)
        self.thread.start()

    # ------------------------------------------------------------------ control
    def url(self, url: str) -> str:
        """`url` with its host and port replaced by the proxy's."""
        parts = urlparse(url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        return urlunparse(parts._replace(netloc=netloc))

    def pause(self, refuse: bool = False) -> None:
        """Stop forwarding and accepting. refuse=True: new connections are refused at once."""
        with self.lock:
            self.forwarding.clear()
            if refuse and not self.refusing:
                self.refusing = True
                with contextlib.suppress(OSError):
                    self.listener.shutdown(socket.SHUT_RDWR)  # refused from now on, even mid-select
                self.listener.close()

    def pause_on(self, pattern: bytes) -> None:
        """Pause (as pause()) the moment a client sends a statement holding `pattern`: that one
        reaches the server, its answer does not (a partition in the middle of a transaction)."""
        self.trigger = pattern

    @contextlib.contextmanager
    def record(self) -> Iterator[list[str]]:
        """The simple-query messages clients send meanwhile, one string a message (a round trip
        each: a client waits for the answer to one before it sends the next)."""
        self.recording = bytearray()
        found: list[str] = []
        try:
            yield found
        finally:
            data, self.recording = bytes(self.recording), None
            while len(data) >= 5:
                size = int.from_bytes(data[1:5], "big")
                if data[:1] == b"Q":
                    found.append(data[5 : 1 + size].rstrip(b"\0").decode())
                data = data[1 + size :]

    def drop(self) -> None:
        """Close every connection and refuse new ones (the server went down)."""
        self.pause(refuse=True)
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            self._close_pair(pair)

    def resume(self) -> None:
        with self.lock:
            if self.refusing:
                self.listener = self._listen(self.port)
                self.refusing = False
            self.forwarding.set()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.forwarding.set()  # let the pumps see the end
            pairs, self.pairs = self.pairs, []
            with contextlib.suppress(OSError):
                self.listener.close()
        for pair in pairs:
            self._close_pair(pair)
        self.thread.join(timeout=5)

    def __enter__(self) -> PgProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ inside
    @staticmethod
    def _listen(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
        return sock

    def _accept(self) -> None:
        while not self.closed:
            if not self.forwarding.wait(TICK_S):
                continue  # paused: connections wait in the backlog (or are refused)
            listener = self.listener
            try:
                if not select.select([listener], [], [], TICK_S)[0]:
                    continue
                with self.lock:
                    if not self.forwarding.is_set() or self.closed:
                        continue
                    client, _ = listener.accept()
            except (OSError, ValueError):  # closed under us (refuse, close): look again
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(None)
            pair = (client, server)
            with self.lock:
                if self.closed:
                    self._close_pair(pair)
                    return
                self.pairs.append(pair)
                self.accepted += 1
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(pair, src, dst), name="pgproxy-pump", daemon=True).start()

    def _pump(self, pair: tuple[socket.socket, socket.socket], src: socket.socket, dst: socket.socket) -> None:
        try:
            while not self.closed:
                if not self.forwarding.wait(TICK_S):
                    continue  # paused: nothing is read, so nothing is forwarded
                if not select.select([src], [], [], TICK_S)[0]:
                    continue
                if not self.forwarding.is_set():
                    continue  # paused while we waited: leave the bytes where they are
                data = src.recv(65536)
                if not data:
                    break
                trigger = self.trigger
                if trigger is not None and src is pair[0] and trigger in data:
                    self.trigger = None
                    self.pause()  # before the server can answer: the answer stays with it
                if self.recording is not None and src is pair[0]:
                    self.recording += data
                dst.sendall(data)
        except (OSError, ValueError):
            pass
        with self.lock:
            if pair in self.pairs:
                self.pairs.remove(pair)
        self._close_pair(pair)

    @staticmethod
    def _close_pair(pair: tuple[socket.socket, socket.socket]) -> None:
        for sock in pair:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
