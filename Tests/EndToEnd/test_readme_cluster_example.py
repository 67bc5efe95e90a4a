"""The README's by-hand three-node cluster ("Running a cluster"), run as written: every node on
its own ports, one of them lists every member, a message crosses nodes, and `clusterctl drain
n3` through n1 drains n3 by its member name."""

from __future__ import annotations

import pytest

import readme_blocks
from nodes import wait_for
from pyclient import PyClient


@pytest.fixture(scope="module")
def by_hand(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    env = readme_blocks.environment(home)
    try:
        # The reader's shell keeps the block's exports; the test keeps the token it needs.
        script = readme_blocks.block("by-hand-example") + 'printf %s "$CLUSTERCTL_TOKEN" > clusterctl.token\n'
        output = readme_blocks.run(script, cwd=home, env=env)
        yield home, {**env, "CLUSTERCTL_TOKEN": (home / "clusterctl.token").read_text()}, output
    finally:
        readme_blocks.stop_nodes_in(home)


def test_status_through_one_node_lists_every_member(by_hand):
    _, _, output = by_hand
    for node in ("n1 (self)", "n2", "n3"):
        assert any(line.startswith(node) and " alive " in line for line in output.splitlines()), output


def test_a_message_crosses_nodes(by_hand):
    subscriber = PyClient("127.0.0.1", 61633, "tcp", "1.2")
    subscriber.subscribe("/topic/by-hand", "s", receipt=True)
    publisher = PyClient("127.0.0.1", 15674, "ws", "1.2")
    publisher.send("/topic/by-hand", "across", receipt=True)
    subscriber.rec.wait(lambda: subscriber.rec.bodies() == ["across"], what="the message from n1 on n3")
    publisher.conn.disconnect()
    subscriber.conn.disconnect()


def test_drain_by_member_name_through_another_node(by_hand):
    home, env, _ = by_hand
    readme_blocks.run("clusterctl drain n3 --node http://127.0.0.1:8222", cwd=home, env=env)
    wait_for(lambda: len(readme_blocks.nodes_in(home)) == 2, timeout=30, message="n3 to drain and exit")
