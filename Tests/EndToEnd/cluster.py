"""Run a cluster of `cluster-node` processes for the end-to-end cluster tests.

Builds on nodes.py: every node is a `nodes.Node` (ports file, bounded start, crash check on
stop). On top of it this module

- picks free ports for the cluster listeners up front (so that seeds can name them),
- writes the cluster secret to a file (`--cluster-secret-file`; never on the command line),
- starts nodes one after the other in one of two seed shapes: "all" (every node lists every
  node, itself included) or "first" (only node 1 is a seed; the others learn the rest
  through gossip),
- watches the nodes' logs (stderr, info level) for the cluster's state (the tests were
  written before the admin API existed, and log lines also give the moment a change was
  seen): `link up` / `link down`, `member alive|suspect|dead|left`, `dropped interest of
  departed member`, `link refused`,
- gives every node `--admin-port=0` when the binary has an admin API (its default port is
  fixed, so several nodes on one host would collide),
- SIGKILLs and restarts a node with the same node id and cluster port.

Everything listens on 127.0.0.1 only. Every wait is bounded.
"""

from __future__ import annotations

import functools
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from nodes import HOST, NODE_BIN, Node, wait_for

FORM_TIMEOUT = 20.0  # upper bound for a cluster to form (normally well under a second)
DEFAULT_SECRET = "e2e-cluster-secret-0123456789abcdef"


def free_ports(n: int) -> list:
    """n distinct ports that were free on 127.0.0.1 a moment ago (bind to :0, read, close)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@functools.lru_cache(maxsize=None)
def supports_flag(flag: str) -> bool:
    """Whether the node binary knows a flag (checked once through --help)."""
    try:
        res = subprocess.run([str(NODE_BIN), "--help"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return flag in (res.stdout + res.stderr).decode(errors="replace")


def peer_re(peer: str) -> str:
    """Regex for `cluster.peer=<peer>` as a whole metadata value."""
    return rf"cluster\.peer={re.escape(peer)}(?=\s|$)"


# ---------------------------------------------------------------------------
# Logs
# ---------------------------------------------------------------------------

def log_lines(node: Node, since: int = 0) -> list:
    """The node's log lines from byte offset `since` on (complete lines only)."""
    try:
        with open(node.log_path, "rb") as f:
            f.seek(since)
            data = f.read()
    except OSError:
        return []
    end = data.rfind(b"\n")
    if end < 0:
        return []
    return data[:end].decode("utf-8", errors="replace").splitlines()


def log_mark(node: Node) -> int:
    """Current end of the node's log: pass it as `since` to see only what comes later."""
    try:
        return node.log_path.stat().st_size
    except OSError:
        return 0


def matching(node: Node, *patterns: str, since: int = 0) -> list:
    """Log lines (from `since`) matching every regex in `patterns`."""
    regs = [re.compile(p) for p in patterns]
    return [line for line in log_lines(node, since) if all(r.search(line) for r in regs)]


def wait_log(node: Node, *patterns: str, since: int = 0, timeout: float = 10.0,
             interval: float = 0.01) -> tuple:
    """Wait (bounded) for a log line matching every pattern; return (line, monotonic time seen)."""
    deadline = time.monotonic() + timeout
    while True:
        found = matching(node, *patterns, since=since)
        if found:
            return found[0], time.monotonic()
        if time.monotonic() >= deadline:
            raise AssertionError(f"{node.name}: no log line matching {patterns!r} within {timeout}s\n"
                                 f"{node.log_tail(40)}")
        time.sleep(interval)


def link_is_up(node: Node, peer: str, since: int = 0) -> bool:
    """True when the last link up/down/member dead line about `peer` in the log says `link up`."""
    last = None
    for line in matching(node, peer_re(peer), since=since):
        if "[Gossip] link up" in line:
            last = "up"
        elif "[Gossip] link down" in line or "member dead" in line or "member left" in line:
            last = "down"
    return last == "up"


# ---------------------------------------------------------------------------
# Cluster
# ---------------------------------------------------------------------------

class Cluster:
    """N nodes named n1..nN with fixed cluster ports on 127.0.0.1."""

    def __init__(self, root: Path, size: int = 3, *, seeds: str = "all", name: str = "e2e",
                 secret: str = DEFAULT_SECRET, extra_args=()):
        assert seeds in ("all", "first")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.size = size
        self.seed_shape = seeds
        self.cluster_name = name
        self.extra_args = list(extra_args)
        self.secret_file = self.write_secret("secret", secret)
        self.names = [f"n{i + 1}" for i in range(size)]
        self.cluster_ports = dict(zip(self.names, free_ports(size)))
        self.nodes: dict = {}       # name -> current Node
        self.all_nodes: list = []   # every Node ever started (stopped in teardown)
        self.starts: dict = {}      # name -> how many times started (workdir suffix)

    # -- configuration ---------------------------------------------------------
    def write_secret(self, filename: str, secret: str) -> Path:
        path = self.root / filename
        path.write_text(secret)
        path.chmod(0o600)
        return path

    def address(self, name: str) -> str:
        return f"{HOST}:{self.cluster_ports[name]}"

    def seeds_arg(self) -> str:
        seeds = self.names if self.seed_shape == "all" else self.names[:1]
        return ",".join(self.address(n) for n in seeds)

    def cluster_args(self, cluster_port: int, seeds: str, secret_file: Path) -> list:
        # Several nodes on one host: the admin API (when the binary has one) must not use
        # its fixed default port.
        admin = ["--admin-port=0"] if supports_flag("--admin-port") else []
        return [*admin, "--cluster-host", HOST, f"--cluster-port={cluster_port}",
                "--cluster-advertise", f"{HOST}:{cluster_port}",
                "--seeds", seeds, "--cluster-name", self.cluster_name,
                "--cluster-secret-file", str(secret_file), *self.extra_args]

    # -- lifecycle -------------------------------------------------------------
    def _launch(self, name: str, args: list) -> Node:
        k = self.starts.get(name, 0)
        self.starts[name] = k + 1
        workdir = self.root / (name if k == 0 else f"{name}-restart{k}")
        node = Node(workdir, args, name)
        self.all_nodes.append(node)
        node.start()
        return node

    def start_node(self, name: str) -> Node:
        args = self.cluster_args(self.cluster_ports[name], self.seeds_arg(), self.secret_file)
        if supports_flag("--data-dir"):
            # The node's durable log: the same one across restarts (each start has its own workdir).
            args += ["--data-dir", str(self.root / f"{name}-data")]
        node = self._launch(name, args)
        got = int(node.ports.get("cluster", -1))
        assert got == self.cluster_ports[name], f"{name}: ports file says cluster={got}, " \
                                                f"asked for {self.cluster_ports[name]}"
        self.nodes[name] = node
        return node

    def start(self, timeout: float = FORM_TIMEOUT) -> "Cluster":
        for name in self.names:
            self.start_node(name)
        self.wait_formed(timeout=timeout)
        return self

    def add_foreign_node(self, name: str, *, secret: str, seeds: str | None = None) -> Node:
        """A node outside self.names (e.g. one with the wrong secret); stopped in teardown."""
        secret_file = self.write_secret(f"secret-{name}", secret)
        port = free_ports(1)[0]
        return self._launch(name, self.cluster_args(port, seeds or self.address(self.names[0]),
                                                    secret_file))

    def __getitem__(self, name_or_index) -> Node:
        if isinstance(name_or_index, int):
            return self.nodes[self.names[name_or_index - 1]]  # 1-based, like the names
        return self.nodes[name_or_index]

    def live(self) -> list:
        return [n for n in self.names if n in self.nodes and self.nodes[n].proc.poll() is None]

    def formed(self, names=None) -> bool:
        names = names or self.live()
        return all(link_is_up(self.nodes[a], b) for a in names for b in names if a != b)

    def wait_formed(self, names=None, timeout: float = FORM_TIMEOUT) -> None:
        """Wait (bounded) until every pair of the given (default: live) nodes has a link up."""
        try:
            wait_for(lambda: self.formed(names), timeout=timeout, interval=0.02)
        except AssertionError:
            names = names or self.live()
            state = {f"{a}->{b}": link_is_up(self.nodes[a], b)
                     for a in names for b in names if a != b}
            tails = "\n".join(f"--- {n}\n{self.nodes[n].log_tail(25)}" for n in names)
            raise AssertionError(f"cluster did not form within {timeout}s: {state}\n{tails}") from None

    def kill(self, name: str) -> float:
        """SIGKILL a node; return the monotonic time of the kill."""
        node = self.nodes[name]
        node.we_signalled = True  # an expected death: Node.stop must not call it a crash
        t = time.monotonic()
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(timeout=10)
        return t

    def restart(self, name: str) -> Node:
        """Start a node again with the same node id, cluster port and seeds (new log file)."""
        old = self.nodes.get(name)
        assert old is None or old.proc.poll() is not None, f"{name} is still running"
        return self.start_node(name)

    def stop(self) -> list:
        """SIGTERM (then SIGKILL) every node ever started; return problems found."""
        problems = []
        for node in reversed(self.all_nodes):
            for p in node.stop():
                problems.append(f"{node.name} ({node.workdir.name}): {p}")
        return problems

    def logs_matching(self, *patterns: str, marks: dict | None = None) -> dict:
        """name -> matching lines, over the current node of every name."""
        marks = marks or {}
        return {n: matching(node, *patterns, since=marks.get(n, 0)) for n, node in self.nodes.items()}

    def marks(self) -> dict:
        return {n: log_mark(node) for n, node in self.nodes.items()}


def running_cluster(path: Path, **kwargs):
    """For a pytest fixture to `yield from`: a started Cluster(path, **kwargs), stopped
    afterwards; the test fails if a node crashed or did not stop cleanly."""
    c = Cluster(path, **kwargs)
    try:
        c.start()
        yield c
    finally:
        problems = c.stop()
    assert not problems, "\n".join(problems)
