"""Who may connect, read and write: a users file with scrypt hashes (made by
`cluster-node hash-password`), anonymous clients from loopback only by default, every
SUBSCRIBE and SEND checked against the user's patterns, reloads on SIGHUP and through the
admin API that apply to connected clients at their next frame. Driven with stomp.py over TCP
and WebSocket."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.request

import pytest

from nodes import NODE_BIN, node_environment, wait_for
from pyclient import PyClient
from stomp_raw import StompClient

TRANSPORTS = ("tcp", "ws")


def hashed(password: str) -> str:
    result = subprocess.run([str(NODE_BIN), "hash-password"], input=password + "\n", capture_output=True, text=True,
                            timeout=60, env=node_environment(), check=True)
    return result.stdout.strip()


@pytest.fixture(scope="module")
def hashes():
    return {"alice": hashed("alice-pw"), "bob": hashed("bob-pw")}


def write_users(path, hashes, alice_read=("/topic/prices.#", "/queue/jobs")):
    path.write_text(json.dumps({"users": [
        {"login": "alice", "password": hashes["alice"], "read": list(alice_read), "write": ["/queue/jobs"]},
        {"login": "bob", "password": hashes["bob"], "read": ["/topic/#"], "write": ["/topic/prices.#"]},
    ]}))


@pytest.fixture
def users_node(node_factory, tmp_path, hashes):
    users = tmp_path / "users.json"
    write_users(users, hashes)
    node = node_factory("--auth-users-file", str(users), "--auth-anonymous", "off", name="auth")
    node.users_file = users
    return node


def client(node, transport, login=None, passcode=None, connect=True):
    return PyClient.for_node(node, transport, "1.2", login=login, passcode=passcode, connect=connect)


def refused(node, transport, login=None, passcode=None) -> str:
    return client(node, transport, login, passcode, connect=False).refusal()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_good_and_bad_passwords_and_unknown_users(users_node, transport):
    alice = client(users_node, transport, "alice", "alice-pw")
    alice.conn.disconnect()
    for login, passcode in (("alice", "wrong"), ("carol", "alice-pw"), ("alice", "")):
        message = refused(users_node, transport, login, passcode)
        assert message.startswith("access refused"), message
    assert "accepts no anonymous clients" in refused(users_node, transport)
    with urllib.request.urlopen(users_node.admin_url + "/metrics", timeout=10) as answer:
        metrics = answer.read().decode()
    for reason in ("bad_password", "unknown_user", "anonymous_refused"):
        match = re.search(r'stomp_auth_failures_total\{reason="' + reason + r'"\} (\d+)', metrics)
        assert match and int(match.group(1)) >= 1, reason


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_each_frame_is_held_to_the_users_patterns(users_node, transport):
    alice = client(users_node, transport, "alice", "alice-pw")
    alice.subscribe("/topic/prices.*", "ok")            # under /topic/prices.#
    alice.subscribe("/queue/jobs", "jobs")
    alice.send("/queue/jobs", "work", receipt=True)
    alice.rec.wait(lambda: alice.rec.bodies("/queue/jobs") == ["work"], what="the job")
    alice.conn.subscribe("/topic/#", id="too-wide")     # /topic/# reaches beyond prices.#
    alice.rec.wait(lambda: alice.rec.errors, what="ERROR for /topic/#")
    error = alice.rec.errors[0]
    assert error.headers["message"] == "access denied"
    assert "user 'alice' may not read from /topic/#" in error.body

    bob = client(users_node, transport, "bob", "bob-pw")
    bob.conn.send("/queue/jobs", "not bob's")
    bob.rec.wait(lambda: bob.rec.errors, what="ERROR for the SEND")
    assert "user 'bob' may not write to /queue/jobs" in bob.rec.errors[0].body

    with urllib.request.urlopen(users_node.admin_url + "/metrics", timeout=10) as answer:
        metrics = answer.read().decode()
    def count(series):
        match = re.search(re.escape(series) + r" (\d+)", metrics)
        return int(match.group(1)) if match else 0

    assert count('stomp_access_denied_total{action="subscribe"}') >= 1
    assert count('stomp_access_denied_total{action="send"}') >= 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_reply_to_must_be_writable_by_the_requester(users_node, transport):
    """A service answering with wider rights must not write where its caller may not."""
    alice = client(users_node, transport, "alice", "alice-pw")
    alice.send("/queue/jobs", "reply to jobs", headers={"reply-to": "/queue/jobs"}, receipt=True)
    alice.conn.send("/queue/jobs", "reply to prices", headers={"reply-to": "/topic/prices.eur"})
    alice.rec.wait(lambda: alice.rec.errors, what="ERROR for the reply-to")
    assert alice.rec.errors[0].headers["message"] == "access denied"
    assert "user 'alice' may not name /topic/prices.eur as reply-to" in alice.rec.errors[0].body


def test_anonymous_clients_come_from_loopback_by_default(node_factory):
    node = node_factory(name="anon")   # no users file: as `make run`
    c = client(node, "tcp")
    c.subscribe("/topic/#", "all")    # anonymous may read and write everything
    c.send("/topic/a", "x", receipt=True)
    c.conn.disconnect()
    # Without a users file a login is nobody's: RabbitMQ habits (guest/guest) still get in.
    client(node, "ws", "guest", "guest").conn.disconnect()


def test_reloads_apply_to_connected_clients_at_their_next_frame(users_node, hashes):
    alice = client(users_node, "tcp", "alice", "alice-pw")
    # Widen alice's read permission and reload with SIGHUP, while she stays connected.
    write_users(users_node.users_file, hashes, alice_read=("/topic/#",))
    users_node.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "credentials reloaded" in users_node.log_tail(), timeout=10, message="reload logged")
    alice.subscribe("/topic/#", "now-allowed")

    # Through the admin API, a broken file keeps the users there were.
    users_node.users_file.write_text("{not json")
    request = urllib.request.Request(users_node.admin_url + "/v1/auth/reload", method="POST")
    with pytest.raises(urllib.error.HTTPError) as failed:
        urllib.request.urlopen(request, timeout=10)
    assert failed.value.code == 422
    assert "the users and keys before stay" in failed.value.read().decode()
    alice.subscribe("/topic/x.*", "still-allowed")
    client(users_node, "ws", "bob", "bob-pw").conn.disconnect()

    # A user removed is let go at the next frame.
    users_node.users_file.write_text(json.dumps({"users": [{"login": "bob", "password": hashes["bob"]}]}))
    with urllib.request.urlopen(urllib.request.Request(users_node.admin_url + "/v1/auth/reload", method="POST"), timeout=10) as answer:
        assert json.loads(answer.read())["status"] == "1 user(s), 0 token key(s)"
    alice.conn.send("/queue/jobs", "after removal")
    alice.rec.wait(lambda: alice.rec.errors, what="ERROR after the user was removed")
    assert alice.rec.errors[0].headers["message"] == "access revoked"


def test_a_broken_users_file_stops_the_node_at_start(tmp_path):
    users = tmp_path / "users.json"
    users.write_text(json.dumps({"users": [{"login": "a", "password": "plain-text"}]}))
    result = subprocess.run([str(NODE_BIN), "--auth-users-file", str(users), "--ws-port=-1", "--stomp-port=-1", "--admin-port=-1"],
                            capture_output=True, text=True, timeout=30, env=node_environment())
    assert result.returncode != 0
    assert "user 1 (a): password: not a PHC scrypt string" in result.stderr


def test_an_address_that_keeps_failing_is_refused_at_once(node_factory, tmp_path, hashes):
    users = tmp_path / "users.json"
    write_users(users, hashes)
    node = node_factory("--auth-users-file", str(users), "--auth-failure-delay-ms", "0", name="throttle")
    for _ in range(10):
        assert refused(node, "tcp", "alice", "guess").startswith("access refused")
    # The eleventh try in the minute isn't even checked, and the right password waits too.
    assert "Too many failed logins from this address" in refused(node, "tcp", "alice", "guess")
    assert "Too many failed logins from this address" in refused(node, "ws", "alice", "alice-pw")


def test_logins_beyond_the_pending_bound_are_told_the_server_is_busy(node_factory, tmp_path, hashes):
    """Every password costs a scrypt hash on a worker thread: with limits.pending-logins=1, a
    burst of right logins gets CONNECTED for those checked and ERROR 'server busy' (naming
    the setting) for the rest, and the node serves on."""
    users = tmp_path / "users.json"
    write_users(users, hashes)
    node = node_factory("--auth-users-file", str(users), "--max-pending-logins", "1",
                        "--auth-failure-delay-ms", "0", name="busy")
    burst = [StompClient.open(node, "tcp") for _ in range(20)]
    for raw in burst:
        raw.send_frame("CONNECT", {"accept-version": "1.2", "host": "/", "login": "alice", "passcode": "alice-pw"})
    answers = [raw.recv_frame() for raw in burst]
    for raw in burst:
        raw.close()
    busy = [frame for frame in answers if frame.command == "ERROR"]
    assert busy and all(frame.header("message") == "server busy" for frame in busy), answers
    assert "limits.pending-logins" in busy[0].text
    assert any(frame.command == "CONNECTED" for frame in answers), answers
    alice = client(node, "ws", "alice", "alice-pw")
    alice.conn.disconnect()
    with urllib.request.urlopen(node.admin_url + "/metrics", timeout=10) as answer:
        metrics = answer.read().decode()
    assert re.search(r'stomp_auth_failures_total\{reason="busy"\} [1-9]', metrics), metrics
    assert 'node_limit{name="limits.pending-logins"} 1' in metrics


def test_permissions_hold_across_the_cluster(tmp_path, hashes):
    """A subscription is checked on its own node; what another node forwards reaches only
    subscriptions that were allowed there."""
    from cluster import Cluster
    users = tmp_path / "users.json"
    write_users(users, hashes)
    pair = Cluster(tmp_path / "pair", size=2, seeds="all", extra_args=["--auth-users-file", str(users), "--auth-anonymous", "off"])
    try:
        pair.start()
        alice = client(pair["n2"], "ws", "alice", "alice-pw")
        alice.subscribe("/topic/prices.*", "prices")          # allowed on n2, so n1 forwards to it
        too_wide = client(pair["n2"], "tcp", "alice", "alice-pw")
        too_wide.conn.subscribe("/topic/#", id="all")       # refused on n2: nothing of n1's reaches it
        too_wide.rec.wait(lambda: too_wide.rec.errors, what="ERROR for /topic/#")

        feed = client(pair["n1"], "tcp", "bob", "bob-pw")      # bob may write /topic/prices.#
        feed.send("/topic/prices.eur", "1.08", receipt=True)
        alice.rec.wait(lambda: alice.rec.bodies() == ["1.08"], what="the forwarded price")
        assert too_wide.rec.errors[0].headers["message"] == "access denied"
        assert not too_wide.rec.messages
        for c in (alice, feed):
            c.conn.disconnect()
    finally:
        problems = pair.stop()
    assert not problems, problems
