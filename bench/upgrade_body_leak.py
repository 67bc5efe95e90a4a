#!/usr/bin/env python3
"""Reproduces the open FuzzWebSocket finding against a real release node: connections that
send an upgrade request declaring a body (Content-Length) that never comes, closed by the
upgrade deadline. Prints RSS before and after 3,000 of them.

    python3 bench/upgrade_body_leak.py Fuzz/Open/FuzzWebSocket/upgrade-request-only
"""
import socket, subprocess, time, json, os, sys
node = subprocess.Popen([str(__import__("pathlib").Path(__file__).resolve().parents[1] / ".build" / "release" / "cluster-node"), "--host", "127.0.0.1", "--ws-port", "0", "--stomp-port=-1", "--admin-port=-1",
                         "--ports-file", "/tmp/upleak.ports", "--upgrade-timeout-ms", "200", "--log-level", "error"], env={"PATH": "/usr/bin:/bin"})
while not os.path.exists("/tmp/upleak.ports"): time.sleep(0.05)
port = json.load(open("/tmp/upleak.ports"))["ws"]
req = open(sys.argv[1], "rb").read()
def rss(): return int(open(f"/proc/{node.pid}/status").read().split("VmRSS:")[1].split()[0]) / 1024
def burst(n):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port)); s.sendall(req); socks.append(s)
        if len(socks) >= 200:
            time.sleep(0.4)
            for x in socks: x.close()
            socks = []
    time.sleep(0.5)
    for x in socks: x.close()
    time.sleep(1)
burst(500); base = rss()
burst(3000); after = rss()
print(f"RSS after warm-up {base:.1f} MB, after 3000 more {after:.1f} MB: +{after-base:.1f} MB")
node.terminate(); node.wait(); os.remove("/tmp/upleak.ports")
