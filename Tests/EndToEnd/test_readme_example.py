"""The README's walk from `make run` to a locked-down three-node cluster, run as written (in a
HOME of its own, with the binaries under test first on PATH), then tried as its reader would:
the cluster formed over mutual TLS, anonymous clients are refused even from loopback, the
user it made and a token signed with the key it made get in, a message crosses nodes, and a
page from another origin can't open a WebSocket."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

import readme_blocks
from nodes import REPO
from pyclient import PyClient
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

WS_PORTS = (15674, 15684, 15694)
STOMP_PORTS = (61613, 61623, 61633)


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    directory = home / "stomp-secure"
    script = readme_blocks.block("locked-down-example").replace(
        'export PATH="$PWD/.build/release:$PATH"', 'export PATH="$PATH"', 1)
    try:
        output = readme_blocks.run(script, cwd=REPO, env=readme_blocks.environment(home))
        yield directory, output
    finally:
        readme_blocks.stop_nodes_in(directory)


def test_the_three_nodes_form_one_cluster_over_mutual_tls(walkthrough):
    directory, output = walkthrough
    for node in ("n1 (self)", "n2", "n3"):
        assert any(line.startswith(node) and " alive " in line for line in output.splitlines()), output
    for log in ("n1.log", "n2.log", "n3.log"):
        text = (directory / log).read_text()
        assert "link up" in text, text[-2000:]
        assert "anonymous clients: refused" in text


def test_its_user_and_its_tokens_get_in_and_nobody_else(walkthrough):
    directory, _ = walkthrough
    ops = PyClient("127.0.0.1", STOMP_PORTS[2], "tcp", "1.2", login="ops", passcode="change-me")
    ops.subscribe("/topic/news", "news")
    key = json.loads((directory / "jwks.json").read_text())["keys"][0]
    secret = base64.urlsafe_b64decode(key["k"] + "=" * (-len(key["k"]) % 4))
    token = jwt.encode({"sub": "user-42", "aud": "stomp-cluster", "exp": int(time.time()) + 300,
                        "scope": "stomp.write:/topic/news"}, secret, algorithm="HS256", headers={"kid": "web-2026"})
    # As the web app's page would: from its origin, with the token as passcode.
    with ws_connect(f"ws://127.0.0.1:{WS_PORTS[0]}/ws", subprotocols=["v12.stomp"], proxy=None, open_timeout=10,
                    origin="https://app.example.com") as page:
        page.send(f"CONNECT\naccept-version:1.2\nhost:/\npasscode:{token}\n\n\x00")
        assert page.recv(timeout=10).startswith("CONNECTED")
        page.send("SEND\ndestination:/topic/news\nreceipt:r\n\nhello from n1\x00")
        assert page.recv(timeout=10).startswith("RECEIPT")
    ops.rec.wait(lambda: ops.rec.bodies() == ["hello from n1"], what="the message across nodes")

    anonymous = PyClient("127.0.0.1", STOMP_PORTS[1], "tcp", "1.2", connect=False)
    errors = anonymous.try_connect()
    assert errors and errors[0].headers["message"] == "access refused", errors
    ops.conn.disconnect()


def test_pages_from_other_origins_are_refused(walkthrough):
    url = f"ws://127.0.0.1:{WS_PORTS[0]}/ws"
    with pytest.raises(InvalidStatus) as refused:
        with ws_connect(url, subprotocols=["v12.stomp"], proxy=None, open_timeout=10, origin="https://evil.example"):
            pass
    assert refused.value.response.status_code == 403
    # The site's own pages get through to CONNECT, where they still need a login.
    with ws_connect(url, subprotocols=["v12.stomp"], proxy=None, open_timeout=10, origin="https://app.example.com") as ws:
        ws.send("CONNECT\naccept-version:1.2\nhost:/\n\n\x00")
        assert ws.recv(timeout=10).startswith("ERROR")
