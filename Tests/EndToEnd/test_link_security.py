"""Who may connect to a node's cluster port, and what a stranger learns there (issue 11).

- A raw TCP client on the cluster port hears nothing until it says hello, then only a
  challenge (wire versions and a nonce): no node id, cluster name or address. Refusals before
  a valid proof are one generic text, while the node's log names the precise reason. With a
  valid proof (the test knows the secret) the node says who it is and proves it.
- A wire-version-1 dialler is refused with "no common wire version".
- A node that reaches itself through its seed list runs the handshake with itself and stays
  quiet about it (no link, no refusal).
- With mutual TLS, nodes whose certificates name their node ids form a cluster; a node whose
  certificate names another id doesn't start; a dialler with a CA-signed certificate and the
  secret, claiming an id its certificate does not name, is refused and the log says why; and
  a node dialling a listener whose certificate doesn't name the id its hello claims refuses
  it.

The link's wire format is encoded here by hand, following Sources/Gossip/Link/WIRE-FORMAT.md
(version 2). Certificates are made with the openssl CLI at test time. Everything listens on
127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import ssl
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cluster import DEFAULT_SECRET, Cluster, free_ports, matching, wait_log
from nodes import HOST, NODE_BIN, Node, node_environment

WAIT = 10.0
NODE_NAME = "linksec-listener-node"
CLUSTER_NAME = "linksec-cluster-name"
PROOF_LABEL = b"stomp-cluster link proof v2"
GENERIC_REFUSAL = "authentication failed"

# ---------------------------------------------------------------------------
# The link's wire format (WIRE-FORMAT.md): frames of messages, big-endian integers
# ---------------------------------------------------------------------------

HELLO, PROOF, REFUSE, CHALLENGE = 1, 2, 3, 7


def u16(value: int) -> bytes:
    return struct.pack(">H", value)


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def u64(value: int) -> bytes:
    return struct.pack(">Q", value)


def counted(data: bytes) -> bytes:
    """`bytes` and `string`: a u32 count, then the bytes."""
    return u32(len(data)) + data


def message(code: int, body: bytes) -> bytes:
    return bytes([code]) + u32(len(body)) + body


def frame(*messages: bytes) -> bytes:
    """An uncompressed frame: u32 length of what follows, flags 0, the batch."""
    payload = b"".join(messages)
    return u32(1 + len(payload)) + b"\x00" + payload


def hello(cluster: str, node: str, nonce: bytes, *, epoch: int = 1, address: str = "127.0.0.1:9",
          versions: tuple = (2, 2)) -> bytes:
    body = (u16(versions[0]) + u16(versions[1]) + u64(0) + counted(cluster.encode()) + counted(node.encode())
            + u64(epoch) + counted(address.encode()) + counted(nonce))
    return message(HELLO, body)


def challenge(nonce: bytes, versions: tuple = (2, 2)) -> bytes:
    return message(CHALLENGE, u16(versions[0]) + u16(versions[1]) + counted(nonce))


def proof(mac: bytes) -> bytes:
    return message(PROOF, counted(mac))


def dialer_proof(secret: str, cluster: str, dialer: str, dialer_nonce: bytes, listener_nonce: bytes) -> bytes:
    data = (PROOF_LABEL + b"\x01" + counted(cluster.encode()) + counted(dialer.encode()) + counted(dialer_nonce)
            + counted(listener_nonce))
    return hmac.new(secret.encode(), data, hashlib.sha256).digest()


def listener_proof(secret: str, cluster: str, listener: str, listener_nonce: bytes, dialer: str,
                   dialer_nonce: bytes) -> bytes:
    data = (PROOF_LABEL + b"\x02" + counted(cluster.encode()) + counted(listener.encode()) + counted(listener_nonce)
            + counted(dialer.encode()) + counted(dialer_nonce))
    return hmac.new(secret.encode(), data, hashlib.sha256).digest()


class Body:
    """Reads a message body field by field."""

    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def take(self, n: int) -> bytes:
        assert self.at + n <= len(self.data), f"truncated body {self.data!r}"
        chunk = self.data[self.at:self.at + n]
        self.at += n
        return chunk

    def int(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def counted(self) -> bytes:
        return self.take(self.int(4))

    def string(self) -> str:
        return self.counted().decode()


def parse_hello(body: bytes) -> dict:
    b = Body(body)
    return {"min": b.int(2), "max": b.int(2), "capabilities": b.int(8), "cluster": b.string(), "node": b.string(),
            "epoch": b.int(8), "address": b.string(), "nonce": b.counted()}


def parse_challenge(body: bytes) -> dict:
    b = Body(body)
    result = {"min": b.int(2), "max": b.int(2), "nonce": b.counted()}
    assert b.at == len(body), f"a challenge carries more than versions and a nonce: {body!r}"
    return result


class LinkPeer:
    """The far end of a link on a socket (plain or TLS): sends frames, reads messages, and
    keeps every byte received so tests can search them."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""
        self.received = b""
        self.closed = False

    def send(self, *messages: bytes) -> None:
        self.sock.sendall(frame(*messages))

    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return False
        except (ConnectionResetError, ssl.SSLError):
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.buffer += chunk
        self.received += chunk
        return True

    def read_frame(self, timeout: float = WAIT) -> list | None:
        """The next frame's messages as (type, body) pairs; None if the peer closed first."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buffer) >= 4:
                length = int.from_bytes(self.buffer[:4], "big")
                if len(self.buffer) >= 4 + length:
                    flags, payload = self.buffer[4], self.buffer[5:4 + length]
                    self.buffer = self.buffer[4 + length:]
                    assert flags == 0, f"handshake frames are small and never compressed (flags {flags})"
                    messages, b = [], Body(payload)
                    while b.at < len(payload):
                        code = b.int(1)
                        messages.append((code, b.counted()))
                    return messages
            if not self._fill(deadline):
                if self.closed:
                    return None
                raise AssertionError(f"no complete frame within {timeout}s (have {self.buffer!r})")

    def read_until(self, code: int, timeout: float = WAIT) -> list:
        """Messages up to and including the first of type `code`."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            messages = self.read_frame(max(0.01, deadline - time.monotonic()))
            assert messages is not None, f"closed before a message of type {code}; got {seen}"
            for m in messages:
                seen.append(m)
                if m[0] == code:
                    return seen

    def prove(self, node: str, *, cluster: str = CLUSTER_NAME, secret: str = DEFAULT_SECRET) -> tuple:
        """Says hello as `node` of `cluster` and answers the challenge with a proof made with
        `secret`: (this dialler's nonce, the listener's)."""
        nonce = os.urandom(32)
        self.send(hello(cluster, node, nonce))
        (_, body), = self.read_until(CHALLENGE)
        listener_nonce = parse_challenge(body)["nonce"]
        self.send(proof(dialer_proof(secret, cluster, node, nonce, listener_nonce)))
        return nonce, listener_nonce

    def silent_for(self, seconds: float) -> bool:
        """True when nothing arrives (and the connection stays open) for `seconds`."""
        return not self._fill(time.monotonic() + seconds) and not self.closed

    def wait_closed(self, timeout: float = WAIT) -> bool:
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self._fill(deadline)
        return self.closed


def refuse_text(messages: list) -> str:
    refusals = [body for code, body in messages if code == REFUSE]
    assert refusals, f"no refuse among {messages}"
    return Body(refusals[0]).string()


def assert_reveals_nothing(data: bytes, node: str, cluster: str, address: str) -> None:
    for secret in (node, cluster, address):
        assert secret.encode() not in data, f"the listener revealed {secret!r} before the dialler's proof: {data!r}"


# ---------------------------------------------------------------------------
# A plain node with a cluster port
# ---------------------------------------------------------------------------

def write_secret(path: Path, secret: str = DEFAULT_SECRET) -> Path:
    path.write_text(secret)
    path.chmod(0o600)
    return path


@pytest.fixture
def listener(node_factory, tmp_path):
    """One clustered node (no seeds) named NODE_NAME in CLUSTER_NAME: (node, cluster port)."""
    port = free_ports(1)[0]
    secret = write_secret(tmp_path / "secret")
    node = node_factory("--cluster-host", HOST, f"--cluster-port={port}", "--cluster-advertise", f"{HOST}:{port}",
                        "--cluster-name", CLUSTER_NAME, "--cluster-secret-file", str(secret), name=NODE_NAME)
    return node, port


def dial(port: int) -> LinkPeer:
    return LinkPeer(socket.create_connection((HOST, port), timeout=WAIT))


def test_listener_says_nothing_before_a_hello_and_only_challenges_it(listener):
    node, port = listener
    peer = dial(port)
    try:
        # Version 1 said hello to anyone who connected; version 2 waits for the dialler.
        assert peer.silent_for(1.0), f"the listener spoke first: {peer.received!r}"
        nonce = os.urandom(32)
        peer.send(hello(CLUSTER_NAME, "py-dialer", nonce))
        messages = peer.read_frame()
        assert messages is not None and [code for code, _ in messages] == [CHALLENGE], messages
        ch = parse_challenge(messages[0][1])
        # This build speaks versions 2 (the handshake's order) to 4 (3: resumable sessions;
        # 4: the durable queues' replication).
        assert (ch["min"], ch["max"]) == (2, 4) and len(ch["nonce"]) == 32 and ch["nonce"] != nonce
        assert_reveals_nothing(peer.received, NODE_NAME, CLUSTER_NAME, f"{HOST}:{port}")
    finally:
        peer.sock.close()


@pytest.mark.parametrize("case", ["wrong-secret", "wrong-cluster"])
def test_refusals_before_the_proof_are_generic_and_the_log_is_precise(listener, case):
    node, port = listener
    peer = dial(port)
    try:
        cluster = CLUSTER_NAME if case == "wrong-secret" else "not-this-cluster"
        secret = DEFAULT_SECRET if case == "wrong-cluster" else "not-the-cluster-secret-0123456789"
        # A wrong cluster name is challenged like any other: the refusal's moment tells nothing.
        peer.prove("py-dialer", cluster=cluster, secret=secret)
        messages = peer.read_until(REFUSE)
        assert refuse_text(messages) == GENERIC_REFUSAL
        assert peer.wait_closed(), "the listener did not close after refusing"
        assert_reveals_nothing(peer.received, NODE_NAME, CLUSTER_NAME, f"{HOST}:{port}")
    finally:
        peer.sock.close()
    if case == "wrong-secret":
        wait_log(node, r"link refused", r"the dialler does not know the cluster secret", r"claims node py-dialer",
                 timeout=WAIT)
    else:
        wait_log(node, r"link refused", r"cluster name not-this-cluster does not match " + CLUSTER_NAME, timeout=WAIT)


def test_with_a_valid_proof_the_listener_says_who_it_is_and_proves_it(listener):
    node, port = listener
    peer = dial(port)
    try:
        nonce = os.urandom(32)
        peer.send(hello(CLUSTER_NAME, "py-dialer", nonce))
        (_, body), = peer.read_until(CHALLENGE)
        listener_nonce = parse_challenge(body)["nonce"]
        assert_reveals_nothing(peer.received, NODE_NAME, CLUSTER_NAME, f"{HOST}:{port}")
        peer.send(proof(dialer_proof(DEFAULT_SECRET, CLUSTER_NAME, "py-dialer", nonce, listener_nonce)))
        messages = peer.read_until(PROOF)
        hellos = [parse_hello(b) for code, b in messages if code == HELLO]
        assert len(hellos) == 1, messages
        h = hellos[0]
        assert h["node"] == NODE_NAME and h["cluster"] == CLUSTER_NAME and h["address"] == f"{HOST}:{port}"
        assert h["nonce"] == listener_nonce, "the listener's hello must carry its challenge's nonce"
        mac = Body(messages[-1][1]).counted()
        assert mac == listener_proof(DEFAULT_SECRET, CLUSTER_NAME, NODE_NAME, listener_nonce, "py-dialer", nonce)
    finally:
        peer.sock.close()
    wait_log(node, r"\[Gossip\] link up", r"cluster\.peer=py-dialer", timeout=WAIT)


def test_a_version_1_dialler_is_refused_with_no_common_wire_version(listener):
    node, port = listener
    peer = dial(port)
    try:
        peer.send(hello(CLUSTER_NAME, "old-node", os.urandom(32), versions=(1, 1)))
        text = refuse_text(peer.read_until(REFUSE))
        assert text == "no common wire version: peer speaks 1...1, this node 2...4"
        assert peer.wait_closed()
        assert_reveals_nothing(peer.received, NODE_NAME, CLUSTER_NAME, f"{HOST}:{port}")
    finally:
        peer.sock.close()
    wait_log(node, r"link refused", r"no common wire version", timeout=WAIT)


def test_a_node_that_dials_itself_stays_quiet(tmp_path):
    """Its seed names it by another address than the one it advertises, so it dials itself;
    the handshake runs to the end with itself, and nothing is refused or linked."""
    port = free_ports(1)[0]
    secret = write_secret(tmp_path / "secret")
    node = Node(tmp_path / "self", ["--cluster-host", HOST, f"--cluster-port={port}",
                                    "--cluster-advertise", f"localhost:{port}", "--seeds", f"{HOST}:{port}",
                                    "--cluster-min-members=1", "--cluster-name", CLUSTER_NAME,
                                    "--cluster-secret-file", str(secret), "--log-level", "debug"], "self-seeder").start()
    try:
        # Both ends of the handshake notice (debug level); the dialler remembers the address.
        wait_log(node, r"link reached this node itself", r"link\.outbound=true", timeout=WAIT)
        # Seeds are retried every second while a node has no peer: give it several rounds.
        time.sleep(3.5)
        assert not matching(node, r"link refused"), node.log_tail()
        assert not matching(node, r"\[Gossip\] link up"), node.log_tail()
        dialled = matching(node, r"link reached this node itself", r"link\.outbound=true")
        assert len(dialled) == 1, f"the node dialled itself {len(dialled)} times:\n{node.log_tail()}"
        assert len(matching(node, r"link reached this node itself", r"link\.outbound=false")) == 1, node.log_tail()
    finally:
        problems = node.stop()
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------
# Mutual TLS: certificates must name the node id their holder claims
# ---------------------------------------------------------------------------

def openssl(*args: str) -> None:
    res = subprocess.run(["openssl", *args], capture_output=True, timeout=60)
    assert res.returncode == 0, f"openssl {' '.join(args)} failed: {res.stderr.decode(errors='replace')}"


class PKI:
    """A throwaway CA and certificates it signs, for link mutual TLS."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.ca_cert, self.ca_key = root / "ca.pem", root / "ca.key"
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                "-subj", "/CN=linksec test CA", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout", str(self.ca_key), "-out", str(self.ca_cert))

    def issue(self, filename: str, dns_names: list) -> tuple:
        """A CA-signed certificate with these subjectAltName DNS entries (and 127.0.0.1):
        (cert path, key path)."""
        cert, key, csr, ext = (self.root / f"{filename}.{s}" for s in ("pem", "key", "csr", "ext"))
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-subj", f"/CN={filename}", "-keyout", str(key), "-out", str(csr))
        sans = ",".join([f"DNS:{n}" for n in dns_names] + ["IP:127.0.0.1"])
        ext.write_text(f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\n"
                       "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n")
        openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca_cert), "-CAkey", str(self.ca_key),
                "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", str(cert))
        return cert, key

    def node_args(self, cert: Path, key: Path) -> list:
        return ["--cluster-tls-cert", str(cert), "--cluster-tls-key", str(key), "--cluster-tls-ca", str(self.ca_cert)]


class TLSCluster(Cluster):
    """A Cluster whose nodes each present their own certificate (named by `certs[name]`)."""

    def __init__(self, root: Path, pki: PKI, certs: dict, **kwargs):
        super().__init__(root, **kwargs)
        self.pki, self.certs = pki, certs

    def start_node(self, name: str) -> Node:
        args = self.cluster_args(self.cluster_ports[name], self.seeds_arg(), self.secret_file)
        node = self._launch(name, args + self.pki.node_args(*self.certs[name]))
        self.nodes[name] = node
        return node


@pytest.fixture
def pki(tmp_path):
    return PKI(tmp_path / "pki")


def test_nodes_whose_certificates_name_them_form_a_cluster(tmp_path, pki):
    certs = {name: pki.issue(name, [name]) for name in ("n1", "n2")}
    c = TLSCluster(tmp_path / "mtls", pki, certs, size=2, seeds="all")
    try:
        c.start()
        for name in c.names:
            assert not matching(c[name], r"link refused"), c[name].log_tail()
    finally:
        problems = c.stop()
    assert not problems, "\n".join(problems)


def test_a_node_whose_certificate_names_another_id_does_not_start(tmp_path, pki):
    cert, key = pki.issue("wrong-name", ["n9"])
    secret = write_secret(tmp_path / "secret")
    port = free_ports(1)[0]
    cmd = [str(NODE_BIN), "--host", HOST, "--ws-port", "0", "--stomp-port", "0", "--admin-port", "0",
           "--node-id", "n3", "--cluster-host", HOST, f"--cluster-port={port}", "--cluster-name", CLUSTER_NAME,
           "--cluster-secret-file", str(secret), *pki.node_args(cert, key)]
    res = subprocess.run(cmd, capture_output=True, timeout=60, env=node_environment(), stdin=subprocess.DEVNULL)
    out = (res.stdout + res.stderr).decode(errors="replace")
    assert res.returncode != 0, out
    assert "certificate does not name node n3" in out and "DNS:n3" in out, out


@pytest.fixture
def tls_listener(node_factory, tmp_path, pki):
    """One clustered node `n1` with link mTLS: (node, cluster port)."""
    cert, key = pki.issue("n1", ["n1"])
    port = free_ports(1)[0]
    secret = write_secret(tmp_path / "secret")
    node = node_factory("--cluster-host", HOST, f"--cluster-port={port}", "--cluster-advertise", f"{HOST}:{port}",
                        "--cluster-name", CLUSTER_NAME, "--cluster-secret-file", str(secret),
                        *pki.node_args(cert, key), name="n1")
    return node, port


def client_context(pki: PKI, cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(str(cert), str(key))
    ctx.check_hostname = False  # the link checks node ids, not host names
    return ctx


def tls_dial(port: int, context: ssl.SSLContext) -> LinkPeer:
    return LinkPeer(context.wrap_socket(socket.create_connection((HOST, port), timeout=WAIT)))


def test_a_dialler_whose_certificate_names_another_node_is_refused(tls_listener, pki):
    """A CA-signed certificate for n9 and the cluster secret are not enough to join as n3."""
    node, port = tls_listener
    cert, key = pki.issue("impostor", ["n9"])
    peer = tls_dial(port, client_context(pki, cert, key))
    try:
        peer.prove("n3")
        messages = peer.read_until(REFUSE)
        assert refuse_text(messages) == GENERIC_REFUSAL
        assert not [m for m in messages if m[0] == HELLO], "the listener said hello to an impostor"
        assert peer.wait_closed()
    finally:
        peer.sock.close()
    wait_log(node, r"link refused", r"certificate does not name node n3", r"n9", timeout=WAIT)
    assert not matching(node, r"\[Gossip\] link up"), node.log_tail()

    # The same certificate claiming the id it names is accepted.
    peer = tls_dial(port, client_context(pki, cert, key))
    try:
        peer.prove("n9")
        messages = peer.read_until(PROOF)
        assert [parse_hello(b)["node"] for code, b in messages if code == HELLO] == ["n1"]
    finally:
        peer.sock.close()
    wait_log(node, r"\[Gossip\] link up", r"cluster\.peer=n9", timeout=WAIT)


def test_a_node_refuses_a_listener_whose_certificate_names_another_node(node_factory, tmp_path, pki):
    """The node dials its seed, a fake listener holding a CA-signed certificate for `other`
    and the secret, whose hello claims `n9`: the node refuses it when that hello arrives."""
    fake_cert, fake_key = pki.issue("fake-listener", ["other"])
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(fake_cert), str(fake_key))
    server_ctx.load_verify_locations(cafile=str(pki.ca_cert))
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server = socket.create_server((HOST, 0))
    server.settimeout(60.0)  # covers the node's start-up, then its first dial
    fake_port = server.getsockname()[1]
    outcome: dict = {}

    def fake_listener():
        try:
            conn, _ = server.accept()
            conn.settimeout(WAIT)  # bounds the TLS handshake too
            peer = LinkPeer(server_ctx.wrap_socket(conn, server_side=True))
            try:
                (_, body), = peer.read_until(HELLO)
                dialer = parse_hello(body)
                outcome["dialer"] = dialer["node"]
                listener_nonce = os.urandom(32)
                peer.send(challenge(listener_nonce))
                (_, body), = peer.read_until(PROOF)
                mac = Body(body).counted()
                outcome["proof ok"] = mac == dialer_proof(DEFAULT_SECRET, CLUSTER_NAME, dialer["node"], dialer["nonce"],
                                                          listener_nonce)
                answer = listener_proof(DEFAULT_SECRET, CLUSTER_NAME, "n9", listener_nonce, dialer["node"],
                                        dialer["nonce"])
                peer.send(hello(CLUSTER_NAME, "n9", listener_nonce, address=f"{HOST}:{fake_port}"), proof(answer))
                outcome["refusal"] = refuse_text(peer.read_until(REFUSE))
            finally:
                peer.sock.close()
        except Exception as error:  # reported by the assertions below
            outcome["error"] = repr(error)

    thread = threading.Thread(target=fake_listener, daemon=True)
    thread.start()
    try:
        cert, key = pki.issue("n1", ["n1"])
        port = free_ports(1)[0]
        secret = write_secret(tmp_path / "secret")
        node = node_factory("--cluster-host", HOST, f"--cluster-port={port}", "--cluster-advertise", f"{HOST}:{port}",
                            "--seeds", f"{HOST}:{fake_port}", "--cluster-name", CLUSTER_NAME,
                            "--cluster-secret-file", str(secret), *pki.node_args(cert, key), name="n1")
        thread.join(timeout=60.0 + 3 * WAIT)
        assert not thread.is_alive(), "the node never dialled the fake listener"
        assert "error" not in outcome, outcome
        assert outcome["dialer"] == "n1" and outcome["proof ok"], outcome
        # The dialler has said who it is: it may tell the listener why.
        assert "certificate does not name node n9" in outcome["refusal"], outcome
        wait_log(node, r"link refused", r"certificate does not name node n9", r"other", timeout=WAIT)
        assert not matching(node, r"\[Gossip\] link up"), node.log_tail()
    finally:
        server.close()
