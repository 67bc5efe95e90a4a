"""Debian's headless Chromium, driven through its DevTools protocol, for tests that need a
real browser (the admin console). Every wait is bounded; `close()` ends the browser's whole
process group and removes nothing it didn't create."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import websocket  # websocket-client

CHROMIUM_NAMES = ["chromium", "chromium-browser", "google-chrome"]
START_TIMEOUT = 20.0


def chromium_binary() -> str | None:
    explicit = os.environ.get("CHROMIUM_BIN")
    if explicit:
        return explicit
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


class Browser:
    """One headless Chromium with one page, evaluated into through DevTools."""

    def __init__(self, profile: Path):
        binary = chromium_binary()
        assert binary, "no chromium found (apt-get install chromium, or set CHROMIUM_BIN)"
        profile.mkdir(parents=True, exist_ok=True)
        self.log = open(profile / "chromium.log", "wb")
        # Port 0: Chromium picks a free port and writes it to DevToolsActivePort in the profile.
        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-port=0", "--remote-allow-origins=*", f"--user-data-dir={profile}",
             "--window-size=1400,1000", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.next_id = 0
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise AssertionError(f"chromium did not start: {(profile / 'chromium.log').read_text()[-2000:]}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            page = next(t for t in json.load(response) if t["type"] == "page")
        self.socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=10, suppress_origin=True)

    def command(self, method: str, **params) -> dict:
        self.next_id += 1
        sent = self.next_id
        self.socket.send(json.dumps({"id": sent, "method": method, "params": params}))
        while True:  # events arrive between answers; the socket's timeout bounds each read
            message = json.loads(self.socket.recv())
            if message.get("id") == sent:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str):
        result = self.command("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def navigate(self, url: str) -> None:
        self.command("Page.navigate", url=url)

    def wait_for(self, expression: str, timeout: float = 15.0, message: str = ""):
        """Evaluates `expression` until it is true. One that throws counts as not yet: the page
        may still be loading (Page.navigate returns before the new document has its elements)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value, error = self.evaluate(expression), None
            except AssertionError as thrown:
                value, error = None, thrown
            if value:
                return value
            if time.monotonic() > deadline:
                status = self.evaluate("document.getElementById('status')?.textContent")
                raise AssertionError(f"page: {message or expression} not true within {timeout}s; status: {status}; "
                                     f"last error: {error}")
            time.sleep(0.1)

    def screenshot(self, path: Path) -> Path:
        data = self.command("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        if getattr(self, "socket", None):
            self.socket.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()
