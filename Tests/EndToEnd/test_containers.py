"""docker/compose.yaml and docker/k8s/statefulset.yaml, run on virtual hosts.

No container engine runs on the test machines, so this test does what the engine would do
for networking and configuration, and runs the real binaries: every compose service and
every pod gets a network namespace of its own (own loopback, own eth0, own ports: each node
listens on the default ports, as in a container) on a private bridge, host names from
/etc/netns/NAME/hosts, and exactly the environment and command line the files give it:

- environment: parsed from the file itself (compose: `<<` merges and `${VAR}` interpolation
  from a test .env; Kubernetes: fieldRef/secretKeyRef values and `$(VAR)` references), plus
  what the runtime adds (PATH of the image, HOSTNAME). Nothing of the test's environment
  leaks in: a node stops on a CLUSTER_NODE_* variable that isn't a setting.
- command line: the image's ENTRYPOINT and CMD parsed from docker/Dockerfile, with its
  /usr/local/bin/cluster-node replaced by the binary under test.
- secrets: the one path that differs. A file with a test secret is written per secret and
  every variable naming the path the runtime would mount it at (compose:
  /run/secrets/cluster_secret; Kubernetes: the secret volume's mount path) is pointed at it.
- HAProxy runs docker/haproxy.cfg with compose's environment for it (none) and resolves the
  node names through a DNS server of the test's on 127.0.0.11, like Docker's embedded DNS.

Not emulated: the image build, the image's user (nodes run as root here), Kubernetes
probes and lifecycle hooks (their targets are checked in test_deployment_files.py).

Needs root (`ip netns`), haproxy and the release binaries (STOMP_NODE_BIN, CLUSTERCTL_BIN).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import deployfiles as df
import netns
from nodes import wait_for
from pyclient import PyClient
from stomp_raw import unique

# The nodes' default ports: each namespace has its own, so nobody overrides them.
WS_PORT, STOMP_PORT, ADMIN_PORT = 15674, 61613, 8222
HAPROXY_STATS_PORT = 8404
# Values a user would put in docker/.env (the compose file requires both).
DOTENV = {"ADMIN_TOKEN": "containers-test-admin-token",
          "CLUSTER_SECRET": "containers-test-cluster-secret-0123456789"}
# The Kubernetes Secret's values for the test (docker/k8s/secret.yaml holds placeholders).
K8S_SECRET_VALUES = {"cluster-secret": "k8s-test-cluster-secret-0123456789",
                     "admin-token": "k8s-test-admin-token"}
FORM_TIMEOUT = 30.0   # upper bounds only; a cluster normally forms within a couple of seconds
STEP_TIMEOUT = 20.0
LONE_WATCH = 1.5      # how long a pod without peers is watched to stay not ready

pytestmark = pytest.mark.timeout(120)


# ---------------------------------------------------------------------------------------
# Set-up shared by both deployments
# ---------------------------------------------------------------------------------------

def require_binaries() -> tuple:
    missing = [str(p) for p in (df.node_binary(), df.clusterctl_binary()) if not p.exists()]
    if missing:
        pytest.fail(f"release binaries not found: {missing} (set STOMP_NODE_BIN and CLUSTERCTL_BIN, "
                    f"or build them)", pytrace=False)
    return df.node_binary(), df.clusterctl_binary()


def require_haproxy() -> str:
    binary = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/local/sbin:/usr/sbin:/sbin")
    if binary is None:
        pytest.fail("haproxy is not installed (`apt-get install -y haproxy`)", pytrace=False)
    return binary


@pytest.fixture(scope="module")
def network_factory():
    """Networks of virtual hosts, all removed at the end however the module went."""
    reason = netns.unavailable_reason()
    if reason:
        pytest.skip(f"container test on virtual hosts skipped: {reason}")
    netns.remove_stale()
    networks = []

    def make(tag: str) -> netns.Network:
        network = netns.Network(tag)
        networks.append(network)  # before it makes anything, so that a failure is cleaned up
        return network.start()

    yield make
    problems = [p for n in networks for p in n.close()]
    assert not problems, "\n".join(problems)


def write_secret(directory: Path, name: str, value: str, mode: int = 0o400) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(value)
    path.chmod(mode)
    return path


def runtime_env(hostname: str, env: dict) -> dict:
    """What the container sees: the image's environment, the runtime's HOSTNAME, then the
    file's."""
    return {**df.image_environment(), "HOSTNAME": hostname, **env}


def own_data_dir(env: dict, directory: Path) -> dict:
    """env with the image's data dir (a volume in the container) moved to a directory of this
    node's own here."""
    if env.get("CLUSTER_NODE_DATA_DIR") == df.image_environment().get("CLUSTER_NODE_DATA_DIR"):
        return {**env, "CLUSTER_NODE_DATA_DIR": str(directory)}
    return env


def start_node(name: str, host: netns.Host, argv: list, env: dict, logs: Path) -> netns.Process:
    # `env` is the whole environment: nothing of the test's own (STOMP_NODE_BIN, ...) leaks in.
    return host.run(argv, env=env, log_path=logs / f"{name}.log")


def shown(env: dict) -> dict:
    """env for printing, without the token."""
    return {k: ("***" if "TOKEN" in k else v) for k, v in env.items()}


# ---------------------------------------------------------------------------------------
# Talking to the virtual hosts (from the client's namespace)
# ---------------------------------------------------------------------------------------

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(client: netns.Host, url: str, token: str | None = None, method: str = "GET"):
    """(status, body) of a request made from the client host; (None, error) when it fails."""
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with client.inside():
        try:
            with _NO_PROXY.open(req, timeout=3) as resp:
                return resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")
        except OSError as e:
            return None, str(e)


def stomp_client(client: netns.Host, address: str, transport: str) -> PyClient:
    with client.inside():
        return PyClient(address, WS_PORT if transport == "ws" else STOMP_PORT, transport, "1.2")


def node_of(client: PyClient) -> str:
    """The node a client landed on: its CONNECTED `session` header is `<node>-<n>`."""
    return client.rec.connected_frame.headers.get("session", "").rsplit("-", 1)[0]


class Cluster:
    """The nodes of one deployment as the client host sees them."""

    def __init__(self, client: netns.Host, token: str):
        self.client, self.token = client, token
        self.hosts: dict = {}       # node id -> Host
        self.processes: dict = {}   # node id -> Process

    def admin(self, node: str) -> str:
        return f"http://{self.hosts[node].address}:{ADMIN_PORT}"

    def members(self, node: str) -> dict:
        """member -> (status, address) as `node` sees them; {} when it doesn't answer."""
        status, body = http(self.client, self.admin(node) + "/v1/members", self.token)
        if status != 200:
            return {}
        # One page of members (the default page, admin.max-page-size, holds every member here).
        return {m["node"]: (m["status"], m.get("address")) for m in json.loads(body)["items"]}

    def ready(self, node: str) -> bool:
        return http(self.client, self.admin(node) + "/readyz")[0] == 200

    def sees_all(self, nodes: list) -> bool:
        """Every node in `nodes` is ready and sees exactly `nodes`, all alive."""
        for n in nodes:
            members = self.members(n)
            if {m for m, (s, _) in members.items() if s == "alive"} != set(nodes) or not self.ready(n):
                return False
        return True

    def wait_formed(self, nodes: list) -> None:
        try:
            wait_for(lambda: self.sees_all(nodes), timeout=FORM_TIMEOUT, interval=0.2,
                     message=f"{nodes} form one cluster")
        except AssertionError:
            views = {n: (self.members(n), self.ready(n)) for n in nodes}
            tails = "\n".join(self.processes[n].log_tail(25) for n in nodes)
            raise AssertionError(f"no cluster of {nodes} within {FORM_TIMEOUT}s: {views}\n{tails}") from None

    def stop(self) -> list:
        return netns.stop_all(list(self.processes.values()))


# ---------------------------------------------------------------------------------------
# compose
# ---------------------------------------------------------------------------------------

class ComposeRig:
    """docker/compose.yaml's services on virtual hosts: the nodes, HAProxy and a client."""

    def __init__(self, network: netns.Network, root: Path):
        self.node_bin, self.clusterctl = require_binaries()
        self.network, self.root = network, root
        self.compose = df.load_compose(DOTENV)
        # `docker compose up` starts only the services without `profiles` (the monitoring
        # profile's Prometheus and Grafana are images this rig can't run).
        services = {n: s for n, s in self.compose["services"].items() if not s.get("profiles")}
        self.node_names = [n for n, s in services.items() if df.built_from_our_dockerfile(s)]
        self.lb_name = next(n for n, s in services.items() if str(s.get("image", "")).startswith("haproxy"))
        for name in [*self.node_names, self.lb_name, "client"]:
            network.add_host(name)
        # Compose's DNS knows every service by name (and by its `hostname`).
        names = {}
        for name, service in services.items():
            for alias in {name, service.get("hostname", name)}:
                names[alias] = [network[name].address]
        network.write_name_files(names)
        network.serve_dns(network[self.lb_name], names)
        self.client = network["client"]
        self.cluster = Cluster(self.client, DOTENV["ADMIN_TOKEN"])
        self.haproxy: netns.Process | None = None
        self.envs: dict = {}  # node -> the environment it was started with
        self.clients: list = []  # every STOMP client of the tests, dropped in teardown
        self.secret_paths: dict = {}  # compose secret -> the test's file holding it

    def secret_files(self, service: dict) -> dict:
        """container path -> test file, for the service's compose secrets."""
        moves = {}
        for path, secret in df.compose_secret_mounts(service).items():
            if secret not in self.secret_paths:
                value = DOTENV[self.compose["secrets"][secret]["environment"]]
                mode = next((e.get("mode", 0o444) for e in service["secrets"]
                             if isinstance(e, dict) and e["source"] == secret), 0o444)
                self.secret_paths[secret] = str(write_secret(self.root / "secrets", secret, value, mode))
                print(f"secret {secret}: compose mounts it at {path}; here it is {self.secret_paths[secret]}")
            moves[path] = self.secret_paths[secret]
        return moves

    def node_env(self, name: str) -> dict:
        service = self.compose["services"][name]
        env = df.compose_environment(service, DOTENV)
        env = runtime_env(service.get("hostname", name), df.relocate_paths(env, self.secret_files(service)))
        return own_data_dir(env, self.root / "data" / name)

    def start_nodes(self) -> None:
        entrypoint, cmd = df.image_command()
        for name in self.node_names:
            service = self.compose["services"][name]
            argv = df.container_argv(self.node_bin, entrypoint, service.get("command") or cmd)
            env = self.envs[name] = self.node_env(name)
            print(f"{name}: {' '.join(argv[1:])} with {shown(env)}")
            self.cluster.hosts[name] = self.network[name]
            self.cluster.processes[name] = start_node(name, self.network[name], argv, env, self.root)

    def haproxy_config(self) -> Path:
        service = self.compose["services"][self.lb_name]
        for volume in service.get("volumes") or []:
            source, target = volume.split(":")[:2]
            if target.endswith("haproxy.cfg"):
                return (df.DOCKER / source).resolve()
        raise AssertionError(f"compose mounts no haproxy.cfg into {self.lb_name}")

    def start_haproxy(self) -> None:
        binary = require_haproxy()
        service = self.compose["services"][self.lb_name]
        env = df.compose_environment(service, DOTENV)
        config = self.haproxy_config()
        host = self.network[self.lb_name]
        check = host.run_to_end([binary, "-c", "-f", str(config)], env=env)
        assert check.returncode == 0, f"haproxy -c -f {config}:\n{check.stdout}{check.stderr}"
        # The haproxy image runs `haproxy -W -db -f <its config>`.
        self.haproxy = host.run([binary, "-W", "-db", "-f", str(config)], env=env,
                                log_path=self.root / "haproxy.log")

    def haproxy_status(self) -> dict:
        """(backend, server) -> status from HAProxy's CSV statistics; {} when unavailable."""
        url = f"http://{self.network[self.lb_name].address}:{HAPROXY_STATS_PORT}/stats;csv"
        status, body = http(self.client, url)
        if status != 200:
            return {}
        rows = csv.DictReader(io.StringIO(body.lstrip("# ")))
        return {(r["pxname"], r["svname"]): r["status"] for r in rows
                if r["svname"] not in ("FRONTEND", "BACKEND")}

    def wait_haproxy(self, predicate, what: str) -> None:
        try:
            wait_for(lambda: predicate(self.haproxy_status()), timeout=STEP_TIMEOUT, interval=0.1, message=what)
        except AssertionError:
            raise AssertionError(f"{what}: {self.haproxy_status()}\n{self.haproxy.log_tail()}") from None

    def via_haproxy(self, transport: str) -> PyClient:
        return stomp_client(self.client, self.network[self.lb_name].address, transport)

    def direct(self, node: str, transport: str) -> PyClient:
        return stomp_client(self.client, self.network[node].address, transport)

    def stop(self) -> list:
        problems = self.cluster.stop()
        if self.haproxy is not None:
            problems += netns.stop_all([self.haproxy])
        return problems


@pytest.fixture(scope="module")
def compose(network_factory, tmp_path_factory):
    rig = ComposeRig(network_factory("compose"), tmp_path_factory.mktemp("compose"))
    try:
        rig.start_nodes()
        rig.start_haproxy()
        yield rig
    finally:
        for c in rig.clients:
            c.drop()
        problems = rig.stop()
    assert not problems, "\n".join(problems)


def test_compose_nodes_form_one_cluster(compose):
    nodes = compose.node_names
    compose.cluster.wait_formed(nodes)
    for node in nodes:
        members = compose.cluster.members(node)
        for member, (_, address) in members.items():
            advertised = compose.envs[member]["CLUSTER_NODE_CLUSTER_ADVERTISE"]
            assert address == advertised, f"{node} reaches {member} at {address}, compose says {advertised}"
        print(f"{node}: ready, members {members}")


def test_compose_clusterctl_status_lists_every_member_with_its_admin_address(compose):
    nodes = compose.node_names
    compose.cluster.wait_formed(nodes)
    # From the client host, by compose's names, as `docker compose exec` would.
    res = compose.client.run_to_end([str(compose.clusterctl), "status", "--node", f"http://{nodes[0]}:{ADMIN_PORT}",
                                     "--token", DOTENV["ADMIN_TOKEN"]], env={"PATH": df.IMAGE_PATH})
    print(res.stdout)
    assert res.returncode == 0, f"clusterctl status: {res.returncode}\n{res.stdout}{res.stderr}"
    for node in nodes:
        lines = [line for line in res.stdout.splitlines() if node in line.split()]
        assert any(f":{ADMIN_PORT}" in line for line in lines), \
            f"clusterctl status lists no admin address for {node}:\n{res.stdout}"


@pytest.mark.parametrize("transport", ["ws", "tcp"])
def test_compose_client_through_haproxy_gets_messages_published_on_another_node(compose, transport):
    compose.cluster.wait_formed(compose.node_names)
    compose.wait_haproxy(lambda s: s and set(s.values()) == {"UP"}, "HAProxy sees every node UP")
    topic = f"/topic/{unique('containers')}"

    subscriber = compose.via_haproxy(transport)
    compose.clients.append(subscriber)
    subscriber.subscribe(topic, "s1")  # the RECEIPT comes once every peer holds the interest
    landed = node_of(subscriber)
    other = next(n for n in compose.node_names if n != landed)
    publisher = compose.direct(other, "tcp")
    compose.clients.append(publisher)
    assert node_of(publisher) == other
    publisher.send(topic, f"hello from {other}", receipt=True)
    got = subscriber.wait_messages(1, topic, timeout=STEP_TIMEOUT)
    assert got[0].body == f"hello from {other}"
    print(f"{transport} subscriber through HAProxy on {landed} got what a client of {other} published")
    subscriber.close()
    publisher.close()


def test_compose_clusterctl_drain_by_name_moves_clients(compose):
    nodes = compose.node_names
    target, via = nodes[-1], nodes[0]
    compose.cluster.wait_formed(nodes)
    compose.wait_haproxy(lambda s: s and set(s.values()) == {"UP"}, "HAProxy sees every node UP")

    # HAProxy balances by least connections: a few connections put one on the target.
    on_target = None
    for _ in range(2 * len(nodes)):
        c = compose.via_haproxy("ws")
        compose.clients.append(c)
        if node_of(c) == target:
            on_target = c
            break
    assert on_target is not None, f"HAProxy put none of {2 * len(nodes)} clients on {target}"
    topic = f"/topic/{unique('drain')}"
    on_target.subscribe(topic, "s1")

    # Drain by member name, through another node's admin API, from the client host.
    res = compose.client.run_to_end([str(compose.clusterctl), "drain", target, "--node", f"http://{via}:{ADMIN_PORT}",
                                     "--token", DOTENV["ADMIN_TOKEN"]], env={"PATH": df.IMAGE_PATH})
    assert res.returncode == 0, f"clusterctl drain {target} via {via}: {res.returncode}\n{res.stdout}{res.stderr}"
    compose.cluster.processes[target].signalled = True  # it is expected to exit by itself

    # HAProxy takes it out (its /readyz says 503), then the node tells its clients to go.
    compose.wait_haproxy(lambda s: s and all(v.startswith("DOWN") for (b, n), v in s.items() if n == target),
                         f"HAProxy marks {target} DOWN")
    on_target.rec.wait(lambda: on_target.rec.errors or on_target.rec.disconnected, STEP_TIMEOUT,
                       f"the client on {target} is told to leave")
    errors = [e.headers.get("message", "") for e in on_target.rec.errors]
    print(f"client on {target}: ERROR {errors}, disconnected {on_target.rec.disconnected}")

    # It comes back through HAProxy on another node and gets what is published there.
    back = compose.via_haproxy("ws")
    compose.clients.append(back)
    assert node_of(back) in nodes and node_of(back) != target, f"reconnected to {node_of(back)}"
    back.subscribe(topic, "s2")
    publisher = compose.direct(via, "tcp")
    compose.clients.append(publisher)
    publisher.send(topic, "after the drain", receipt=True)
    assert back.wait_messages(1, topic, timeout=STEP_TIMEOUT)[0].body == "after the drain"

    process = compose.cluster.processes[target]
    rc = process.wait(STEP_TIMEOUT)
    assert rc == 0, f"{target} exited with {rc}\n{process.log_tail()}"
    remaining = [n for n in nodes if n != target]
    wait_for(lambda: all(target not in {m for m, (s, _) in compose.cluster.members(n).items() if s == "alive"}
                         for n in remaining), timeout=STEP_TIMEOUT, message=f"{target} no longer alive anywhere")
    print(f"{target} drained through {via}'s admin API by name: exited 0; client moved to {node_of(back)}")


# ---------------------------------------------------------------------------------------
# Kubernetes StatefulSet
# ---------------------------------------------------------------------------------------

class StatefulSetRig:
    """docker/k8s's StatefulSet as pods on virtual hosts, with the headless Service's DNS
    names in /etc/hosts; pods are started by the test."""

    CLUSTER_DOMAIN = "svc.cluster.local"

    def __init__(self, network: netns.Network, root: Path):
        self.node_bin, self.clusterctl = require_binaries()
        self.network, self.root = network, root
        self.sts = df.k8s_objects("StatefulSet")[0]
        self.namespace = self.sts["metadata"]["namespace"]
        spec = self.sts["spec"]
        self.pod_spec = spec["template"]["spec"]
        self.container = self.pod_spec["containers"][0]
        self.headless = f"{spec['serviceName']}.{self.namespace}.{self.CLUSTER_DOMAIN}"
        self.pods = [f"{self.sts['metadata']['name']}-{i}" for i in range(spec["replicas"])]
        for pod in [*self.pods, "client"]:
            network.add_host(pod)
        self.secrets = self.secret_values()
        self.client = network["client"]
        self.cluster = Cluster(self.client, self.admin_token())
        self.envs: dict = {}  # pod -> the environment it was started with
        self.write_hosts()

    def secret_values(self) -> dict:
        names = {s["metadata"]["name"] for s in df.k8s_objects("Secret")}
        return {(name, key): value for name in names for key, value in K8S_SECRET_VALUES.items()}

    def admin_token(self) -> str:
        return df.k8s_environment(self.container, self.fields(self.pods[0]), self.secrets)["CLUSTER_NODE_ADMIN_TOKEN"]

    def fqdn(self, pod: str) -> str:
        return f"{pod}.{self.headless}"

    def write_hosts(self) -> None:
        # Pod 0 first: with only the first address of the Service name, pods 1.. could not
        # find each other while pod 0 is missing (test_statefulset_pods_...).
        names = {self.headless: [self.network[p].address for p in self.pods]}
        for pod in self.pods:
            names[self.fqdn(pod)] = [self.network[pod].address]
            names[pod] = [self.network[pod].address]
        self.network.write_name_files(names)

    def fields(self, pod: str) -> dict:
        return {"metadata.name": pod, "metadata.namespace": self.namespace,
                "status.podIP": self.network[pod].address}

    def pod_env(self, pod: str) -> dict:
        env = df.k8s_environment(self.container, self.fields(pod), self.secrets)
        moves = {}
        for path, (secret, key) in df.k8s_secret_files(self.pod_spec, self.container).items():
            moves[path] = str(write_secret(self.root / "secrets" / pod, Path(path).name, self.secrets[(secret, key)]))
            print(f"{pod}: Secret {secret} key {key} is mounted at {path}; here it is {moves[path]}")
        return own_data_dir(runtime_env(pod, df.relocate_paths(env, moves)), self.root / "data" / pod)

    def start(self, pod: str) -> None:
        if pod in self.cluster.processes:
            return  # started by an earlier test of the module
        entrypoint, cmd = df.image_command()
        # A container's `command` replaces the ENTRYPOINT and `args` the CMD.
        entrypoint = self.container.get("command") or entrypoint
        argv = df.container_argv(self.node_bin, entrypoint, self.container.get("args") or cmd)
        env = self.envs[pod] = self.pod_env(pod)
        print(f"{pod}: {' '.join(argv[1:])} with {shown(env)}")
        self.cluster.hosts[pod] = self.network[pod]
        self.cluster.processes[pod] = start_node(pod, self.network[pod], argv, env, self.root)


@pytest.fixture(scope="module")
def statefulset(network_factory, tmp_path_factory):
    rig = StatefulSetRig(network_factory("k8s"), tmp_path_factory.mktemp("k8s"))
    try:
        yield rig
    finally:
        problems = rig.cluster.stop()
    assert not problems, "\n".join(problems)


def test_statefulset_headless_name_resolves_to_every_pod(statefulset):
    """What the node's seed resolution (getaddrinfo) gets for the Service name in a pod."""
    want = [statefulset.network[p].address for p in statefulset.pods]
    for pod in statefulset.pods:
        res = statefulset.network[pod].run_to_end(["getent", "ahostsv4", statefulset.headless], env={})
        got = sorted({line.split()[0] for line in res.stdout.splitlines()})
        assert got == sorted(want), f"in {pod}, {statefulset.headless} -> {got}, want {want}\n{res.stderr}"
    print(f"{statefulset.headless} -> {want} in every pod")


def test_statefulset_lone_pod_is_not_ready(statefulset):
    """A pod whose peers aren't there yet stays out of the client Service: with seeds, a node
    is ready only once it has linked to another member (cluster.min-members, 2 by default).
    The reason the StatefulSet must start its pods in parallel."""
    lone = statefulset.pods[1]
    statefulset.start(lone)
    cluster = statefulset.cluster
    wait_for(lambda: cluster.members(lone), timeout=STEP_TIMEOUT, message=f"{lone}'s admin API answers")
    deadline = time.monotonic() + LONE_WATCH
    while time.monotonic() < deadline:
        status, body = http(cluster.client, cluster.admin(lone) + "/readyz")
        assert status == 503 and "waiting for members" in body, \
            f"{lone} alone: /readyz {status} {body!r}, members {cluster.members(lone)}"
        time.sleep(0.1)
    print(f"{lone} alone: /readyz 503 ({body.strip()}) for {LONE_WATCH}s")


def test_statefulset_pods_find_each_other_through_the_headless_service(statefulset):
    first, rest = statefulset.pods[0], statefulset.pods[1:]
    # Pod 0 (the first address of the Service name) is not there yet: the others must try
    # every address the name resolves to, as with a pod that is still being scheduled.
    for pod in rest:
        statefulset.start(pod)
    statefulset.cluster.wait_formed(rest)
    print(f"without {first}: {rest} found each other and are ready")
    statefulset.start(first)
    statefulset.cluster.wait_formed(statefulset.pods)
    for pod in statefulset.pods:
        members = statefulset.cluster.members(pod)
        for member, (_, address) in members.items():
            advertised = statefulset.envs[member]["CLUSTER_NODE_CLUSTER_ADVERTISE"]
            assert address == advertised, f"{pod} reaches {member} at {address}, the manifest says {advertised}"
        print(f"{pod}: ready, members {members}")
