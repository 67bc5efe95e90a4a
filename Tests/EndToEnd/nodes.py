"""Run the real `cluster-node` binary for the end-to-end tests.

The binary is taken from $STOMP_NODE_BIN, else <repo>/.build/release/cluster-node,
the build that `make run` runs (`swift build -c release`). Each node gets a temporary
directory and a ports file; the fixture waits (bounded) for the node to write the ports file,
and on teardown sends SIGTERM, waits (bounded), SIGKILLs if it has to, and
fails the test if the node crashed (died by a signal other than our SIGTERM,
exited before we stopped it, or had to be killed).

Each test module shares one module-scoped node (`node`, or its own flags through
`module_node(...)`); a test that needs special flags starts its own with
`node_factory`. Every node listens on ephemeral ports on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NODE_BIN = Path(os.environ.get("STOMP_NODE_BIN", REPO / ".build" / "release" / "cluster-node"))


def node_environment(**extra: str) -> dict:
    """The test's environment for a node, without CLUSTER_NODE_* variables: a node refuses
    any it doesn't know, and the ones it knows would change what the test asked for."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTER_NODE_")}
    env.update(extra)
    return env
HOST = "127.0.0.1"
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02, message: str = ""):
    """Poll predicate() until it returns something truthy; return that value.

    The timeout is only an upper bound on waiting: it never asserts that something was fast.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s: {message or predicate}")
        time.sleep(interval)


eventually = wait_for


class Node:
    """One running cluster-node process."""

    def __init__(self, workdir: Path, args: list, name: str):
        self.workdir = workdir
        self.name = name
        self.host = HOST
        self.ports_file = workdir / "ports.json"
        self.log_path = workdir / "node.log"
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.ports: dict = {}
        self.we_signalled = False
        self.returncode = None

    # -- addresses ------------------------------------------------------------
    @property
    def ws_port(self) -> int:
        return int(self.ports["ws"])

    @property
    def stomp_port(self) -> int:
        return int(self.ports["stomp"])

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}/ws"

    @property
    def wss_port(self) -> int:
        return int(self.ports["wss"])

    @property
    def stomps_port(self) -> int:
        return int(self.ports["stomps"])

    @property
    def admin_url(self) -> str:
        return f"http://{self.host}:{int(self.ports['admin'])}"

    @property
    def wss_url(self) -> str:
        return f"wss://{self.host}:{self.wss_port}/ws"

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "<no log>"
        return "\n".join(lines[-n:])

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> "Node":
        if not NODE_BIN.exists():
            pytest.fail(f"cluster-node binary not found at {NODE_BIN}: run `swift build -c release` "
                        f"or set STOMP_NODE_BIN", pytrace=False)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The admin API's default port (8222) would collide between nodes: take any free one.
        cmd = [str(NODE_BIN), "--host", HOST, "--ws-port", "0", "--stomp-port", "0", "--admin-port", "0",
               "--ports-file", str(self.ports_file), "--node-id", self.name, *self.args]
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdin=subprocess.DEVNULL, env=node_environment(),
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                self.log.close()
                pytest.fail(f"cluster-node exited early with {self.proc.returncode}; "
                            f"cmd: {' '.join(cmd)}\n{self.log_tail()}", pytrace=False)
            if self.ports_file.exists():
                try:
                    self.ports = json.loads(self.ports_file.read_text())
                    if "ws" in self.ports and "stomp" in self.ports:
                        return self
                except (OSError, ValueError):
                    pass  # written atomically by contract, but don't trip over a half-written file
            if time.monotonic() >= deadline:
                self.kill()
                pytest.fail(f"cluster-node did not write {self.ports_file} within "
                            f"{STARTUP_TIMEOUT}s\n{self.log_tail()}", pytrace=False)
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        if sig in (signal.SIGTERM, signal.SIGINT):
            self.we_signalled = True
        self.proc.send_signal(sig)

    def wait(self, timeout: float = STOP_TIMEOUT):
        """Wait (bounded) for exit; return the exit code or None if still running."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)
        if getattr(self, "log", None):
            self.log.close()

    def stop(self) -> list:
        """Stop the node; return a list of problems (empty when all is well)."""
        problems = []
        if self.proc is None:
            return problems
        already = self.proc.poll()
        if already is not None and not self.we_signalled:
            problems.append(f"node exited on its own before teardown with code {already}")
        if already is None:
            self.signal(signal.SIGTERM)
            rc = self.wait(STOP_TIMEOUT)
            if rc is None:
                self.kill()
                problems.append(f"node did not exit within {STOP_TIMEOUT}s of SIGTERM (SIGKILLed)")
        rc = self.proc.returncode
        self.returncode = rc
        if rc is not None and rc < 0 and -rc not in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
            problems.append(f"node died by signal {signal.Signals(-rc).name} (crash)")
        self.kill()  # closes the log
        if problems:
            problems.append("log tail:\n" + self.log_tail())
        return problems


def stop_process(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT, group: bool = False) -> None:
    """SIGTERM, then SIGKILL after `timeout`, a helper process a test started, and wait for
    it. With group=True the signals go to its process group (start it with
    start_new_session=True), so that its children (a browser's renderers) go too."""

    def send(sig: int) -> None:
        try:
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
        except ProcessLookupError:
            pass

    if proc.poll() is None:
        send(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
            proc.wait(timeout=timeout)
    if group:
        send(signal.SIGKILL)  # children that outlived the leader


def _start(tmp_root: Path, name: str, args) -> Node:
    return Node(tmp_root / name, list(args or []), name).start()


def module_node(*args, name: str = "node"):
    """Build a module-scoped fixture that runs one node with the given flags."""

    @pytest.fixture(scope="module")
    def _fixture(tmp_path_factory):
        n = _start(tmp_path_factory.mktemp(name), name, args)
        yield n
        problems = n.stop()
        assert not problems, "\n".join(problems)

    return _fixture
