"""Durable queues on one node: a `persistent:true` SEND to a /queue/ that got its RECEIPT
survives kill -9 and a restart; an acknowledged one is never delivered again; the log's
damage is told apart (a torn tail is dropped, a corrupt segment stops the node naming the
file); a full disk, `data.max-bytes` and a read-only data dir get ERRORs, not crashes.

Real processes and stomp.py over TCP and WebSocket. Each test counts by sequence number:
receipted but never delivered must be 0.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from durable import PERSISTENT, Consumer, Publisher, drain_all
from monitoring import sample_value, scrape
from nodes import Node, wait_for
from pyclient import PyClient

@pytest.fixture
def durable_node(tmp_path):
    """start(*flags) runs a node on the test's data dir (its working directory's `data`);
    calling it again after a kill starts the same node on the same data dir."""
    started: list = []

    def start(*args, name: str = "dq", expect_exit: bool = False) -> Node:
        node = Node(tmp_path / name, list(args), name)
        node.ports_file.unlink(missing_ok=True)  # the last run's, on a restart
        started.append(node)
        if expect_exit:
            return node
        return node.start()

    yield start
    problems = []
    for node in started:
        if node.proc is not None and node.proc.poll() is None:
            problems += node.stop()
        else:
            node.kill()
    assert not problems, "\n".join(problems)


def kill9(node: Node) -> None:
    node.proc.send_signal(signal.SIGKILL)
    node.proc.wait(timeout=15)
    node.log.close()


def test_receipted_messages_survive_kill_9_and_acked_ones_never_come_back(durable_node):
    node = durable_node()
    consumer = Consumer(node)
    publisher = Publisher(node)
    sender = threading.Thread(target=publisher.send, args=(3000, 50), daemon=True)
    sender.start()
    wait_for(lambda: len(publisher.receipted) >= 500 and len(consumer.acked) >= 200, 30,
             message="receipts and acks before the kill")
    kill9(node)
    sender.join(timeout=30)
    receipted, acked, ack_sent = publisher.receipted, consumer.acked, set(consumer.ack_sent)
    before = list(consumer.deliveries)
    publisher.client.drop()
    consumer.client.drop()
    print(f"before kill -9: {len(receipted)} receipted, {len(before)} delivered, {len(ack_sent)} acked, "
          f"{len(acked)} of them with their receipt")

    node = durable_node()
    after = drain_all(node, receipted - ack_sent)
    delivered_after = [s for s, _ in after.deliveries]
    lost = receipted - ack_sent - set(delivered_after)
    again = acked & set(delivered_after)
    print(f"after restart: {len(delivered_after)} delivered; receipted-but-never-delivered {len(lost)}; "
          f"acked-and-delivered-again {len(again)}")
    assert not lost, f"receipted, never acknowledged, never delivered again: {sorted(lost)[:20]}"
    assert not again, f"acknowledged with a receipt, delivered again: {sorted(again)[:20]}"
    assert len(delivered_after) == len(set(delivered_after)), "a message delivered twice after the restart"
    # Everything held before the kill may have been delivered: all of it says so.
    assert all(redelivered for _, redelivered in after.deliveries)
    after.client.close()


def test_a_graceful_restart_delivers_exactly_what_was_not_acknowledged_over_websocket(durable_node):
    node = durable_node()
    publisher = Publisher(node, "ws")
    publisher.send(300)
    publisher.wait_all()
    consumer = Consumer(node, "ws", ack=False)
    consumer.wait_count(300)
    for frame in list(consumer.client.rec.messages)[:100]:
        consumer.client.ack(frame)
    publisher.client.close()
    consumer.client.close()
    node.signal(signal.SIGTERM)
    assert node.wait(15) == 0
    node.log.close()

    node = durable_node()
    after = drain_all(node, set(range(100, 300)), "ws")
    assert sorted(s for s, _ in after.deliveries) == list(range(100, 300))
    after.client.close()


def test_a_disconnect_receipt_vouches_for_the_persistent_sends_before_it(durable_node):
    node = durable_node()
    client = PyClient.for_node(node, "tcp", "1.2")
    for i in range(200):
        client.conn.send("/queue/durable", str(i), headers=PERSISTENT)
    client.conn.disconnect(receipt="bye")
    client.rec.wait(lambda: "bye" in client.rec.receipts, 15, "the DISCONNECT's receipt")
    kill9(node)
    node = durable_node()
    after = drain_all(node, set(range(200)))
    assert sorted(s for s, _ in after.deliveries) == list(range(200))
    after.client.close()


def newest_segment(node: Node) -> Path:
    return sorted((node.workdir / "data").glob("*.wal"))[-1]


def test_a_torn_last_record_is_dropped_and_the_rest_served(durable_node):
    node = durable_node()
    publisher = Publisher(node)
    publisher.send(50)
    publisher.wait_all()
    kill9(node)
    with open(newest_segment(node), "ab") as segment:
        # A batch that never reached the disk whole: a length and a CRC, then half a body.
        segment.write(b"\x00\x00\x01\x00\xde\xad\xbe\xef\x01partial")
    node = durable_node()
    after = drain_all(node, set(range(50)))
    assert sorted(s for s, _ in after.deliveries) == list(range(50))
    after.client.close()


def test_a_corrupt_segment_stops_the_node_naming_the_file(durable_node):
    node = durable_node()
    publisher = Publisher(node)
    publisher.send(100)
    publisher.wait_all()
    publisher.client.close()
    node.signal(signal.SIGTERM)
    assert node.wait(15) == 0
    node.log.close()
    segment = newest_segment(node)
    data = bytearray(segment.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside a record well before the end
    segment.write_bytes(bytes(data))

    node = durable_node(expect_exit=True)
    with pytest.raises(BaseException):
        node.start()  # fails the test's start: the node exits
    assert node.proc.wait(timeout=15) != 0
    log = node.log_path.read_text(errors="replace")
    assert str(segment.name) in log and "corrupt" in log, log[-2000:]


def mount_tmpfs(path: Path, *options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(path)],
                            capture_output=True)
    return result.returncode == 0


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def tmpfs(tmp_path):
    mounted: list = []

    def make(name: str, *options: str) -> Path:
        path = tmp_path / name
        if not mount_tmpfs(path, *options):
            pytest.skip("mounting a tmpfs needs root")
        mounted.append(path)
        return path

    yield make
    for path in mounted:
        unmount(path)


def persistent_refusal(node: Node, body: str = "x") -> str:
    """A persistent SEND with a receipt: the ERROR's message and body, or "" on RECEIPT."""
    client = PyClient.for_node(node, "tcp", "1.2")
    client.conn.send("/queue/durable", body, headers={**PERSISTENT, "receipt": "r"})
    client.rec.wait(lambda: "r" in client.rec.receipts or client.rec.errors, 15, "RECEIPT or ERROR")
    errors = list(client.rec.errors)
    client.drop()
    return (errors[0].headers.get("message", "") + " / " + errors[0].body) if errors else ""


def test_a_read_only_data_dir_refuses_persistent_sends_and_serves_the_rest(durable_node, tmpfs):
    data = tmpfs("ro-data", "ro", "size=1m")
    node = durable_node("--data-dir", str(data))
    refusal = persistent_refusal(node)
    assert "durable queues unavailable" in refusal and str(data) in refusal, refusal
    client = PyClient.for_node(node, "tcp", "1.2")
    client.subscribe("/queue/plain", "s")
    client.send("/queue/plain", "in memory", receipt=True)
    assert client.wait_messages(1)[0].body == "in memory"
    client.close()


def test_a_full_disk_refuses_persistent_sends_until_space_returns(durable_node, tmpfs):
    data = tmpfs("small-data", "size=16m")
    node = durable_node("--data-dir", str(data), "--data-min-free-bytes", str(4 << 20),
                        "--data-segment-bytes", str(1 << 20))
    assert persistent_refusal(node, "fits") == ""
    filler = data / "filler"
    with open(filler, "wb") as f:
        try:
            f.write(b"\0" * (13 << 20))
        except OSError:
            pass
    time.sleep(1.5)  # the node looks at the free space once a second
    refusal = wait_for(lambda: persistent_refusal(node), 10, message="a disk_full ERROR")
    assert "disk full" in refusal and "data.min-free-bytes" in refusal, refusal
    # Non-persistent messages go on.
    client = PyClient.for_node(node, "tcp", "1.2")
    client.send("/queue/plain", "in memory", receipt=True)
    client.close()
    filler.unlink()
    wait_for(lambda: persistent_refusal(node, "again") == "", 10, interval=0.5,
             message="persistent SENDs accepted again")


def test_data_max_bytes_refuses_persistent_sends_until_consumers_catch_up(durable_node):
    node = durable_node("--data-max-bytes", str(1 << 20), "--data-segment-bytes", str(64 << 10))
    body = "y" * 4000
    client = PyClient.for_node(node, "tcp", "1.2")
    stored = 0
    for i in range(1000):
        client.conn.send("/queue/full", body, headers={**PERSISTENT, "receipt": f"f-{i}"})
        client.rec.wait(lambda: f"f-{i}" in client.rec.receipts or client.rec.errors, 15, "receipt")
        if client.rec.errors:
            break
        stored += 1
    assert client.rec.errors, "1000 messages of 4 kB fit in a 1 MiB log"
    error = client.rec.errors[0]
    assert error.headers.get("message") == "durable log full" and "data.max-bytes" in error.body, error
    client.drop()
    # Consume and acknowledge everything: compaction gives the segments back.
    consumer = PyClient.for_node(node, "tcp", "1.2")
    taken = []

    class Acker:
        def on_message(self, frame):
            taken.append(frame)
            consumer.conn.ack(frame.headers["ack"])

    consumer.conn.set_listener("acker", Acker())
    consumer.subscribe("/queue/full", "s", ack="client-individual")
    try:
        wait_for(lambda: len(taken) >= stored, 30)
    except AssertionError:
        raise AssertionError(f"{len(taken)} of the {stored} stored messages consumed; errors "
                             f"{[(e.headers.get('message'), e.body) for e in consumer.rec.errors]}") from None
    wait_for(lambda: persistent_refusal(node) == "", 15, interval=0.5, message="room in the log again")
    consumer.close()


def test_a_publisher_pauses_at_its_durable_writes_in_flight_and_resumes(durable_node):
    # Thousands of persistent SENDs sent without waiting for a single receipt: the node stops
    # reading the publisher at 8 writes waiting for their quorum and reads on as they end, so
    # every one of them still gets its RECEIPT.
    node = durable_node("--max-durable-writes-in-flight", "8")
    publisher = Publisher(node)
    publisher.send(3000)
    publisher.wait_all(60)
    assert len(publisher.receipted) == 3000
    assert sample_value(scrape(node.admin_url, None), "stomp_durable_write_pauses_total") >= 1
    assert 'node_limit{name="limits.durable-writes-in-flight"} 8' in scrape(node.admin_url, None)
    publisher.client.close()
    drained = drain_all(node, set(range(3000)))
    assert len(drained.deliveries) == 3000
    drained.client.close()
