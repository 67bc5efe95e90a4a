#!/usr/bin/env python3
"""Leak soak: one release node under a steady, modest mixed load for a long time.

Runs `cluster-node` (--binary) on loopback and, for --minutes, keeps up:

- topic publish with fan-out: one publisher, --subscribers subscribers (TCP and WebSocket);
- queues: producers and consumers with client-individual acks;
- connection churn: a few connections per second over TCP and WebSocket, ended by
  DISCONNECT or by a reset;
- a few bad clients every minute: garbage bytes, oversized frames, partial frames then a
  reset, a transaction of 512 KiB then a drop, and silent sockets held open.

Every 10 s it samples the node's resident memory (VmRSS), open descriptors and CPU time;
every minute it computes the publish -> deliver latency (p50/p99) from the timestamps the
publishers put in the message bodies. It writes a markdown report (--out-md, default
bench/SOAK.md) and a plot (--out-png, default bench/soak.png), and exits non-zero when
memory is not flat: resident memory grew by more than --max-growth-mb from the reference
minute (5, or a third of the run for runs under 10 minutes) to the end.

The load generator runs in three processes (topic, queue, churn + bad clients) besides this
one, so that it is not the bottleneck at these rates. Everything is bounded in time, and
every process started is stopped. It installs nothing, except that when matplotlib is
missing it creates bench/.venv-soak and installs matplotlib there with pip (once).

    python3 bench/soak.py --minutes 30
    python3 bench/soak.py --binary /tmp/baseline/cluster-node --minutes 3 \\
        --out-md /tmp/soak/SOAK.md --out-png /tmp/soak/soak.png

Exit codes: 0 memory flat; 1 memory not flat; 2 the run itself failed (the node crashed or
did not start, a load process failed).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import hashlib
import json
import multiprocessing as mp
import os
import platform
import queue as queue_mod
import random
import shlex
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENV = BENCH / ".venv-soak"
SAMPLE_EVERY = 10.0          # seconds between resource samples
START_DELAY = 5.0            # seconds the load processes get to connect before minute 0
DRAIN = 10.0                 # seconds the load processes wait for the last deliveries
CONNECT_TIMEOUT = 10.0
MIN_BOUND_MB = 2.0           # the smallest memory bound, for short runs


# ---------------------------------------------------------------------------
# matplotlib: use it if present, else a venv of our own (created once)
# ---------------------------------------------------------------------------

def ensure_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
        return
    except ImportError:
        pass
    py = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        sys.exit("matplotlib is missing from bench/.venv-soak; delete that folder and retry")
    if not py.exists() or subprocess.run([str(py), "-c", "import matplotlib"], capture_output=True).returncode != 0:
        print(f"creating {VENV} with matplotlib (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        (VENV / ".gitignore").write_text("*\n")
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "matplotlib"], check=True)
    os.execv(str(py), [str(py), *sys.argv])


# ---------------------------------------------------------------------------
# A small asyncio STOMP client (TCP, or WebSocket spoken by hand)
# ---------------------------------------------------------------------------

def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A client WebSocket frame masked with the zero key (payload unchanged; RFC 6455 allows it)."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack(">Q", n)
    return head + b"\x00\x00\x00\x00" + payload


def frame(command: str, headers: dict | None = None, body: bytes = b"") -> bytes:
    lines = [command] + [f"{k}:{v}" for k, v in (headers or {}).items()]
    if body:
        lines.append(f"content-length:{len(body)}")
    return ("\n".join(lines) + "\n\n").encode() + body + b"\x00"


class Closed(Exception):
    pass


class Conn:
    def __init__(self, reader, writer, kind: str):
        self.reader, self.writer, self.kind = reader, writer, kind
        self.raw = b""
        self.buf = b""
        self.ws_closed = False

    @classmethod
    async def open(cls, host: str, ports: dict, kind: str, *, upgrade: bool = True) -> "Conn":
        port = ports["stomp"] if kind == "tcp" else ports["ws"]
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=1 << 22),
                                                CONNECT_TIMEOUT)
        c = cls(reader, writer, kind)
        if kind == "ws" and upgrade:
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write((f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                          f"Sec-WebSocket-Protocol: v12.stomp\r\n\r\n").encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CONNECT_TIMEOUT)
            if b" 101 " not in head.split(b"\r\n", 1)[0]:
                writer.close()
                raise Closed(f"upgrade refused: {head[:100]!r}")
        return c

    async def connect(self) -> None:
        self.send(frame("CONNECT", {"accept-version": "1.2", "host": "localhost", "heart-beat": "0,0"}))
        cmd, headers, _ = await asyncio.wait_for(self.read(), CONNECT_TIMEOUT)
        if cmd != "CONNECTED":
            raise Closed(f"expected CONNECTED, got {cmd} {headers}")

    def send(self, data: bytes) -> None:
        self.writer.write(data if self.kind == "tcp" else ws_frame(data))

    def _parse_ws(self) -> None:
        raw = self.raw
        pos = 0
        while len(raw) - pos >= 2:
            b0, b1 = raw[pos], raw[pos + 1]
            n, off = b1 & 0x7F, 2
            if n == 126:
                if len(raw) - pos < 4:
                    break
                n, off = struct.unpack_from(">H", raw, pos + 2)[0], 4
            elif n == 127:
                if len(raw) - pos < 10:
                    break
                n, off = struct.unpack_from(">Q", raw, pos + 2)[0], 10
            if len(raw) - pos < off + n:
                break
            opcode = b0 & 0x0F
            if opcode in (0, 1, 2):
                self.buf += raw[pos + off:pos + off + n]
            elif opcode == 8:
                self.ws_closed = True  # frames before it are still read
                self.raw = b""
                return
            pos += off + n
        self.raw = raw[pos:]

    def _next(self):
        buf = self.buf.lstrip(b"\r\n")
        self.buf = buf
        end = buf.find(b"\n\n")
        if end < 0:
            return None
        lines = buf[:end].decode("utf-8", "replace").split("\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.setdefault(k, v)
        start = end + 2
        if "content-length" in headers:
            n = int(headers["content-length"])
            if len(buf) < start + n + 1:
                return None
            body = buf[start:start + n]
            rest = start + n + 1
        else:
            nul = buf.find(b"\x00", start)
            if nul < 0:
                return None
            body, rest = buf[start:nul], nul + 1
        self.buf = buf[rest:]
        return lines[0], headers, body

    async def read(self):
        while True:
            f = self._next()
            if f is not None:
                return f
            if self.ws_closed:
                raise Closed("WebSocket close")
            chunk = await self.reader.read(262144)
            if not chunk:
                raise Closed("EOF")
            if self.kind == "tcp":
                self.buf += chunk
            else:
                self.raw += chunk
                self._parse_ws()

    async def drain(self) -> None:
        await self.writer.drain()

    def reset(self) -> None:
        sock = self.writer.get_extra_info("socket")
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except (OSError, AttributeError):
            pass
        self.writer.transport.abort()

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:
            pass

    async def disconnect(self) -> None:
        self.send(frame("DISCONNECT", {"receipt": "bye"}))
        try:
            while True:
                cmd, headers, _ = await asyncio.wait_for(self.read(), CONNECT_TIMEOUT)
                if cmd == "RECEIPT":
                    break
        finally:
            self.close()


def body_for(seq: int, size: int) -> bytes:
    head = f"{seq} {time.monotonic_ns()} ".encode()
    return head + b"x" * max(0, size - len(head))


def parse_body(body: bytes):
    a, b, _ = body.split(b" ", 2)
    return int(a), int(b)


# ---------------------------------------------------------------------------
# Load processes
# ---------------------------------------------------------------------------

class Stats:
    """What one load process reports: per-minute latencies and counters."""

    def __init__(self, role: str, t0: float, results):
        self.role, self.t0, self.results = role, t0, results
        self.lat: dict = {}            # minute -> list of latencies in ms
        self.counts: dict = {}
        self.errors: list = []
        self.flushed = -1

    def minute(self, now: float | None = None) -> int:
        return int(((now if now is not None else time.monotonic()) - self.t0) // 60)

    def latency(self, sent_ns: int) -> None:
        now = time.monotonic_ns()
        m = int((now / 1e9 - self.t0) // 60)
        if m >= 0:
            self.lat.setdefault(m, []).append((now - sent_ns) / 1e6)

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def error(self, text: str) -> None:
        self.add("errors")
        if len(self.errors) < 50:
            self.errors.append(f"{time.monotonic() - self.t0:.1f}s {text}")

    def flush(self, upto: int) -> None:
        """Send the latencies of minutes before `upto` to the main process."""
        for m in sorted(k for k in self.lat if k < upto):
            self.results.put(("lat", self.role, m, self.lat.pop(m)))

    async def flusher(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.flush(self.minute())
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass

    def final(self) -> None:
        self.flush(10 ** 9)
        self.results.put(("done", self.role, self.counts, self.errors))


async def wait_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def paced(rate: float, start: float, deadline: float, send_one) -> int:
    """Calls send_one(seq) `rate` times a second from `start` to `deadline`, in 10 ms ticks."""
    sent = 0
    while True:
        now = time.monotonic()
        if now >= deadline:
            return sent
        due = int((now - start) * rate)
        while sent < due:
            await send_one(sent)
            sent += 1
        await asyncio.sleep(0.01)


async def topic_role(cfg: dict, t0: float, deadline: float, stats: Stats) -> None:
    host, ports = cfg["host"], cfg["ports"]
    subs = []
    for i in range(cfg["subscribers"]):
        c = await Conn.open(host, ports, "tcp" if i % 2 == 0 else "ws")
        await c.connect()
        c.send(frame("SUBSCRIBE", {"destination": "/topic/soak.prices.*", "id": f"s{i}", "ack": "auto",
                                   "receipt": "sub"}))
        cmd, _, _ = await c.read()
        assert cmd == "RECEIPT", cmd
        subs.append(c)
    pub = await Conn.open(host, ports, "tcp")
    await pub.connect()
    expected = [0]
    got = [0] * len(subs)

    async def subscriber(i: int, c: Conn):
        last = -1
        try:
            while True:
                cmd, headers, body = await c.read()
                if cmd != "MESSAGE":
                    stats.error(f"topic subscriber {i}: {cmd} {headers.get('message', '')}")
                    return
                seq, sent = parse_body(body)
                stats.latency(sent)
                stats.add("topic_delivered")
                got[i] += 1
                if seq != last + 1:
                    stats.add("topic_out_of_sequence")
                last = seq
        except Closed as e:
            if time.monotonic() < deadline:
                stats.error(f"topic subscriber {i} closed: {e}")

    readers = [asyncio.create_task(subscriber(i, c)) for i, c in enumerate(subs)]

    async def publish(seq: int):
        pub.send(frame("SEND", {"destination": f"/topic/soak.prices.k{seq % 8}"}, body_for(seq, cfg["body"])))
        expected[0] = seq + 1
        stats.add("topic_published")
        if seq % 50 == 0:
            await pub.drain()

    await wait_until(t0)
    await paced(cfg["topic_rate"], t0, deadline, publish)
    await pub.drain()
    # The last deliveries (bounded).
    end = time.monotonic() + DRAIN
    while time.monotonic() < end and any(g < expected[0] for g in got):
        await asyncio.sleep(0.05)
    stats.add("topic_expected_deliveries", expected[0] * len(subs))
    for t in readers:
        t.cancel()
    for c in subs + [pub]:
        try:
            await c.disconnect()
        except Exception:
            c.close()


async def queue_role(cfg: dict, t0: float, deadline: float, stats: Stats) -> None:
    host, ports = cfg["host"], cfg["ports"]
    queues = [f"/queue/soak.work.{q}" for q in range(cfg["queues"])]
    seen: set = set()
    published = [0]
    consumers = []
    for i in range(cfg["consumers"]):
        c = await Conn.open(host, ports, "tcp" if i % 2 == 0 else "ws")
        await c.connect()
        c.send(frame("SUBSCRIBE", {"destination": queues[i % len(queues)], "id": f"c{i}",
                                   "ack": "client-individual", "prefetch-count": "100", "receipt": "sub"}))
        cmd, _, _ = await c.read()
        assert cmd == "RECEIPT", cmd
        consumers.append(c)
    producers = []
    for q in range(len(queues)):
        p = await Conn.open(host, ports, "ws" if q % 2 else "tcp")
        await p.connect()
        producers.append(p)

    async def consumer(i: int, c: Conn):
        try:
            while True:
                cmd, headers, body = await c.read()
                if cmd != "MESSAGE":
                    stats.error(f"queue consumer {i}: {cmd} {headers.get('message', '')}")
                    return
                c.send(frame("ACK", {"id": headers.get("ack", "")}))
                q, seq, sent = body.split(b" ", 3)[:3]
                key = (int(q), int(seq))
                if key in seen:
                    if headers.get("redelivered") != "true":
                        stats.add("queue_duplicates")
                else:
                    seen.add(key)
                    stats.latency(int(sent))
                    stats.add("queue_delivered")
        except Closed as e:
            if time.monotonic() < deadline:
                stats.error(f"queue consumer {i} closed: {e}")

    readers = [asyncio.create_task(consumer(i, c)) for i, c in enumerate(consumers)]
    per_queue = cfg["queue_rate"] / len(queues)

    async def produce(q: int):
        p = producers[q]

        async def one(seq: int):
            head = f"{q} {seq} {time.monotonic_ns()} ".encode()
            p.send(frame("SEND", {"destination": queues[q]}, head + b"q" * max(0, cfg["body"] - len(head))))
            published[0] += 1
            stats.add("queue_published")
            if seq % 50 == 0:
                await p.drain()

        await paced(per_queue, t0, deadline, one)

    await wait_until(t0)
    await asyncio.gather(*(produce(q) for q in range(len(queues))))
    end = time.monotonic() + DRAIN
    while time.monotonic() < end and len(seen) < published[0]:
        await asyncio.sleep(0.05)
    stats.add("queue_lost", published[0] - len(seen))
    for t in readers:
        t.cancel()
    for c in consumers + producers:
        try:
            await c.disconnect()
        except Exception:
            c.close()


async def churn_role(cfg: dict, t0: float, deadline: float, stats: Stats) -> None:
    host, ports = cfg["host"], cfg["ports"]
    await wait_until(t0)

    async def churn():
        n = 0
        interval = 1.0 / cfg["churn_rate"]
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            kind = "tcp" if n % 2 == 0 else "ws"
            try:
                c = await Conn.open(host, ports, kind)
                await c.connect()
                if n % 3 == 0:
                    c.send(frame("SUBSCRIBE", {"destination": f"/topic/soak.churn.{n}", "id": "1",
                                               "receipt": "s"}))
                    await asyncio.wait_for(c.read(), CONNECT_TIMEOUT)
                if (n // 2) % 2 == 0:
                    await c.disconnect()
                else:
                    c.reset()
                stats.add("churn_connections")
            except Exception as e:
                stats.error(f"churn {kind} connection {n}: {type(e).__name__} {e}")
            n += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def expect_refusal(what: str, kind: str, payload: bytes, *, connect: bool):
        """A bad client: the node must answer with an ERROR (or a WebSocket close) and close."""
        try:
            c = await Conn.open(host, ports, kind)
            if connect:
                await c.connect()
            c.send(payload)
            try:
                await c.drain()
            except (ConnectionError, OSError):
                pass

            async def until_closed():
                while True:
                    cmd, headers, _ = await c.read()
                    if cmd == "ERROR":
                        stats.add("bad_errors_received")

            try:
                await asyncio.wait_for(until_closed(), 10)
            except (Closed, ConnectionError, OSError):
                stats.add("bad_clients_closed")
            except asyncio.TimeoutError:
                stats.error(f"bad client ({what} over {kind}) not closed by the node within 10 s")
            finally:
                c.close()
        except Exception as e:
            stats.error(f"bad client ({what} over {kind}): {type(e).__name__} {e}")

    async def drop_after(what: str, kind: str, payload_parts: list, *, reset: bool):
        """A bad client that leaves something half done and goes away."""
        try:
            c = await Conn.open(host, ports, kind)
            await c.connect()
            for part in payload_parts:
                c.send(part)
            await c.drain()
            await asyncio.sleep(1.0)  # let the node read it
            c.reset() if reset else c.close()
            stats.add("bad_clients_dropped")
        except Exception as e:
            stats.error(f"bad client ({what} over {kind}): {type(e).__name__} {e}")

    silent: list = []

    async def bad_round(minute: int):
        # Close the silent sockets of the previous round (the node may have closed them).
        for w in silent:
            try:
                w.close()
            except Exception:
                pass
        silent.clear()
        big = cfg["partial_frame_bytes"]
        for kind in ("tcp", "ws"):
            await expect_refusal("garbage", kind, bytes(random.getrandbits(8) for _ in range(300)) + b"\n\n\x00",
                                 connect=False)
            await expect_refusal("oversized frame", kind,
                                 b"SEND\ndestination:/queue/soak.big\ncontent-length:%d\n\n" % (4 << 20)
                                 + b"o" * 65536, connect=True)
            head = f"SEND\ndestination:/queue/soak.partial\ncontent-length:{big}\n\n".encode()
            await drop_after("partial frame", kind, [head + b"p" * (big * 3 // 4)], reset=True)
            tx = f"tx{minute}"
            await drop_after("open transaction", kind,
                             [frame("BEGIN", {"transaction": tx})]
                             + [frame("SEND", {"destination": "/queue/soak.tx", "transaction": tx},
                                      b"t" * (256 << 10)) for _ in range(2)], reset=(kind == "tcp"))
        for i in range(cfg["silent"]):
            try:
                port = ports["stomp"] if i % 2 == 0 else ports["ws"]
                _, w = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
                silent.append(w)
                stats.add("silent_sockets")
            except Exception as e:
                stats.error(f"silent socket: {type(e).__name__} {e}")
        stats.add("bad_rounds")

    async def bad():
        minute = 0
        while True:
            at = t0 + minute * 60 + 20
            if at >= deadline - 5:
                break
            await wait_until(at)
            await bad_round(minute)
            minute += 1
        for w in silent:
            w.close()

    await asyncio.gather(churn(), bad())


ROLES = {"topic": topic_role, "queue": queue_role, "churn": churn_role}


def worker_main(role: str, cfg: dict, t0: float, deadline: float, results) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process stops us
    stats = Stats(role, t0, results)

    async def run():
        stop = asyncio.Event()
        flusher = asyncio.create_task(stats.flusher(stop))
        try:
            await ROLES[role](cfg, t0, deadline, stats)
        finally:
            stop.set()
            await flusher

    try:
        asyncio.run(asyncio.wait_for(run(), deadline - time.monotonic() + START_DELAY + 60))
    except BaseException as e:  # noqa: BLE001 - reported to the main process
        stats.error(f"{role} load process failed: {type(e).__name__} {e}\n{traceback.format_exc()[-1500:]}")
        stats.add("failed")
    stats.counts[f"generator_cpu_seconds_{role}"] = round(time.process_time(), 1)
    stats.final()


# ---------------------------------------------------------------------------
# The node
# ---------------------------------------------------------------------------

class NodeProc:
    def __init__(self, binary: Path, workdir: Path, extra: list):
        self.workdir = workdir
        self.ports_file = workdir / "ports.json"
        self.log_path = workdir / "node.log"
        self.cmd = [str(binary), "--host", "127.0.0.1", "--ws-port", "0", "--stomp-port", "0",
                    "--admin-port", "0", "--admin-host", "127.0.0.1", "--ports-file", str(self.ports_file),
                    "--node-id", "soak", "--log-level", "warning", *extra]
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.ports: dict = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the node exited at start with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.ports = json.loads(self.ports_file.read_text())
                if "ws" in self.ports and "stomp" in self.ports:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("the node did not write its ports file within 60 s")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def sample(self) -> dict:
        with open(f"/proc/{self.pid}/status") as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return {"rss": int(status["VmRSS"].split()[0]) * 1024,
                "fds": len(os.listdir(f"/proc/{self.pid}/fd")),
                "threads": int(status["Threads"].strip()),
                "cpu": cpu, "connections": self.connections()}

    def connections(self):
        port = self.ports.get("admin")
        if not port:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                for line in r.read().decode().splitlines():
                    if line.startswith("stomp_connections ") or line.startswith("stomp_connections{"):
                        return int(float(line.split()[-1]))
        except OSError:
            return None
        return None

    def stop(self) -> str:
        """SIGTERM, wait (bounded), SIGKILL if needed; return a problem or ''."""
        problem = ""
        if self.proc.poll() is not None:
            problem = f"the node had exited on its own with {self.proc.returncode}"
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                problem = "the node did not exit within 20 s of SIGTERM (killed)"
        rc = self.proc.returncode
        if not problem and rc not in (0, -signal.SIGTERM):
            problem = f"the node exited with {rc}"
        self.log.close()
        return problem


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

def pct(values: list, p: float):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def machine() -> str:
    mem = ""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    os_name = ""
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{socket.gethostname()}: {os.cpu_count()} cores ({model or platform.machine()}), {mem}, "
            f"{os_name}, Linux {platform.release()}")


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + (" (working tree modified)" if dirty else "") if head else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def binary_id(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    mtime = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"`{path}` (sha256 {h.hexdigest()[:16]}, built {mtime})"


def plot(samples: list, rows: list, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    t = [s["t"] / 60 for s in samples]
    ax.plot(t, [s["rss"] / 1e6 for s in samples], color="tab:blue", label="RSS (MB)")
    ax.plot(t, [s["fds"] for s in samples], color="tab:green", label="open fds")
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS (MB) / open fds")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax2 = ax.twinx()
    lat = [(r["minute"] - 0.5, r["p99"]) for r in rows if r["p99"] is not None]
    if lat:
        ax2.plot([x for x, _ in lat], [y for _, y in lat], color="tab:red", marker="o", linestyle="--",
                 label="latency p99 (ms)")
    ax2.set_ylabel("publish -> deliver p99 (ms), per minute")
    ax2.set_ylim(bottom=0)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper left")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def fmt(v, spec: str = ".2f", none: str = "-") -> str:
    return none if v is None else format(v, spec)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", type=Path, default=REPO / ".build" / "release" / "cluster-node")
    ap.add_argument("--minutes", type=int, default=30)
    ap.add_argument("--out-md", type=Path, default=BENCH / "SOAK.md")
    ap.add_argument("--out-png", type=Path, default=BENCH / "soak.png")
    ap.add_argument("--max-growth-mb", type=float, default=10.0,
                    help="memory is flat when RSS grows by less than this from minute 5 to 30 (scaled "
                         "down for shorter runs, at least 2 MB)")
    ap.add_argument("--topic-rate", type=float, default=250, help="topic messages published per second")
    ap.add_argument("--subscribers", type=int, default=4, help="subscribers of the topic (fan-out)")
    ap.add_argument("--queue-rate", type=float, default=500, help="queue messages published per second")
    ap.add_argument("--queues", type=int, default=2)
    ap.add_argument("--consumers", type=int, default=4, help="queue consumers, spread over the queues")
    ap.add_argument("--churn-rate", type=float, default=4, help="connections opened and closed per second")
    ap.add_argument("--silent", type=int, default=6, help="silent sockets opened per minute")
    ap.add_argument("--body", type=int, default=100, help="message body bytes")
    ap.add_argument("--partial-frame-bytes", type=int, default=1 << 20,
                    help="content-length of a bad client's partial frame (3/4 of it is sent)")
    ap.add_argument("--node-arg", action="append", default=[], help="extra flag for the node (repeatable)")
    args = ap.parse_args()
    if args.minutes < 1:
        ap.error("--minutes must be at least 1")
    binary = args.binary.resolve()
    if not binary.exists():
        print(f"no binary at {binary}: build it with `swift build -c release --product cluster-node` "
              f"or pass --binary", file=sys.stderr)
        return 2
    ensure_matplotlib()
    args.out_md.parent.mkdir(parents=True, exist_ok=True)
    args.out_png.parent.mkdir(parents=True, exist_ok=True)

    started = dt.datetime.now(dt.timezone.utc)
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    node = NodeProc(binary, workdir, args.node_arg)
    print(f"node pid {node.pid}, ports {node.ports}, log {node.log_path}", flush=True)
    cfg = {"host": "127.0.0.1", "ports": node.ports, "subscribers": args.subscribers,
           "topic_rate": args.topic_rate, "queue_rate": args.queue_rate, "queues": args.queues,
           "consumers": args.consumers, "churn_rate": args.churn_rate, "silent": args.silent,
           "body": args.body, "partial_frame_bytes": args.partial_frame_bytes}
    ctx = mp.get_context("fork")
    results = ctx.Queue()
    t0 = time.monotonic() + START_DELAY
    deadline = t0 + args.minutes * 60
    workers = [ctx.Process(target=worker_main, args=(role, cfg, t0, deadline, results), name=f"soak-{role}",
                           daemon=True) for role in ROLES]
    for w in workers:
        w.start()

    samples: list = []
    latencies: dict = {}   # minute -> list
    done: dict = {}
    problems: list = []
    interrupted = False

    def drain_results(block_for: float = 0.0):
        end = time.monotonic() + block_for
        while True:
            try:
                item = results.get(timeout=max(0.0, end - time.monotonic()) or 0.01)
            except queue_mod.Empty:
                return
            if item[0] == "lat":
                latencies.setdefault(item[2], []).extend(item[3])
            elif item[0] == "done":
                done[item[1]] = (item[2], item[3])

    def take_sample():
        s = node.sample()
        s["t"] = time.monotonic() - t0
        try:
            s["loadavg"] = float(open("/proc/loadavg").read().split()[0])
        except (OSError, ValueError):
            s["loadavg"] = None
        samples.append(s)
        return s

    try:
        while time.monotonic() < t0:
            drain_results(0.1)
        k = 0
        while True:
            at = t0 + k * SAMPLE_EVERY
            if at > deadline + 0.01:
                break
            while time.monotonic() < at:
                drain_results(min(0.2, max(0.0, at - time.monotonic())))
            if node.proc.poll() is not None:
                problems.append(f"the node exited during the run with {node.proc.returncode}")
                break
            s = take_sample()
            if k % int(60 / SAMPLE_EVERY) == 0:
                print(f"minute {k * SAMPLE_EVERY / 60:4.0f}: RSS {s['rss'] / 1e6:7.1f} MB, fds {s['fds']:4d}, "
                      f"connections {s['connections']}, node CPU {s['cpu']:.0f} s", flush=True)
            k += 1
        # The load processes drain and report.
        end = time.monotonic() + DRAIN + 40
        while len(done) < len(workers) and time.monotonic() < end:
            drain_results(0.5)
        drain_results(0.2)
    except KeyboardInterrupt:
        interrupted = True
        problems.append("interrupted")
    finally:
        for w in workers:
            w.join(timeout=5)
            if w.is_alive():
                w.terminate()
                w.join(timeout=5)
            if w.is_alive():
                w.kill()
                w.join(timeout=5)
        stop_problem = node.stop()
        if stop_problem:
            problems.append(stop_problem)
    for role in ROLES:
        if role not in done:
            problems.append(f"the {role} load process did not report")
        elif done[role][0].get("failed"):
            problems.append(f"the {role} load process failed: {done[role][1][-1:]}")

    # Per-minute rows: the state at the end of each minute, latencies over it.
    per_minute = int(60 / SAMPLE_EVERY)
    rows = []
    for i in range(0, len(samples), per_minute):
        s = samples[i]
        m = i // per_minute
        lat = latencies.get(m - 1, []) if m > 0 else []
        prev = samples[i - per_minute] if m > 0 else None
        rows.append({"minute": m, "rss": s["rss"], "fds": s["fds"], "connections": s["connections"],
                     "threads": s["threads"],
                     "cpu_pct": (s["cpu"] - prev["cpu"]) / (s["t"] - prev["t"]) * 100 if prev else None,
                     "deliveries": len(lat), "p50": pct(lat, 50), "p99": pct(lat, 99)})
    ref_minute = 5 if args.minutes >= 10 else max(1, args.minutes // 3)
    by_minute = {r["minute"]: r for r in rows}
    last = rows[-1] if rows else None
    flat = None
    growth = None
    # The bound is for the 25 minutes from minute 5 to 30; a shorter window gets a
    # proportionally smaller one (at least MIN_BOUND_MB), so that a short run can't call a
    # steady leak flat just because it had little time to grow.
    window = (last["minute"] - ref_minute) if last else 0
    bound_mb = max(MIN_BOUND_MB, args.max_growth_mb * min(1.0, window / 25)) if window > 0 else args.max_growth_mb
    if last and ref_minute in by_minute and window > 0 and not problems:
        growth = last["rss"] - by_minute[ref_minute]["rss"]
        flat = growth < bound_mb * 1e6

    counts: dict = {}
    errors: list = []
    for role, (c, e) in done.items():
        for key, v in c.items():
            counts[key] = counts.get(key, 0) + v
        errors += [f"{role}: {x}" for x in e]
    all_lat = [x for v in latencies.values() for x in v]

    # Markdown.
    cmd = " ".join(shlex.quote(a) for a in ["python3", os.path.relpath(Path(sys.argv[0]).resolve(), REPO),
                                           *sys.argv[1:]])
    title = f"soak: {args.minutes} min, {binary.name}"
    out = [f"# Soak: {args.minutes} minutes of steady mixed load on one node", ""]
    out += ["Written by `bench/soak.py` (see bench/README.md, \"Soak\"); do not edit by hand.", ""]
    out += [f"- machine: {machine()}",
            f"- date: {started.strftime('%Y-%m-%d %H:%M UTC')}",
            f"- commit: {git_commit()}",
            f"- binary: {binary_id(binary)}",
            f"- duration: {args.minutes} min of load (plus {START_DELAY:.0f} s to connect and up to {DRAIN:.0f} s to drain)",
            f"- command: `{cmd}`",
            f"- machine load (1-minute load average, everything on the machine): "
            f"{fmt(min((x['loadavg'] for x in samples if x.get('loadavg') is not None), default=None), '.1f')} to "
            f"{fmt(max((x['loadavg'] for x in samples if x.get('loadavg') is not None), default=None), '.1f')} "
            f"on {os.cpu_count()} cores during the run",
            f"- node: `{' '.join(shlex.quote(a) for a in node.cmd[1:])}`",
            f"- load: topic {args.topic_rate:g} msgs/s to {args.subscribers} subscribers "
            f"({args.topic_rate * args.subscribers:g} deliveries/s); queues {args.queue_rate:g} msgs/s over "
            f"{args.queues} queues to {args.consumers} consumers (client-individual acks); churn "
            f"{args.churn_rate:g} connections/s (TCP and WebSocket, DISCONNECT or reset); every minute "
            f"per transport: garbage, an oversized frame, a partial {args.partial_frame_bytes >> 10} KiB frame "
            f"then reset, a 512 KiB transaction then a drop; and {args.silent} silent sockets held for a minute; "
            f"{args.body}-byte bodies",
            ""]
    out += ["| minute | RSS (MB) | open fds | connections | threads | node CPU % | deliveries | p50 (ms) | p99 (ms) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        out.append(f"| {r['minute']} | {r['rss'] / 1e6:.1f} | {r['fds']} | {fmt(r['connections'], 'd')} | "
                   f"{r['threads']} | {fmt(r['cpu_pct'], '.0f')} | {r['deliveries'] if r['minute'] else '-'} | "
                   f"{fmt(r['p50'])} | {fmt(r['p99'])} |")
    out.append("")
    out.append("Each row is the state at the end of that minute; deliveries and latency (publish -> deliver, "
               "from the timestamp in the body, on the same clock) are over that minute; node CPU % is of one core.")
    out.append("")
    out.append("## Verdict")
    out.append("")
    bound = (f"{bound_mb:.3g} MB" if bound_mb == args.max_growth_mb else
             f"{bound_mb:.3g} MB: {args.max_growth_mb:g} MB per 25 minutes, scaled to this {window}-minute "
             f"window, at least {MIN_BOUND_MB:g} MB")
    if growth is not None and window > 0:
        rate = f" ({growth / 1e6 / window:+.2f} MB/min)"
    else:
        rate = ""
    if flat is None:
        out.append(f"**No verdict**: {'; '.join(problems) or 'the run was too short for a reference minute'}.")
    elif flat:
        out.append(f"**Memory flat**: RSS grew by {growth / 1e6:.1f} MB from minute {ref_minute} to minute "
                   f"{last['minute']}{rate} (bound: under {bound}).")
    else:
        out.append(f"**Memory NOT flat**: RSS grew by {growth / 1e6:.1f} MB from minute {ref_minute} to minute "
                   f"{last['minute']}{rate} (bound: under {bound}).")
    if rows and ref_minute in by_minute:
        fd_delta = last["fds"] - by_minute[ref_minute]["fds"]
        out.append(f"Open descriptors: {by_minute[ref_minute]['fds']} at minute {ref_minute}, {last['fds']} at the end "
                   f"({fd_delta:+d}).")
    if all_lat:
        out.append(f"Latency over the whole run: p50 {pct(all_lat, 50):.2f} ms, p99 {pct(all_lat, 99):.2f} ms, "
                   f"max {max(all_lat):.1f} ms ({len(all_lat)} deliveries).")
    out.append("")
    out.append("## Load")
    out.append("")
    for key in sorted(counts):
        if not key.startswith("generator_cpu_seconds_"):
            out.append(f"- {key.replace('_', ' ')}: {counts[key]}")
    gen = {role: counts[f"generator_cpu_seconds_{role}"] / (args.minutes * 60) * 100
           for role in ROLES if f"generator_cpu_seconds_{role}" in counts}
    if gen:
        verdict = ("well under 100%: the generator kept up" if max(gen.values()) < 60
                   else "CLOSE TO SATURATION: the generator may have been the bottleneck")
        out.append(f"- load generator CPU per process, % of one core over the run: "
                   f"{', '.join(f'{r} {v:.0f}%' for r, v in gen.items())} ({verdict})")
    if problems:
        out += ["", "## Problems", ""] + [f"- {p}" for p in problems]
    if errors:
        out += ["", "## Errors seen by the load (first 50 per process)", "", "```"] + errors[:150] + ["```"]
    out += ["", f"![RSS, descriptors and p99 latency]({os.path.relpath(args.out_png, args.out_md.parent)})", ""]
    args.out_md.write_text("\n".join(out))
    try:
        if samples:
            plot(samples, rows, args.out_png, title)
    except Exception as e:  # noqa: BLE001
        problems.append(f"plot failed: {e}")
        print(f"plot failed: {e}", file=sys.stderr)
    print("\n".join(out[-40:]))
    print(f"wrote {args.out_md} and {args.out_png}; node log kept at {node.log_path}")
    if interrupted or problems:
        return 2
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
