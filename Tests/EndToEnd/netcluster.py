"""Three cluster nodes, each on a host of its own, and a client host, on one private bridge
(network namespaces, see netns.py): what the partition tests share.

Every node listens on the default ports of its own host; the client host reaches each at its
address. A node's cable is its veth port on the switch (`cut`, `mend`): pulled, the node is
alone with its loopback, so a client inside its host (`Host.inside()`) still reaches it.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

import netns
from nodes import NODE_BIN, node_environment, wait_for

CLUSTER_PORT, STOMP_PORT, WS_PORT, ADMIN_PORT = 7946, 61613, 15674, 15690


def running_hosts(tmp_path, tag: str, extra_args=(), data_dirs: bool = False):
    """For a fixture: yields (network, [n1, n2, n3], client) once every node is ready; skips
    when namespaces can't be made here. Each node logs to tmp_path/nN.log and, with
    `data_dirs`, keeps its durable log in tmp_path/nN-data. Everything (processes,
    namespaces) is removed at the end however the test went."""
    reason = netns.unavailable_reason()
    if reason:
        pytest.skip(f"partition test skipped: {reason}")
    netns.remove_stale()
    network = netns.Network(tag)
    try:
        network.start()
        nodes = [network.add_host(f"n{i}") for i in (1, 2, 3)]
        client = network.add_host("client")
        secret = tmp_path / "secret"
        secret.write_text(f"{tag}-partition-secret-0123456789")
        secret.chmod(0o600)
        seeds = ",".join(f"{host.address}:{CLUSTER_PORT}" for host in nodes)
        for index, host in enumerate(nodes, 1):
            argv = [str(NODE_BIN), "--node-id", f"n{index}", "--cluster-host", "0.0.0.0",
                    f"--cluster-port={CLUSTER_PORT}", "--cluster-advertise", f"{host.address}:{CLUSTER_PORT}",
                    "--seeds", seeds, "--cluster-name", tag, "--cluster-secret-file", str(secret),
                    f"--stomp-port={STOMP_PORT}", f"--ws-port={WS_PORT}", f"--admin-port={ADMIN_PORT}",
                    # The clients are on a host of their own.
                    "--auth-anonymous", "on", *extra_args]
            if data_dirs:
                argv += ["--data-dir", str(tmp_path / f"n{index}-data")]
            host.run(argv, env=node_environment(), log_path=tmp_path / f"n{index}.log")
        for host in nodes:
            wait_for(lambda host=host: ready(host), timeout=30, message=f"{host.name} ready")
        yield network, nodes, client
    finally:
        problems = network.close()
        assert not problems, problems


def admin_get(host, path: str):
    """GET `path` of the admin API of the node on `host` (it listens on the host's loopback):
    the decoded JSON."""
    with host.inside():
        with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN_PORT}{path}", timeout=5) as response:
            return json.loads(response.read())


def ready(host) -> bool:
    """Whether the node on `host` is ready."""
    with host.inside():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN_PORT}/readyz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False


def cable(network, host) -> str:
    """The switch's end of `host`'s veth pair."""
    return f"p{list(network.hosts.values()).index(host)}"


def cut(network, host) -> None:
    """Pulls `host`'s only cable at the switch: the others declare it dead; its links stall."""
    netns.ip("-n", network.switch, "link", "set", cable(network, host), "down")


def mend(network, host) -> None:
    netns.ip("-n", network.switch, "link", "set", cable(network, host), "up")
