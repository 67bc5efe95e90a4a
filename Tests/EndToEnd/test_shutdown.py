"""SIGTERM / SIGINT: every connected client gets an ERROR saying the node is shutting down,
the listeners close, and the process exits 0."""

from __future__ import annotations

import re
import signal
import socket

import pytest

from pyclient import PyClient
from stomp_raw import StompClient, unique

EXIT_TIMEOUT = 30.0  # upper bound for a graceful exit (a drain may take a few seconds)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_sends_error_to_clients_and_exits_zero(node_factory, sig):
    node = node_factory(name="shutdown")
    raw_clients = [StompClient.tcp(node.host, node.stomp_port), StompClient.ws(node.ws_url),
                   StompClient.ws(node.ws_url, subprotocols=["v10.stomp"])]
    py = PyClient.for_node(node, "tcp", "1.2")
    try:
        for c, version in zip(raw_clients, ["1.2", "1.1", "1.0"]):
            c.connect(version)
        subscriber = raw_clients[0]
        subscriber.subscribe(f"/topic/{unique('sd')}")

        node.signal(sig)

        for c in raw_clients:
            frames = c.wait_closed(EXIT_TIMEOUT)
            errors = [f for f in frames if f.command == "ERROR"]
            assert errors, f"{c.t.kind} client: no ERROR before close; got {frames!r}"
            assert re.search(r"shutting down", errors[0].header("message", ""), re.I), errors[0]
        py.rec.wait(lambda: py.rec.errors, EXIT_TIMEOUT, "ERROR on the stomp.py client")
        assert "shutting down" in py.rec.errors[0].headers.get("message", "").lower()

        rc = node.wait(EXIT_TIMEOUT)
        assert rc is not None, f"node still running {EXIT_TIMEOUT}s after {sig.name}\n{node.log_tail()}"
        assert rc == 0, f"exit code {rc} after {sig.name}\n{node.log_tail()}"

        # The listeners are gone.
        for port in (node.stomp_port, node.ws_port):
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((node.host, port), timeout=5).close()
    finally:
        py.drop()
        for c in raw_clients:
            c.close()


def test_sigterm_with_no_clients_exits_zero(node_factory):
    node = node_factory(name="idle")
    node.signal(signal.SIGTERM)
    rc = node.wait(EXIT_TIMEOUT)
    assert rc == 0, f"exit code {rc}\n{node.log_tail()}"


def test_sigterm_during_traffic_exits_zero(node_factory):
    node = node_factory(name="busy")
    dest = f"/queue/{unique('busy')}"
    sub = StompClient.tcp(node.host, node.stomp_port)
    pub = StompClient.ws(node.ws_url)
    try:
        sub.connect()
        pub.connect()
        sub.subscribe(dest, ack="client-individual")
        for i in range(200):
            pub.send(dest, f"m{i}")
        pub.send(dest, "last", receipt=True)
        node.signal(signal.SIGTERM)
        for c in (sub, pub):
            frames = c.wait_closed(EXIT_TIMEOUT)
            errors = [f for f in frames if f.command == "ERROR"]
            assert errors and "shutting down" in errors[-1].header("message", "").lower(), frames[-3:]
        rc = node.wait(EXIT_TIMEOUT)
        assert rc == 0, f"exit code {rc}\n{node.log_tail()}"
    finally:
        sub.close()
        pub.close()
