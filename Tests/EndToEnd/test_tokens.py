"""JWT passcodes, as a web application's backend hands them to browsers: tokens made with
PyJWT, signed with HS256, RS256 and ES256 keys from a JSON Web Key Set (`--auth-jwt-keys`),
each checked for its key, signature, exp/nbf, audience and scope, and a connection that ends
when its token does. Driven with stomp.py over TCP and WebSocket."""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
import urllib.error
import urllib.request

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from pyclient import PyClient

TRANSPORTS = ("tcp", "ws")
AUDIENCE = "stomp-broker"
PRICES = "stomp.read:/topic/prices.# stomp.write:/topic/prices.#"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Keys:
    """Signing keys and the public key set a node is given."""

    def __init__(self):
        self.hmac = secrets.token_bytes(32)
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())

    def jwks(self, rsa_kid="rs", include_rsa=True) -> dict:
        keys = [{"kty": "oct", "kid": "hs", "alg": "HS256", "k": b64url(self.hmac)}]
        if include_rsa:
            keys.append({**json.loads(RSAAlgorithm.to_jwk(self.rsa.public_key())), "kid": rsa_kid, "use": "sig"})
        keys.append({**json.loads(ECAlgorithm.to_jwk(self.ec.public_key())), "kid": "es"})
        return {"keys": keys}

    def sign(self, claims: dict, alg: str = "HS256", kid: str | None = None) -> str:
        key, default_kid = {"HS256": (self.hmac, "hs"), "RS256": (self.rsa, "rs"), "ES256": (self.ec, "es")}[alg]
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid or default_kid})


def claims(scope=PRICES, lifetime=300, **extra) -> dict:
    now = int(time.time())
    return {"sub": "web-user-7", "aud": AUDIENCE, "iat": now, "exp": now + lifetime, "scope": scope, **extra}


@pytest.fixture(scope="module")
def keys():
    return Keys()


@pytest.fixture
def token_node(node_factory, tmp_path, keys):
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(keys.jwks()))
    node = node_factory("--auth-jwt-keys", str(jwks), "--auth-jwt-audience", AUDIENCE, "--auth-anonymous", "off",
                        "--auth-failure-delay-ms", "0", name="tokens")
    node.jwks = jwks
    return node


def client(node, transport, token, login=None, connect=True):
    return PyClient.for_node(node, transport, "1.2", login=login, passcode=token, connect=connect)


def refusal(node, transport, token) -> str:
    return client(node, transport, token, connect=False).refusal()


def metric(node, series: str) -> int:
    with urllib.request.urlopen(node.admin_url + "/metrics", timeout=10) as answer:
        match = re.search(re.escape(series) + r" (\d+)", answer.read().decode())
    return int(match.group(1)) if match else 0


@pytest.mark.parametrize("alg", ("HS256", "RS256", "ES256"))
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_token_from_each_kind_of_key_lets_its_holder_in(token_node, keys, alg, transport):
    c = client(token_node, transport, keys.sign(claims(), alg))
    c.subscribe("/topic/prices.*", "prices")
    c.send("/topic/prices.eur", "1.08", receipt=True)
    c.rec.wait(lambda: c.rec.bodies() == ["1.08"], what="the price")
    c.conn.disconnect()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_scope_claim_gives_the_permissions(token_node, keys, transport):
    # The list form, another application's scopes beside ours, and a login that is ignored.
    scope = ["openid", "other.read:/topic/#", "stomp.read:/queue/jobs", "stomp.write:/queue/jobs"]
    c = client(token_node, transport, keys.sign(claims(scope=scope), "RS256"), login="whoever")
    c.subscribe("/queue/jobs", "jobs")
    c.send("/queue/jobs", "work", receipt=True)
    c.rec.wait(lambda: c.rec.bodies("/queue/jobs") == ["work"], what="the job")
    c.conn.subscribe("/topic/#", id="not-granted")
    c.rec.wait(lambda: c.rec.errors, what="ERROR for /topic/#")
    assert c.rec.errors[0].headers["message"] == "access denied"
    assert "user 'web-user-7' may not read from /topic/#" in c.rec.errors[0].body

    narrow = client(token_node, transport, keys.sign(claims(), "ES256"))
    narrow.conn.send("/topic/news", "not granted")
    narrow.rec.wait(lambda: narrow.rec.errors, what="ERROR for the SEND")
    assert "may not write to /topic/news" in narrow.rec.errors[0].body


def bad_tokens(keys) -> dict:
    """Each kind of token a node must refuse, with what its ERROR says."""
    now = int(time.time())
    unsigned = b64url(b'{"alg":"none","typ":"JWT","kid":"hs"}') + "." + b64url(json.dumps(claims()).encode()) + "."
    rsa_public_pem = keys.rsa.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {
        "expired": (keys.sign(claims(exp=now - 120)), "The token has expired."),
        "not yet valid": (keys.sign(claims(nbf=now + 600)), "not valid yet"),
        "wrong audience": (keys.sign(claims(aud="another-service")), "not meant for this broker"),
        "no audience": (keys.sign({k: v for k, v in claims().items() if k != "aud"}), "not meant for this broker"),
        "wrong key": (Keys().sign(claims()), "signature does not verify"),
        "unknown kid": (keys.sign(claims(), kid="retired"), "not one of this node's"),
        "alg none": (unsigned, "not signed (alg none)"),
        # The RSA public key used as an HMAC secret: the classic algorithm confusion.
        "alg confusion": (confused_token(rsa_public_pem), "does not go with its key"),
        "no expiry": (keys.sign({k: v for k, v in claims().items() if k != "exp"}), "no expiry (exp)"),
        "bad scope": (keys.sign(claims(scope="stomp.read:/elsewhere/x")), "not a destination pattern"),
        "garbage": ("eyJ.eyJ.sig", "not a well-formed JWT"),
    }


BAD_TOKENS = ("expired", "not yet valid", "wrong audience", "no audience", "wrong key", "unknown kid", "alg none",
              "alg confusion", "no expiry", "bad scope", "garbage")


@pytest.mark.parametrize("case", BAD_TOKENS)
def test_a_bad_token_is_refused_with_what_is_wrong(token_node, keys, case):
    token, expected = bad_tokens(keys)[case]
    message = refusal(token_node, "ws", token)
    assert message.startswith("access refused"), message
    assert expected in message, message
    # The node logs why, never the token.
    signature = token.split(".")[-1]
    if len(signature) >= 16:
        assert signature not in token_node.log_tail()
    assert token.split(".")[1] not in token_node.log_tail()


def test_refused_tokens_are_counted_by_reason(token_node, keys):
    cases = bad_tokens(keys)
    for case, reason in (("garbage", "token_invalid"), ("expired", "token_expired"), ("not yet valid", "token_not_yet_valid"),
                         ("wrong audience", "token_wrong_audience"), ("no expiry", "token_unusable")):
        refusal(token_node, "tcp", cases[case][0])
        assert metric(token_node, f'stomp_auth_failures_total{{reason="{reason}"}}') == 1, reason


def confused_token(hmac_secret: bytes) -> str:
    """An HS256 token whose HMAC key is the RSA key's public PEM, naming the RSA key's kid.
    (PyJWT itself refuses to make one, so it is put together by hand.)"""
    import hashlib
    import hmac
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rs"}).encode())
    body = b64url(json.dumps(claims()).encode())
    mac = hmac.new(hmac_secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(mac)}"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_connection_ends_when_its_token_expires(node_factory, tmp_path, keys, transport):
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(keys.jwks()))
    node = node_factory("--auth-jwt-keys", str(jwks), "--auth-jwt-leeway-ms", "0", "--auth-anonymous", "off", name="expiry")
    c = client(node, transport, keys.sign(claims(lifetime=3)))
    c.subscribe("/topic/prices.*", "prices")
    error = c.rec.wait(lambda: c.rec.errors, timeout=15, what="ERROR at the token's expiry")[0]
    assert error.headers["message"] == "credentials expired"
    assert "connect again with a fresh one" in error.body
    c.rec.wait(lambda: c.rec.disconnected, timeout=10, what="the close after the ERROR")
    assert metric(node, 'stomp_frame_errors_total{kind="credentials_expired"}') >= 1


def test_keys_are_rotated_by_a_reload(token_node, keys):
    old_rsa = keys.sign(claims(), "RS256")
    client(token_node, "tcp", old_rsa).conn.disconnect()
    # The RSA key gets a new kid: tokens naming the old one are refused from now on, and
    # connected clients keep their connection until their token expires.
    staying = client(token_node, "ws", old_rsa)
    token_node.jwks.write_text(json.dumps(keys.jwks(rsa_kid="rs-2026")))
    request = urllib.request.Request(token_node.admin_url + "/v1/auth/reload", method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.loads(answer.read())["status"] == "0 user(s), 3 token key(s)"
    assert "not one of this node's" in refusal(token_node, "tcp", old_rsa)
    client(token_node, "tcp", keys.sign(claims(), "RS256", kid="rs-2026")).conn.disconnect()
    staying.send("/topic/prices.usd", "still here", receipt=True)

    # A broken key set keeps the keys there were.
    token_node.jwks.write_text(json.dumps({"keys": [{"kty": "oct", "kid": "short", "k": b64url(b"too short")}]}))
    with pytest.raises(urllib.error.HTTPError) as failed:
        urllib.request.urlopen(urllib.request.Request(token_node.admin_url + "/v1/auth/reload", method="POST"), timeout=10)
    assert failed.value.code == 422
    assert "at least 32 bytes" in failed.value.read().decode()
    client(token_node, "tcp", keys.sign(claims(), "HS256")).conn.disconnect()


def test_passwords_and_tokens_together(node_factory, tmp_path, keys):
    from test_auth import hashed
    users = tmp_path / "users.json"
    users.write_text(json.dumps({"users": [{"login": "ops", "password": hashed("ops-pw"), "read": ["/topic/#"], "write": []}]}))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(keys.jwks()))
    node = node_factory("--auth-users-file", str(users), "--auth-jwt-keys", str(jwks), "--auth-anonymous", "off", name="both")
    ops = client(node, "tcp", "ops-pw", login="ops")
    ops.subscribe("/topic/#", "all")
    web = client(node, "ws", keys.sign(claims(aud="anything")))   # no audience configured here
    web.send("/topic/prices.chf", "0.97", receipt=True)
    ops.rec.wait(lambda: ops.rec.bodies() == ["0.97"], what="the price")
    assert "clients accepted" in node.log_tail()
    assert "tokens signed by 3 key(s)" in node.log_tail()


def test_a_broken_key_set_stops_the_node_at_start(tmp_path):
    import subprocess
    from nodes import NODE_BIN, node_environment
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{"kty": "oct", "k": b64url(secrets.token_bytes(32))},
                                         {"kty": "oct", "kid": "b", "k": b64url(secrets.token_bytes(32))}]}))
    result = subprocess.run([str(NODE_BIN), "--auth-jwt-keys", str(jwks), "--ws-port=-1", "--stomp-port=-1", "--admin-port=-1"],
                            capture_output=True, text=True, timeout=30, env=node_environment())
    assert result.returncode != 0
    assert "a set of several keys needs a \"kid\" on each" in result.stderr
