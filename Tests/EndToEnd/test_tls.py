"""wss:// and STOMP over TLS, with a throwaway self-signed certificate (see conftest.tls_cert)."""

from __future__ import annotations

import ssl

import pytest

from pyclient import PyClient
from stomp_raw import StompClient, round_trip, unique


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory, tls_cert):
    from nodes import _start

    cert, key = tls_cert
    n = _start(tmp_path_factory.mktemp("tls-node"), "tls-node",
               ["--tls-cert", str(cert), "--tls-key", str(key), "--wss-port", "0", "--stomps-port", "0"])
    yield n
    problems = n.stop()
    assert not problems, "\n".join(problems)


@pytest.fixture
def ctx(tls_cert):
    cert, _ = tls_cert
    c = ssl.create_default_context(cafile=str(cert))  # verifies the chain and the host name
    return c


def test_ports_file_reports_tls_listeners(tls_node):
    for key in ("ws", "stomp", "wss", "stomps"):
        assert key in tls_node.ports, tls_node.ports
    assert len({tls_node.ws_port, tls_node.stomp_port, tls_node.wss_port, tls_node.stomps_port}) == 4


@pytest.mark.parametrize("server_name", ["127.0.0.1", "localhost"])
def test_stomp_over_tls_round_trip(tls_node, ctx, server_name):
    with StompClient.tcp(tls_node.host, tls_node.stomps_port, tls_context=ctx,
                         server_hostname=server_name) as c:
        assert c.t.sock.version() is not None  # a TLS session is up
        c.connect()
        dest = f"/topic/{unique('stomps')}"
        c.subscribe(dest)
        round_trip(c, dest)
        c.disconnect()


def test_wss_round_trip(tls_node, ctx):
    with StompClient.ws(tls_node.wss_url, tls_context=ctx) as c:
        assert c.t.subprotocol == "v12.stomp"
        c.connect()
        dest = f"/queue/{unique('wss')}"
        c.subscribe(dest)
        round_trip(c, dest)
        c.disconnect()


def test_messages_cross_between_tls_and_plain_listeners(tls_node, ctx):
    dest = f"/topic/{unique('mixed')}"
    subs = [
        StompClient.tcp(tls_node.host, tls_node.stomps_port, tls_context=ctx),
        StompClient.ws(tls_node.wss_url, tls_context=ctx),
        StompClient.tcp(tls_node.host, tls_node.stomp_port),
        StompClient.ws(tls_node.ws_url),
    ]
    try:
        for s in subs:
            s.connect()
            s.subscribe(dest)
        for i, pub in enumerate(subs):
            pub.send(dest, f"from-{i}", receipt=True)
        for s in subs:
            got = [m.body.decode() for m in s.messages(len(subs))]
            assert sorted(got) == sorted(f"from-{i}" for i in range(len(subs)))
    finally:
        for s in subs:
            s.close()


def test_untrusted_client_sees_certificate_error(tls_node):
    """Sanity check of the setup: the default trust store does not know our throwaway CA."""
    with pytest.raises(ssl.SSLCertVerificationError):
        StompClient.tcp(tls_node.host, tls_node.stomps_port, tls_context=ssl.create_default_context())


def test_plain_stomp_on_tls_port_does_not_hang(tls_node):
    """A client speaking plain STOMP to the TLS port gets an error or a close, within a bound."""
    import socket
    with socket.create_connection((tls_node.host, tls_node.stomps_port), timeout=10) as s:
        s.sendall(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\x00")
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass
        except TimeoutError:
            pytest.fail("TLS listener neither failed the handshake nor closed within 10s")


@pytest.mark.parametrize("transport", ["tcp", "ws"])
def test_stomp_py_over_tls(tls_node, tls_cert, transport):
    cert, _ = tls_cert
    port = tls_node.stomps_port if transport == "tcp" else tls_node.wss_port
    c = PyClient(tls_node.host, port, transport, "1.2", ssl_ca=str(cert))
    try:
        dest = f"/topic/{unique('pytls')}"
        c.subscribe(dest, "s")
        c.send(dest, "secret", receipt=True)
        (m,) = c.wait_messages(1)
        assert m.body == "secret"
    finally:
        c.close()


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_tls_before_1_2_is_refused(tls_node, tls_cert, version):
    """TLS 1.0 and 1.1 are deprecated (RFC 8996): the handshake fails, 1.2 and 1.3 work."""
    cert, _ = tls_cert
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(cafile=str(cert))
    # Python's OpenSSL won't offer these versions at its default security level.
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    old.minimum_version = old.maximum_version = getattr(ssl.TLSVersion, version)
    import socket
    with socket.create_connection(("127.0.0.1", tls_node.stomps_port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError) as refused:
            with old.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"CONNECT\naccept-version:1.2\n\n\x00")
                tls.recv(1)
    # The server's alert, not the client's own refusal to offer an old version.
    assert "PROTOCOL_VERSION" in str(refused.value).upper(), refused.value

    for modern in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.minimum_version = ctx.maximum_version = modern
        with StompClient.tcp(tls_node.host, tls_node.stomps_port, tls_context=ctx, server_hostname="localhost") as client:
            assert client.t.sock.version() == modern.name.replace("_", ".")
            assert client.connect().command == "CONNECTED"
