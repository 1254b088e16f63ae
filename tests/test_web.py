"""`jobrunner web`: the TUI in a real headless Chromium, through textual-serve.

The page is driven over the DevTools protocol: it loads with the token, the browser's WebSocket
carries the TUI's screen (its jobs table, with the jobs of the database) and xterm.js shows it; a
screenshot is kept in the test's tmp directory. The door is checked with plain HTTP: no token,
a foreign Host or Origin, a wrong token are refused.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobrunner.config import log_dir_for
from tests.conftest import ROOT, wait_until

NAMES = ("alpha-report", "beta-backup", "gamma-cleanup")
ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-Za-z]|[=>78])")


@contextlib.contextmanager
def web_process(tmp_path: Path, db: Path | str) -> Iterator[tuple[str, str]]:
    """`jobrunner web --port 0` on `db`, in a session of its own; yields its URL and token."""
    log = tmp_path / "web.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "jobrunner", "web", "--port", "0"],
                                env={**os.environ, "JOBRUNNER_DB": str(db), "PYTHONPATH": str(ROOT)},
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        found = wait_until(lambda: _ended(proc, log) or re.search(r"at (http://127\.0\.0\.1:\d+/) ", log.read_text()),
                           timeout=30)  # fmt: skip
        token_file = Path(log_dir_for(str(db))) / "web.token"
        assert token_file.stat().st_mode & 0o077 == 0  # owner-only, as api.token
        text = log.read_text()
        token = token_file.read_text().strip()
        assert str(token_file) in text and token not in text  # not a terminal: the file, not the token
        yield found.group(1), token
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=20) == 0, log.read_text()[-2000:]
            wait_until(lambda: not _group_alive(proc.pid), timeout=10)  # its TUIs ended with it
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # TUI processes left behind, should the assert fail
            proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _ended(proc: subprocess.Popen, log: Path) -> None:
    """Fails if `proc` has exited (with its output); None while it runs."""
    if proc.poll() is not None:
        raise AssertionError(f"jobrunner web exited {proc.returncode}: {log.read_text()[-2000:]}")


def chromium() -> str:
    """Debian's chromium (.ci/run installs it where it can, and says so where it cannot)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("chromium is not installed (apt-get install chromium): the browser test needs it")
    return found


@contextlib.contextmanager
def headless_chromium(tmp_path: Path) -> Iterator[str]:
    """Chromium with its DevTools endpoint on a free port; yields the endpoint's HTTP address."""
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    log = tmp_path / "chromium.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                 "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                                 f"--user-data-dir={profile}", "--window-size=1280,800", "about:blank"],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        found = wait_until(lambda: _ended(proc, log) or re.search(r"DevTools listening on ws://(127\.0\.0\.1:\d+)/",
                                                                      log.read_text()), timeout=30)  # fmt: skip
        yield f"http://{found.group(1)}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def show_page(devtools: str, url: str, names: tuple[str, ...], shot: Path, timeout: float = 60) -> dict[str, Any]:
    """Open `url` in the browser's page, wait (with a deadline) until the page's WebSocket has
    brought every one of `names` to xterm.js, then screenshot the page. Returns what was seen."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(f"{devtools}/json/list") as answer:
            page = next(t for t in await answer.json() if t["type"] == "page")
        async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            ids = iter(range(1, 1_000_000))
            replies: dict[int, asyncio.Future[Any]] = {}
            screen = ""  # what the TUI sent the browser, escape sequences removed

            async def call(method: str, **params: Any) -> Any:
                ident = next(ids)
                replies[ident] = asyncio.get_running_loop().create_future()
                await ws.send_json({"id": ident, "method": method, "params": params})
                return await replies[ident]

            async def read() -> None:
                nonlocal screen
                async for message in ws:
                    data = json.loads(message.data)
                    if "id" in data and data["id"] in replies:
                        replies.pop(data["id"]).set_result(data.get("result", data.get("error")))
                    elif data.get("method") == "Network.webSocketFrameReceived":
                        frame = data["params"]["response"]
                        raw = frame["payloadData"]
                        text = base64.b64decode(raw).decode("utf-8", "replace") if frame["opcode"] == 2 else raw
                        screen += ANSI.sub("", text)

            reader = asyncio.create_task(read())
            try:
                await call("Network.enable")
                await call("Page.enable")
                await call("Page.navigate", url=url)
                deadline = time.monotonic() + timeout
                while not all(name in screen for name in names):
                    assert time.monotonic() < deadline, f"not every job name reached the page in {timeout}s: {screen[-3000:]!r}"
                    await asyncio.sleep(0.1)
                shown = {}
                while time.monotonic() < deadline:  # xterm.js has drawn the data: the terminal is shown
                    result = await call("Runtime.evaluate", returnByValue=True, expression=(
                        "({body: document.body.className, canvases: document.querySelectorAll('.xterm canvas').length,"
                        " rows: document.querySelector('.xterm') ? document.querySelector('.xterm').clientHeight : 0})"))  # fmt: skip
                    shown = result["result"]["value"]
                    if "-first-byte" in shown["body"] and shown["rows"] > 0:
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(0.5)  # a frame or two for the fade-in before the picture (not a wait for state)
                picture = await call("Page.captureScreenshot", format="png")
                shot.write_bytes(base64.b64decode(picture["data"]))
                return {"screen": screen, **shown}
            finally:
                reader.cancel()


@pytest.fixture
def jobs(cli):
    return [cli.submit("--name", name, "--", "true") for name in NAMES]


@pytest.mark.slow
def test_the_tui_in_a_headless_browser_shows_the_jobs(jobs, db_path, tmp_path):
    pytest.importorskip("aiohttp")  # comes with textual-serve, in the test extra
    # the server stops first, with the page still open: it ends the page's TUI as it goes
    with headless_chromium(tmp_path) as devtools, web_process(tmp_path, db_path) as (url, token):
        shot = tmp_path / "web-tui.png"
        seen = asyncio.run(show_page(devtools, f"{url}?token={token}", NAMES, shot))
        assert "-first-byte" in seen["body"] and seen["rows"] > 0, seen
        assert "NAME" in seen["screen"] and "queued" in seen["screen"]  # the jobs table, its header and rows
        assert shot.stat().st_size > 10_000
        print(f"\nscreenshot of the TUI in Chromium: {shot}")


def test_the_page_needs_the_token_and_a_loopback_host(jobs, db_path, tmp_path):
    with web_process(tmp_path, db_path) as (url, token):
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, params={"token": "wrong"}).status_code == 401
        assert httpx.get(f"{url}ws").status_code == 401  # the WebSocket too: no TUI without the token
        assert httpx.get(url, params={"token": token}, headers={"Host": "evil.example:80"}).status_code == 403
        foreign = httpx.get(url, params={"token": token}, headers={"Origin": "http://evil.example"})
        assert foreign.status_code == 403
        page = httpx.get(url, params={"token": token})
        assert page.status_code == 200 and "textual.js" in page.text
        cookie = page.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert httpx.get(url, cookies=page.cookies).status_code == 200  # a reload: the cookie is enough
        assert httpx.get(f"{url}static/js/textual.js").status_code == 200  # public files need nothing
        # the page's own addresses follow the Host the browser used (an SSH tunnel's port)
        tunnel = httpx.get(url, params={"token": token}, headers={"Host": "localhost:9999"}).text
        assert "ws://localhost:9999/ws" in tunnel and "http://localhost:9999/static/" in tunnel
