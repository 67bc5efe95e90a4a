"""Settings come from flags, CLUSTER_NODE_* environment variables and a JSON file given with
--config, in that order of precedence; invalid settings stop the node with a clear message."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from nodes import NODE_BIN
from stomp_raw import StompClient


def run_node(tmp_path: Path, *args: str, env: dict | None = None, config: dict | None = None):
    """Starts a node and returns (process, ports); the caller stops it."""
    ports_file = tmp_path / "ports.json"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTER_NODE_")}
    full_env.update(env or {})
    cmd = [str(NODE_BIN), "--ports-file", str(ports_file), *args]
    if config is not None:
        config_file = tmp_path / "node.json"
        config_file.write_text(json.dumps(config))
        cmd += ["--config", str(config_file)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env)
    return proc, ports_file


def wait_ports(proc, ports_file: Path, timeout: float = 30.0) -> dict:
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ports_file.exists():
            return json.loads(ports_file.read_text())
        if proc.poll() is not None:
            raise AssertionError(f"node exited with {proc.returncode}: {proc.stdout.read().decode()}")
        time.sleep(0.05)
    raise AssertionError("node did not start")


def stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_file_environment_and_flags_in_order_of_precedence(tmp_path):
    config = {
        "host": "127.0.0.1",
        "ws": {"port": 0},
        "stomp": {"port": 0},
        "admin": {"port": 0},
        "node": {"id": "from-file"},
        "limits": {"body-size": 10, "header-count": 5},
    }
    # The environment overrides the file's body limit; a flag overrides the file's node id.
    proc, ports_file = run_node(tmp_path, "--node-id", "from-flag", env={"CLUSTER_NODE_LIMITS_BODY_SIZE": "20"}, config=config)
    try:
        ports = wait_ports(proc, ports_file)
        with StompClient.tcp("127.0.0.1", ports["stomp"]) as client:
            connected = client.connect()
            assert connected.header("session", "").startswith("from-flag-")
            client.send_frame("SEND", {"destination": "/topic/x"}, "x" * 20)  # exactly the env's limit
            client.send_frame("SEND", {"destination": "/topic/x", "receipt": "r"}, "y")
            client.await_receipt("r")
            client.send_frame("SEND", {"destination": "/topic/x"}, "z" * 21)
            frames = client.wait_closed()
            assert frames and frames[0].command == "ERROR" and "body" in frames[0].header("message")
        with StompClient.tcp("127.0.0.1", ports["stomp"]) as client:
            client.connect()
            headers = {"destination": "/topic/x", **{f"h{i}": "v" for i in range(5)}}  # 6 headers > file's 5
            client.send_frame("SEND", headers)
            frames = client.wait_closed()
            assert frames and "headers" in frames[0].header("message")
    finally:
        stop(proc)


def test_invalid_settings_stop_the_node_with_a_message(tmp_path):
    proc, _ = run_node(tmp_path, "--ws-port", "70000", "--stomp-port", "0", "--admin-port", "0")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert b"ws.port" in out

    proc, _ = run_node(tmp_path, "--ws-port", "0", "--stomp-port", "0", "--admin-port", "0", "--cluster-secret", "short")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert b"at least 16 bytes" in out
