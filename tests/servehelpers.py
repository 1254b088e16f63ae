"""Helpers for the `jobrunner serve` tests: an app on the test's database, a TestClient, a real
uvicorn server in a thread, and a Server-Sent Events reader that tests wait on with deadlines."""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from jobrunner.api import connect
from jobrunner.config import Config, load_config
from jobrunner.serve.app import create_app
from jobrunner.serve.settings import ServeSettings

with warnings.catch_warnings():  # starlette 1.x would like httpx2; httpx works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

BASE_URL = "http://127.0.0.1:8765"  # a loopback Host: a server without a token answers only to those


def settings_for(db: Path | str, config: Path | None = None, **options: Any) -> ServeSettings:
    cfg = load_config(str(config)) if config else Config()
    return ServeSettings(store=connect(str(db), str(config) if config else None), config=cfg, **options)


def client_for(db: Path | str, bearer: str | None = None, config: Path | None = None, **options: Any) -> TestClient:
    """A TestClient of an app on `db`, sending `bearer` as its token; `options` are ServeSettings'."""
    app = create_app(settings_for(db, config, **options))
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return TestClient(app, base_url=BASE_URL, headers=headers, raise_server_exceptions=False)


class LiveServer:
    """The app served by uvicorn on a free loopback port, in a thread of this process."""

    def __init__(self, settings: ServeSettings) -> None:
        import uvicorn

        from jobrunner.serve.run import _bind

        self.settings = settings
        self.listener = _bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        config = uvicorn.Config(create_app(settings), log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.listener]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start within 10s"
            time.sleep(0.01)

    def stop(self) -> None:
        self.settings.stopping.set()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.listener.close()


@dataclass
class Message:
    event: str
    id: str | None
    data: Any


@dataclass
class EventReader:
    """Reads an SSE stream in a thread; `next()` waits for the next message with a deadline."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    messages: queue.Queue[Message | BaseException | None] = field(default_factory=queue.Queue)
    last_id: str | None = None
    response: Any = None

    def __post_init__(self) -> None:
        self.client = httpx.Client(timeout=httpx.Timeout(30, read=None))
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            with self.client.stream("GET", self.url, headers=self.headers) as response:
                self.response = response
                assert response.status_code == 200, response.read()
                fields: dict[str, str] = {}
                for line in response.iter_lines():
                    if line == "":
                        if "data" in fields:
                            self.messages.put(Message(fields.get("event", "message"), fields.get("id"),
                                                      json.loads(fields["data"])))  # fmt: skip
                        fields = {}
                    elif not line.startswith(":"):
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
            self.messages.put(None)
        except BaseException as exc:  # the test closed the client: the reader ends
            self.messages.put(exc)

    def next(self, timeout: float = 10.0) -> Message:
        try:
            item = self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event within {timeout}s") from None
        if not isinstance(item, Message):
            raise AssertionError(f"the stream ended: {item!r}")
        if item.id is not None:
            self.last_id = item.id
        return item

    def close(self) -> None:
        """Disconnect, as a browser tab that closes does."""
        with contextlib.suppress(Exception):  # a read blocked in another thread wakes only when its socket shuts
            self.response.extensions["network_stream"].get_extra_info("socket").shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            self.client.close()
        self.thread.join(timeout=5)
