"""Virtual hosts for container tests: Linux network namespaces on a private bridge.

Each "host" (a compose service, a Kubernetes pod, the test's client) is a network namespace
with its own loopback, its own `eth0` and therefore its own ports: every node can listen on
the default ports, as it would in its own container. The hosts' `eth0`s are veth pairs whose
other ends sit on a bridge inside one more namespace (the "switch"), so nothing is added to
the root namespace and no packet can reach a real interface: no host has a route beyond the
subnet. Host names come from `/etc/netns/NAME/hosts`, which `ip netns exec` bind-mounts over
`/etc/hosts` (likewise `resolv.conf` and `host.conf`).

Processes run through `ip netns exec` in a session of their own, so teardown can kill their
whole process group. The test's own Python code (clients, HTTP requests) enters a namespace
per thread with setns(2) (`Host.inside()`): a socket belongs to the namespace it was created
in, whichever thread reads it later. Python code never sees the namespace's /etc files (that
needs a mount namespace, which a threaded process can't switch), so it uses addresses.

Every name carries the test process's pid, so concurrent runs never meet; namespaces left by
a run that was SIGKILLed are removed by the next one (`remove_stale`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = Path("/run/netns")
NETNS_ETC_DIR = Path("/etc/netns")
NAME_PREFIX = "stc"          # every namespace this module makes: stc<pid>-<tag>-<host>
DOCKER_DNS = "127.0.0.11"    # where Docker's embedded DNS answers inside a container

_libc = ctypes.CDLL(None, use_errno=True)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and res.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {res.stderr.strip()}")
    return res


def unavailable_reason() -> str | None:
    """Why namespaces can't be used here (None when they can): the caller skips with it."""
    if os.geteuid() != 0:
        return "network namespaces need root (`ip netns add`); this run is not root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"{NAME_PREFIX}{os.getpid()}-probe"
    res = ip("netns", "add", probe, check=False)
    if res.returncode != 0:
        return f"`ip netns add` failed: {res.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


def remove_stale() -> None:
    """Delete namespaces (and /etc/netns dirs) of earlier runs whose process is gone."""
    names = {p.name for p in NETNS_RUN_DIR.glob(f"{NAME_PREFIX}*")} if NETNS_RUN_DIR.exists() else set()
    names |= {p.name for p in NETNS_ETC_DIR.glob(f"{NAME_PREFIX}*")} if NETNS_ETC_DIR.exists() else set()
    for name in names:
        m = re.match(rf"{NAME_PREFIX}(\d+)-", name)
        if m and not _pid_alive(int(m.group(1))):
            ip("netns", "del", name, check=False)
            shutil.rmtree(NETNS_ETC_DIR / name, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


class Host:
    """One virtual host: a network namespace with an address on the private subnet."""

    def __init__(self, network: "Network", name: str, address: str):
        self.network, self.name, self.address = network, name, address

    @contextlib.contextmanager
    def inside(self):
        """Run the block with this thread in the host's network namespace."""
        own = "/proc/thread-self/ns/net"
        saved = os.open(own, os.O_RDONLY)
        try:
            _setns(str(NETNS_RUN_DIR / self.name))
            try:
                yield self
            finally:
                if _libc.setns(saved, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "could not return to the test's namespace")
        finally:
            os.close(saved)

    def write_etc(self, filename: str, text: str) -> None:
        """A file `ip netns exec` shows at /etc/<filename> to this host's processes."""
        d = NETNS_ETC_DIR / self.name
        d.mkdir(parents=True, exist_ok=True)
        (d / filename).write_text(text)

    def run(self, argv: list, *, env: dict, log_path: Path, cwd: str = "/") -> "Process":
        return Process(self, argv, env=env, log_path=log_path, cwd=cwd)

    def run_to_end(self, argv: list, *, env: dict, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], env=env, cwd="/",
                              capture_output=True, text=True, timeout=timeout)


class Network:
    """A private /24 with a bridge in a switch namespace; hosts attach through veth pairs."""

    def __init__(self, tag: str):
        self.prefix = f"{NAME_PREFIX}{os.getpid()}-{tag}"
        # The subnet is only ever seen inside these namespaces (no route leads out), so it
        # can't collide with anything; 10.213/16 just keeps it recognisable in a capture.
        self.subnet = f"10.213.{os.getpid() % 250 + 1}"
        self.switch = f"{self.prefix}-sw"
        self.hosts: dict = {}
        self.processes: list = []
        self.dns_servers: list = []
        self.namespaces: list = []  # made so far, for close()

    def start(self) -> "Network":
        self._add_namespace(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        return self

    def _add_namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self.namespaces.append(name)

    def add_host(self, role: str) -> Host:
        index = len(self.hosts)
        host = Host(self, f"{self.prefix}-{role}", f"{self.subnet}.{10 + index}")
        self._add_namespace(host.name)
        self.hosts[role] = host
        port = f"p{index}"  # the switch's end; interface names must stay within 15 bytes
        ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", host.name)
        ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        ip("-n", host.name, "addr", "add", f"{host.address}/24", "dev", "eth0")
        ip("-n", host.name, "link", "set", "eth0", "up")
        ip("-n", host.name, "link", "set", "lo", "up")
        return host

    def __getitem__(self, role: str) -> Host:
        return self.hosts[role]

    def write_name_files(self, names: dict, *, dns: bool = False) -> None:
        """Give every host the same /etc/hosts (`names`: host name -> [addresses]).

        A name with several addresses gets one line each; glibc returns them all only with
        `multi on` in host.conf (without it, getaddrinfo stops at the first line), so every
        host gets that too rather than depend on the machine's /etc/host.conf. resolv.conf
        points at Docker's DNS address: a DNS server of the test's own (`serve_dns`) when
        `dns`, else nothing, so the machine's resolver is never asked.
        """
        lines = ["127.0.0.1\tlocalhost"]
        lines += [f"{addr}\t{name}" for name, addrs in names.items() for addr in addrs]
        for host in self.hosts.values():
            host.write_etc("hosts", "\n".join(lines) + "\n")
            host.write_etc("host.conf", "multi on\n")
            host.write_etc("resolv.conf", f"nameserver {DOCKER_DNS}\noptions ndots:0\n")

    def serve_dns(self, host: Host, names: dict) -> None:
        """Answer A queries for `names` on 127.0.0.11:53 inside `host`, as Docker does."""
        with host.inside():
            server = DNSServer(names)
        self.dns_servers.append(server)

    def close(self) -> list:
        """Kill every process, delete every namespace and /etc/netns dir; return problems."""
        problems = []
        for proc in self.processes:
            proc.kill()
        for server in self.dns_servers:
            server.close()
        for name in reversed(self.namespaces):
            res = ip("netns", "del", name, check=False)
            if res.returncode != 0:
                problems.append(f"ip netns del {name}: {res.stderr.strip()}")
            shutil.rmtree(NETNS_ETC_DIR / name, ignore_errors=True)
        with contextlib.suppress(OSError):
            NETNS_ETC_DIR.rmdir()  # only when empty: no other run is using it
        return problems


class Process:
    """A process in a host's namespace (`ip netns exec`), in a process group of its own."""

    def __init__(self, host: Host, argv: list, *, env: dict, log_path: Path, cwd: str):
        self.host, self.argv, self.log_path = host, argv, log_path
        self.signalled = False
        with open(log_path, "wb") as log:
            # `ip netns exec` execs argv in place: the pid (and group) is the program's.
            self.proc = subprocess.Popen(["ip", "netns", "exec", host.name, *argv], env=env, cwd=cwd,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        host.network.processes.append(self)

    def running(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        self.signalled = True
        if self.running():
            os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.wait(10)

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "<no log>"
        return f"--- {self.log_path.name}\n" + "\n".join(lines[-n:])


def stop_all(processes: list, sig: int = signal.SIGTERM, timeout: float = 15.0) -> list:
    """Signal all at once, wait (bounded) for all; return problems: no exit, or a crash."""
    problems = []
    for p in processes:
        if not p.running() and not p.signalled:
            problems.append(f"{p.argv[0]} in {p.host.name} had exited by itself with {p.proc.returncode}")
        p.signal(sig)
    deadline = time.monotonic() + timeout
    for p in processes:
        rc = p.wait(max(0.0, deadline - time.monotonic()))
        if rc is None:
            p.kill()
            problems.append(f"{p.argv[0]} in {p.host.name} ignored {signal.Signals(sig).name} for {timeout}s")
        elif rc < 0 and -rc != sig:
            problems.append(f"{p.argv[0]} in {p.host.name} died by {signal.Signals(-rc).name}\n{p.log_tail()}")
    return problems


class DNSServer:
    """The smallest DNS server HAProxy's `resolvers` needs: A records from a dict.

    Known names get their addresses (A) or an empty answer (any other type, so a resolver
    asking AAAA first falls back to A); unknown names NXDOMAIN. The socket is bound in the
    namespace the constructor runs in.
    """

    def __init__(self, names: dict, address: str = DOCKER_DNS):
        self.names = {n.lower().rstrip("."): addrs for n, addrs in names.items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 53))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="dns", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            answer = self.answer(query)
            if answer:
                self.sock.sendto(answer, peer)

    def answer(self, query: bytes) -> bytes | None:
        if len(query) < 12:
            return None
        qid, _flags, qdcount = struct.unpack("!HHH", query[:6])
        if qdcount != 1:
            return None
        labels, i = [], 12
        while i < len(query) and query[i] != 0:
            labels.append(query[i + 1:i + 1 + query[i]].decode(errors="replace"))
            i += 1 + query[i]
        end = i + 5  # the root label, QTYPE, QCLASS
        if end > len(query):
            return None
        qtype = struct.unpack("!H", query[i + 1:i + 3])[0]
        addrs = self.names.get(".".join(labels).lower())
        records = [a for a in addrs or [] if qtype == 1]
        rcode = 3 if addrs is None else 0  # NXDOMAIN for a name we don't know
        header = struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1, len(records), 0, 0)
        body = b"".join(struct.pack("!HHHIH", 0xC00C, 1, 1, 5, 4) + socket.inet_aton(a) for a in records)
        return header + query[12:end] + body

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        self.sock.close()
