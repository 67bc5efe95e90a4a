#!/usr/bin/env bash
# Installs what this project needs from the system's package manager, and only what is
# missing, so that `make run` and `make test` work on a fresh Debian machine with Swift.
set -euo pipefail

need=()
dpkg -s liblz4-dev >/dev/null 2>&1 || need+=(liblz4-dev)
# The durable log checks each record with zlib's crc32.
dpkg -s zlib1g-dev >/dev/null 2>&1 || need+=(zlib1g-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ "${1:-}" = "--test" ]; then
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
    # The load-balancer test runs the compose file's haproxy configuration on loopback.
    { command -v haproxy || [ -x /usr/sbin/haproxy ]; } >/dev/null 2>&1 || need+=(haproxy)
    # The browser tests (Tests/EndToEnd/test_browser.py) run Debian's Chromium headless.
    { command -v chromium || command -v chromium-browser; } >/dev/null 2>&1 || need+=(chromium)
    # The monitoring test checks docker/prometheus with promtool and runs the Prometheus
    # server against real nodes; Debian's prometheus package holds both.
    { command -v promtool && command -v prometheus; } >/dev/null 2>&1 || need+=(prometheus)
fi

if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi

command -v swift >/dev/null 2>&1 || {
    echo "swift is not on PATH; install a Swift 6.2+ toolchain first (the dependencies declare swift-tools-version 6.2)" >&2
    exit 1
}
