"""Fixtures for the end-to-end tests (see nodes.py for how the node is run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nodes import Node, _start, module_node, wait_for  # noqa: E402,F401  (re-exported for tests)


@pytest.fixture
def node_factory(tmp_path):
    """Start nodes with special flags for one test: `node_factory("--max-body-size", "100")`."""
    nodes: list = []

    def start(*args, name: str | None = None) -> Node:
        n = _start(tmp_path, name or f"node{len(nodes)}", args)
        nodes.append(n)
        return n

    yield start
    problems = []
    for n in nodes:
        problems += n.stop()
    assert not problems, "\n".join(problems)


# The default node for modules that need no special flags.
node = module_node(name="e2e-node")


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory):
    """A throwaway self-signed certificate for localhost / 127.0.0.1: (cert_path, key_path)."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    cmd = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
           "-nodes", "-days", "1", "-subj", "/CN=localhost",
           "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
           "-keyout", str(key), "-out", str(cert)]
    res = subprocess.run(cmd, capture_output=True, timeout=60)
    assert res.returncode == 0, f"openssl failed: {res.stderr.decode(errors='replace')}"
    return cert, key
