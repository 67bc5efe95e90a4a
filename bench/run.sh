#!/usr/bin/env bash
# Benchmarks ours against RabbitMQ Web-STOMP on this machine: installs rabbitmq-server
# when missing, builds release, runs bench/run.py, writes bench/RESULTS.md (and, for the
# persistent-queue scenario against RabbitMQ quorum queues, bench/PERSISTENT.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq rabbitmq-server
    # The package starts a system-wide broker; the benchmark runs its own on other ports.
    $sudo service rabbitmq-server stop >/dev/null 2>&1 || true
fi
swift build -c release --product cluster-node
swift build -c release --product clusterctl
exec python3 bench/run.py "$@"
