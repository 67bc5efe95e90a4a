"""A real browser: Debian's Chromium, headless, speaks STOMP 1.2 over WebSocket to the nodes.

The test serves browser/stomp-page.html from a small HTTP server of its own on 127.0.0.1;
the page's JavaScript frames STOMP itself (no library), opens WebSockets with the
`v12.stomp` subprotocol, and POSTs what happened to the server's /report, which the test
reads and asserts on. Chromium runs `--headless=new --no-sandbox` (root) with every host
but 127.0.0.1 unresolvable, in a process group of its own that the test kills afterwards.

- Across a 2-node cluster: the page subscribes on node A to a topic and a queue (waiting
  for the receipts), sends to both on node B with a non-ASCII body and a header whose value
  has colons (escaped `\\c` on the wire), and receives both MESSAGEs on A.
- With stomp.py, both ways: the page subscribes on node A and receives what a stomp.py
  client publishes on node B (a UTF-8 body as a text WebSocket message, a binary body with
  NULs and invalid UTF-8 as a binary one); then it sends a binary body (every byte value) as
  a binary WebSocket message on A, which the stomp.py client receives on B byte for byte.
- Origin policy: the nodes allow only the test server's origin (`--ws-allowed-origins`);
  the same page served from another origin (a second server, another port) is refused
  (403 to the upgrade, counted in `stomp_upgrades_refused_total{reason="origin"}`).

Chromium must be installed (`apt-get install -y chromium`; `scripts/install-deps.sh --test`
does it): without it the tests fail, they are not skipped.
"""

from __future__ import annotations

import contextlib
import json
import queue
import shutil
import subprocess
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import monitoring as mon
from cluster import running_cluster
from nodes import HOST, stop_process
from pyclient import PyClient
from stomp_raw import unique

PAGE = Path(__file__).resolve().parent / "browser" / "stomp-page.html"
REPORT_TIMEOUT = 60.0  # Chromium's start on a busy 2-core machine included
BODY = "Grüße, 世界 ✓ — naïve café"
KEY = "a:b:c"  # a header value with colons: `a\cb\cc` on the wire
BINARY = bytes([0, 1, 2, 0x80, 0xFE, 0xFF]) + b"\x00 not UTF-8 \xc3\x28"  # NULs and invalid UTF-8


class PageServer:
    """Serves the test page and collects the reports it POSTs, on 127.0.0.1."""

    def __init__(self):
        self.reports: queue.Queue = queue.Queue()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if urllib.parse.urlsplit(self.path).path != "/stomp-page.html":
                    self.send_error(404)
                    return
                body = PAGE.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                server.reports.put(json.loads(data))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((HOST, 0), Handler)
        self.origin = f"http://{HOST}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, **params) -> str:
        return f"{self.origin}/stomp-page.html?{urllib.parse.urlencode(params)}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def chromium_binary() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Chromium is not installed, so the browser tests can't run: "
                    "`apt-get install -y chromium` (scripts/install-deps.sh --test does it)", pytrace=False)
    return path


def run_page(server: PageServer, tmp_path: Path, timeout: float = REPORT_TIMEOUT, **params) -> dict:
    """Open the page in headless Chromium and return the report it POSTs; Chromium and
    every process it started are killed afterwards."""
    with open_page(server, tmp_path, **params) as next_report:
        return next_report(timeout)


@contextlib.contextmanager
def open_page(server: PageServer, tmp_path: Path, **params):
    """Open the page in headless Chromium; yields `next_report(timeout)`, which returns the
    next report the page POSTs. Chromium and every process it started are killed afterwards."""
    profile = tmp_path / f"chromium-{unique('p')}"
    log_path = profile.with_suffix(".log")
    cmd = [chromium_binary(), "--headless=new", "--no-sandbox", "--disable-gpu",
           f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-extensions", "--no-proxy-server",
           # Loopback only: any other name fails to resolve.
           "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
           server.url(**params)]
    with open(log_path, "wb") as log:
        browser = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    def next_report(timeout: float = REPORT_TIMEOUT) -> dict:
        try:
            return server.reports.get(timeout=timeout)
        except queue.Empty:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
            exited = browser.poll()
            raise AssertionError(f"the page reported nothing within {timeout}s "
                                 f"(chromium {'exited ' + str(exited) if exited is not None else 'running'}):\n{tail}")

    try:
        yield next_report
    finally:
        stop_process(browser, timeout=10, group=True)


@pytest.fixture(scope="module")
def page_server():
    server = PageServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def foreign_server():
    """The same page from another origin (another port): one the nodes don't allow."""
    server = PageServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, page_server):
    root = tmp_path_factory.mktemp("browser-cluster")
    yield from running_cluster(root, size=2, extra_args=["--ws-allowed-origins", page_server.origin])


def test_browser_subscribes_on_one_node_and_receives_what_it_sends_on_the_other(cluster, page_server, tmp_path):
    topic, queue_name = f"/topic/{unique('browser')}", f"/queue/{unique('browser')}"
    report = run_page(page_server, tmp_path, mode="cluster", a=cluster[1].ws_url, b=cluster[2].ws_url,
                      topic=topic, queue=queue_name, body=BODY, key=KEY)
    print(json.dumps(report, ensure_ascii=False, indent=1))
    assert report["ok"], f"the page failed: {report.get('error')} after {report.get('steps')}"
    assert report["origin"] == page_server.origin
    assert report["subprotocols"] == ["v12.stomp", "v12.stomp"]
    assert report["versions"] == ["1.2", "1.2"]
    on_topic, on_queue = report["messages"]
    for message, destination, suffix in ((on_topic, topic, " (topic)"), (on_queue, queue_name, " (queue)")):
        expected = BODY + suffix
        assert message["body"] == expected
        assert message["bodyBytes"] == len(expected.encode()) == int(message["headers"]["content-length"])
        assert message["headers"]["destination"] == destination
        assert message["headers"]["content-type"] == "text/plain;charset=utf-8"
        # Unescaped by the page, and escaped on the wire as STOMP 1.2 says.
        assert message["headers"]["x-key"] == KEY
        assert "x-key:a\\cb\\cc" in message["rawHeaders"], message["rawHeaders"]
    # They crossed the link: n2 forwarded the topic message and handed the queue one to n1.
    text = mon.scrape(cluster[2].admin_url, None)
    assert mon.sample_value(text, "cluster_messages_forwarded_total") >= 1
    assert mon.sample_value(text, "cluster_queue_handoffs_total") >= 1


def test_browser_and_stomp_py_exchange_text_and_binary_bodies_across_nodes(cluster, page_server, tmp_path):
    a, b = cluster[1], cluster[2]
    topic, back = f"/topic/{unique('to-browser')}", f"/topic/{unique('from-browser')}"
    stomp_py = PyClient(b.host, b.stomp_port, "tcp", "1.2", auto_decode=False)
    try:
        stomp_py.subscribe(back, "back")
        with open_page(page_server, tmp_path, mode="interop", a=a.ws_url, topic=topic, back=back) as next_report:
            assert next_report() == {"stage": "subscribed"}
            stomp_py.send(topic, BODY)
            stomp_py.conn.send(topic, BINARY, headers={"content-type": "application/octet-stream"})
            report = next_report()
        print(json.dumps({**report, "received": [{**m, "bytes": len(m["bytes"])} for m in report.get("received", [])]},
                         ensure_ascii=False, indent=1))
        assert report["ok"], f"the page failed: {report.get('error')} after {report.get('steps')}"
        assert report["subprotocols"] == ["v12.stomp"] and report["versions"] == ["1.2"]
        text, binary = report["received"]
        assert bytes(text["bytes"]) == BODY.encode() and not text["binaryMessage"]
        assert bytes(binary["bytes"]) == BINARY and binary["binaryMessage"]
        assert binary["headers"]["content-type"] == "application/octet-stream"
        assert int(binary["headers"]["content-length"]) == len(BINARY)
        # The other way: the page's binary body reached stomp.py on node B byte for byte.
        stomp_py.rec.wait(lambda: any(m.headers.get("subscription") == "back" for m in stomp_py.rec.messages),
                          10.0, "the page's message on B")
        message = next(m for m in stomp_py.rec.messages if m.headers.get("subscription") == "back")
        assert message.body == bytes(range(256)), message.body[:40]
        assert message.headers["content-type"] == "application/octet-stream"
    finally:
        stomp_py.close(timeout=2.0)


def refused_upgrades(node) -> float:
    return mon.sample_value(mon.scrape(node.admin_url, None), "stomp_upgrades_refused_total", reason="origin")


def test_a_page_from_an_origin_the_node_does_not_allow_is_refused(cluster, page_server, foreign_server, tmp_path):
    node = cluster[1]
    before = refused_upgrades(node)
    report = run_page(foreign_server, tmp_path, mode="origin", a=node.ws_url)
    print(json.dumps(report, indent=1))
    assert report["origin"] == foreign_server.origin != page_server.origin
    assert report["ok"] and report["opened"] is False, report
    assert refused_upgrades(node) == before + 1
    # The same page from the allowed origin gets in.
    allowed = run_page(page_server, tmp_path, mode="origin", a=node.ws_url)
    assert allowed["ok"] and allowed["opened"] is True and allowed["command"] == "CONNECTED", allowed
