"""Static checks of the deployment files against the binaries: nothing is started.

The files in docker/ (and the commands in README.md and docs/) name settings, flags, ports
and endpoints of cluster-node that nothing else checks until someone deploys them; issue 10
was a seed variable no node reads and a Dockerfile that copies a file a clone doesn't have.
What a node knows comes from the node itself (`cluster-node --print-settings json`), so the
checks follow the binary rather than a copy of its settings.

clusterctl's own flags and CLUSTERCTL_* variables are checked against `clusterctl --help`.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

import deployfiles as df

REPO = df.REPO
# Where deployment instructions live: every file in docker/, the READMEs and docs/.
SCANNED = sorted([*(p for p in df.DOCKER.rglob("*") if p.is_file()), REPO / "README.md", *(REPO / "docs").rglob("*.md")])
NODE_VARIABLE = re.compile(r"\bCLUSTER_NODE_[A-Z0-9_]*[A-Z0-9]\b")
CLUSTERCTL_VARIABLE = re.compile(r"\bCLUSTERCTL_[A-Z0-9_]*[A-Z0-9]\b")
FLAG = re.compile(r"(?<![\w-])--[a-z0-9][a-z0-9-]*")
# The text that follows a command on its line ends at shell or markdown punctuation.
COMMAND_END = re.compile(r"[`|;&#)]")
NODE_COMMAND = re.compile(r"(?:^|[\s\"'`/\[(])cluster-node\b(?P<rest>.*)")
MAKE_RUN = re.compile(r"\bmake run\s+\w*ARGS=(?P<rest>.*)")
CLUSTERCTL_COMMAND = re.compile(r"(?:^|[\s\"'`/\[(])clusterctl(?P<rest>\s.*)")
ADMIN_ENDPOINT = re.compile(r"`(GET|POST) (/[^\s`?]*)")


# ---------------------------------------------------------------------------------------
# What the binaries know
# ---------------------------------------------------------------------------------------

@dataclass
class NodeSettings:
    settings: list              # [{"key", "flag", "env", "type", "default", ...}]
    options: list               # flags that are not settings (--config, --help, ...)
    source: str
    flags: set = field(init=False)
    envs: set = field(init=False)

    def __post_init__(self):
        self.flags = {s["flag"] for s in self.settings} | set(self.options)
        self.envs = {s["env"] for s in self.settings}

    def port_defaults(self) -> dict:
        """key -> default port of every port setting that has one."""
        return {s["key"]: int(s["default"]) for s in self.settings
                if s.get("type") == "port" and str(s.get("default", "")).isdigit()}

    def default_of_env(self, env: str):
        return next(s.get("default") for s in self.settings if s["env"] == env)


def _run(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=30, env={})


@pytest.fixture(scope="module")
def node() -> NodeSettings:
    binary = df.node_binary()
    if not binary.exists():
        pytest.fail(f"cluster-node not found at {binary} (set STOMP_NODE_BIN)", pytrace=False)
    res = _run(binary, "--print-settings", "json")
    assert res.returncode == 0, f"cluster-node --print-settings json failed: {res.stderr}"
    doc = json.loads(res.stdout)
    return NodeSettings(doc["settings"], doc["options"], "cluster-node --print-settings json")


@lru_cache(maxsize=None)
def clusterctl_help(*subcommand: str) -> str:
    binary = df.clusterctl_binary()
    if not binary.exists():
        pytest.fail(f"clusterctl not found at {binary} (set CLUSTERCTL_BIN)", pytrace=False)
    res = _run(binary, *subcommand, "--help")
    return res.stdout + res.stderr


def clusterctl_subcommands(*parent: str) -> set:
    help_text = clusterctl_help(*parent)
    if "SUBCOMMANDS:" not in help_text:
        return set()
    return set(re.findall(r"^\s{2}([a-z]+)\s", help_text.split("SUBCOMMANDS:", 1)[1], re.M))


def clusterctl_command(rest: str) -> tuple:
    """(subcommand path, flags) of the words after `clusterctl`; () when they name none
    (prose such as "clusterctl speaks to ...")."""
    words, path = COMMAND_END.split(rest, 1)[0].split(), []
    for word in words:
        if word not in clusterctl_subcommands(*path):
            break
        path.append(word)
    return tuple(path), FLAG.findall(" ".join(words[len(path):]))


def admin_endpoints() -> set:
    """(method, path) of every endpoint docs/ADMIN-API.md documents."""
    return set(ADMIN_ENDPOINT.findall((REPO / "docs" / "ADMIN-API.md").read_text()))


# ---------------------------------------------------------------------------------------
# Reading the files
# ---------------------------------------------------------------------------------------

def logical_lines(path: Path) -> list:
    """(line number, text) with backslash continuations joined, as a shell reads them."""
    out, start, pending = [], 0, ""
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    return out


def command_flags(rest: str) -> list:
    return FLAG.findall(COMMAND_END.split(rest, 1)[0])


def node_flags_in_text(path: Path) -> list:
    """[(where, flag)] for flags on lines that run cluster-node (or `make run ...ARGS=`)."""
    found = []
    for number, line in logical_lines(path):
        for pattern in (NODE_COMMAND, MAKE_RUN):
            for m in pattern.finditer(line):
                found += [(f"{path.relative_to(REPO)}:{number}", f) for f in command_flags(m["rest"])]
    return found


@lru_cache(maxsize=None)
def compose_file() -> dict:
    # Interpolation needs the variables compose.yaml requires; their values don't matter here.
    return df.load_compose({"ADMIN_TOKEN": "x", "CLUSTER_SECRET": "x"})


def node_flags_in_manifests() -> list:
    """[(where, flag)] from compose's `command` of the node services and the node
    containers' `command`/`args` in docker/k8s."""
    found = []
    compose = compose_file()
    for name, service in compose["services"].items():
        if df.built_from_our_dockerfile(service):
            for key in ("entrypoint", "command"):
                found += [(f"compose.yaml {name}.{key}", a) for a in as_list(service.get(key)) if FLAG.fullmatch(a.split("=")[0])]
    for container in node_containers():
        for key in ("command", "args"):
            found += [(f"k8s {container['name']}.{key}", a) for a in as_list(container.get(key)) if FLAG.fullmatch(a.split("=")[0])]
    return [(where, a.split("=")[0]) for where, a in found]


def as_list(value) -> list:
    if value is None:
        return []
    return value.split() if isinstance(value, str) else [str(v) for v in value]


def node_containers() -> list:
    """Containers of the k8s workloads that run the image docker/Dockerfile builds."""
    image = next(s["image"] for s in compose_file()["services"].values()
                 if df.built_from_our_dockerfile(s))
    return [c for sts in df.k8s_objects("StatefulSet") for c in sts["spec"]["template"]["spec"]["containers"]
            if c["image"] == image]


# ---------------------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------------------

def copy_sources() -> list:
    """Sources of every COPY/ADD from the build context (not --from another stage)."""
    sources = []
    for _, instruction, args in df.dockerfile_instructions():
        if instruction not in ("COPY", "ADD"):
            continue
        words = json.loads(args) if args.startswith("[") else args.split()
        if any(w.startswith("--from") for w in words):
            continue
        sources += [w for w in words if not w.startswith("--")][:-1]  # the last one is the destination
    return sources


def test_dockerfile_copies_only_what_a_clean_clone_has():
    tracked = set(subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                                 check=True).stdout.splitlines())
    sources = copy_sources()
    assert sources, "no COPY from the build context in docker/Dockerfile"
    for source in sources:
        source = source.rstrip("/")
        present = source in tracked or any(f.startswith(source + "/") for f in tracked)
        assert present, f"docker/Dockerfile copies {source!r}, which git does not track: a clone has no such file"
        ignored = subprocess.run(["git", "check-ignore", "-q", source], cwd=REPO).returncode == 0
        assert not ignored, f"docker/Dockerfile copies {source!r}, which .gitignore excludes"
    print(f"COPY sources, all tracked by git and not ignored: {sources}")


def version(text: str) -> tuple:
    return tuple(int(x) for x in text.split("."))


def test_base_image_swift_is_new_enough_for_the_package():
    images = [args.split()[0] for _, instruction, args in df.dockerfile_instructions() if instruction == "FROM"]
    swift = [re.match(r"swift:(\d+(?:\.\d+)*)", image) for image in images]
    swift = [m for m in swift if m]
    assert swift, f"no swift:<version> base image in docker/Dockerfile: {images}"
    image_version = version(swift[0][1])
    needs = {"Package.swift": tools_version(REPO / "Package.swift")}
    # The dependencies' manifests, where this checkout has resolved them (a clean clone hasn't).
    for manifest in sorted((REPO / ".build" / "checkouts").glob("*/Package.swift")):
        needs[f".build/checkouts/{manifest.parent.name}"] = tools_version(manifest)
    too_new = {what: v for what, v in needs.items() if v > image_version}
    assert not too_new, f"swift:{swift[0][1]} is older than the swift-tools-version of {too_new}"
    newest = max(needs.values())
    print(f"base image swift:{swift[0][1]} >= swift-tools-version {'.'.join(map(str, newest))} "
          f"(the highest of {len(needs)} manifests: Package.swift"
          f"{' and the resolved dependencies' if len(needs) > 1 else '; no .build/checkouts here'})")


def tools_version(manifest: Path) -> tuple:
    m = re.match(r"//\s*swift-tools-version\s*:\s*(\d+(?:\.\d+)*)", manifest.read_text())
    assert m, f"{manifest}: no swift-tools-version line"
    return version(m[1])


# ---------------------------------------------------------------------------------------
# Settings and flags
# ---------------------------------------------------------------------------------------

def test_every_cluster_node_variable_is_a_setting(node):
    uses = {}
    for path in SCANNED:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            for name in NODE_VARIABLE.findall(line):
                uses.setdefault(name, []).append(f"{path.relative_to(REPO)}:{number}")
    unknown = {name: where for name, where in uses.items() if name not in node.envs}
    assert not unknown, f"not settings of cluster-node (a node refuses to start with them): {unknown}"
    print(f"{len(uses)} CLUSTER_NODE_* names in {len(SCANNED)} files, all settings ({node.source}): {sorted(uses)}")


def test_every_flag_given_to_cluster_node_is_known(node):
    uses = [u for path in SCANNED for u in node_flags_in_text(path)] + node_flags_in_manifests()
    assert uses, "no cluster-node command line found at all: the scan is broken"
    unknown = [(where, flag) for where, flag in uses if flag not in node.flags]
    assert not unknown, f"flags cluster-node doesn't have ({node.source}): {unknown}"
    print(f"{len(uses)} flags on cluster-node command lines, all known: {sorted({f for _, f in uses})}")


def test_clusterctl_commands_and_variables_are_known():
    checked, subcommands = set(), set()
    for path in SCANNED:
        for number, line in logical_lines(path):
            for m in CLUSTERCTL_COMMAND.finditer(line):
                command, flags = clusterctl_command(m["rest"])
                if not command:
                    continue
                subcommands.add(command)
                known = set(FLAG.findall(clusterctl_help(*command)))
                for flag in flags:
                    assert flag in known, f"{path.relative_to(REPO)}:{number}: `clusterctl {' '.join(command)}` has no {flag}"
                    checked.add(f"{' '.join(command)} {flag}")
    all_help = "".join(clusterctl_help(s) for s in clusterctl_subcommands())
    variables = {v for path in SCANNED for v in CLUSTERCTL_VARIABLE.findall(path.read_text(errors="replace"))}
    unknown = variables - set(CLUSTERCTL_VARIABLE.findall(all_help))
    assert not unknown, f"variables clusterctl doesn't read: {unknown}"
    print(f"clusterctl commands {sorted(' '.join(c) for c in subcommands)}; flags checked: {sorted(checked)}; "
          f"variables: {sorted(variables)}")


# ---------------------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------------------

def test_ports_are_the_nodes_default_ports(node):
    defaults = node.port_defaults()
    checked = []

    def expect(where: str, port, key: str | None = None):
        port = int(port)
        if key is None:
            assert port in defaults.values(), f"{where}: port {port} is no default port of a node {defaults}"
        else:
            assert key in defaults, f"{where}: no port setting {key} {defaults}"
            assert port == defaults[key], f"{where}: port {port}, but {key} defaults to {defaults[key]}"
        checked.append(f"{where}={port}")

    for instruction, args in df.final_stage():
        if instruction == "EXPOSE":
            for port in args.split():
                expect("Dockerfile EXPOSE", port.split("/")[0])
    # "${CLUSTER_NODE_ADMIN_PORT:-8222}" (HEALTHCHECK, preStop): the default is the setting's.
    for path in SCANNED:
        for name, port in re.findall(r"\$\{(CLUSTER_NODE_\w+):-(\d+)\}", path.read_text(errors="replace")):
            assert port == str(node.default_of_env(name)), f"{path.name}: {name} defaults to {port} there"
            checked.append(f"{path.name} ${{{name}:-{port}}}")
    # haproxy.cfg: "${NODE1_WS_PORT-15674}" is the node's ws.port, and so on.
    for kind, port in re.findall(r"\$\{NODE\d+_([A-Z]+)_PORT-(\d+)\}", (df.DOCKER / "haproxy.cfg").read_text()):
        expect(f"haproxy.cfg NODEn_{kind}_PORT", port, f"{kind.lower()}.port")
    check_compose_ports(expect)
    check_k8s_ports(expect)
    print(f"default ports {defaults}; checked: {sorted(set(checked))}")


def host_ports(value: str) -> list:
    return [int(p) for p in re.findall(r"[\w.-]+:(\d+)", value)]


def check_compose_ports(expect) -> None:
    compose = compose_file()
    for name, service in compose["services"].items():
        if not df.built_from_our_dockerfile(service):
            continue
        for port in service.get("expose") or []:
            expect(f"compose {name} expose", port)
        env = df.compose_environment(service, {})
        for var in ("CLUSTER_NODE_CLUSTER_ADVERTISE", "CLUSTER_NODE_CLUSTER_SEEDS"):
            for port in host_ports(env.get(var, "")):
                expect(f"compose {name} {var}", port, "cluster.port")


def check_k8s_ports(expect) -> None:
    for container in node_containers():
        named = {p["name"]: p["containerPort"] for p in container.get("ports") or []}
        for port_name, port in named.items():
            expect(f"k8s containerPort {port_name}", port, f"{port_name}.port")
        for var in container.get("env") or []:
            if var["name"] in ("CLUSTER_NODE_CLUSTER_ADVERTISE", "CLUSTER_NODE_CLUSTER_SEEDS"):
                for port in host_ports(var["value"]):
                    expect(f"k8s {var['name']}", port, "cluster.port")
        for service in df.k8s_objects("Service"):
            for p in service["spec"]["ports"]:
                target = p.get("targetPort", p["port"])
                assert target in named or target in named.values(), \
                    f"Service {service['metadata']['name']}: targetPort {target} is no port of the container {named}"
                expect(f"Service {service['metadata']['name']} {p['name']}", p["port"], f"{p['name']}.port")
    for sts in df.k8s_objects("StatefulSet"):
        annotations = sts["spec"]["template"]["metadata"].get("annotations") or {}
        if "prometheus.io/port" in annotations:
            expect("prometheus.io/port", annotations["prometheus.io/port"], "admin.port")


# ---------------------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------------------

def test_k8s_probes_and_hooks_use_real_admin_endpoints():
    endpoints = admin_endpoints()
    assert ("GET", "/readyz") in endpoints, f"docs/ADMIN-API.md documents no /readyz: {endpoints}"
    checked = []
    for container in node_containers():
        port_names = {p["name"] for p in container.get("ports") or []}
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, f"{probe} checks {get['path']}, not {path}"
            assert ("GET", get["path"]) in endpoints, f"{probe}: {get['path']} is no admin endpoint"
            assert get["port"] in port_names, f"{probe}: port {get['port']!r} is not one of {port_names}"
            assert get["port"] == "admin", f"{probe} probes port {get['port']!r}, not the admin API"
            checked.append(f"{probe} GET {get['path']} on {get['port']}")
        hook = " ".join(container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", []))
        for command in re.findall(r"curl\b[^\n]*", hook.replace("\\\n", " ")):
            method = re.search(r"-X\s+(\w+)", command)
            method = method[1] if method else "GET"
            for path in re.findall(r"\$\{port\}(/[\w/]+)", command):
                assert (method, path) in endpoints, f"preStop: {method} {path} is no admin endpoint"
                checked.append(f"preStop {method} {path}")
    print(f"checked against docs/ADMIN-API.md: {checked}")


def test_statefulset_starts_pods_in_parallel_without_service_links():
    for sts in df.k8s_objects("StatefulSet"):
        spec = sts["spec"]
        # A node is ready only once it has linked to another member: started one by one, the
        # first pod would wait forever for the second.
        assert spec.get("podManagementPolicy") == "Parallel", "podManagementPolicy must be Parallel"
        # Service links would add <SERVICE>_* variables; one named like CLUSTER_NODE_* stops a node.
        assert spec["template"]["spec"].get("enableServiceLinks") is False, "set enableServiceLinks: false"
    print("StatefulSet: podManagementPolicy Parallel, enableServiceLinks false")


def test_the_secure_compose_overlay_mounts_every_file_it_names():
    """compose.secure.yaml, layered over compose.yaml: its services are compose.yaml's nodes,
    and every path a node is given under /run/secrets/ is one of that node's secrets, which
    are all defined (as files next to the compose files)."""
    overlay = yaml.safe_load((df.DOCKER / "compose.secure.yaml").read_text())
    base = df.load_compose({"CLUSTER_SECRET": "x" * 24, "ADMIN_TOKEN": "t"})
    nodes = {name for name, service in base["services"].items() if df.built_from_our_dockerfile(service)}
    assert set(overlay["services"]) == nodes, f"overlay services {set(overlay['services'])}, compose nodes {nodes}"
    checked = 0
    for name, service in overlay["services"].items():
        mounts = df.compose_secret_mounts(service)
        for source in mounts.values():
            assert "file" in overlay["secrets"][source], f"{name}: secret {source} is not defined as a file"
        for variable, value in (service.get("environment") or {}).items():
            if str(value).startswith("/run/secrets/"):
                assert value in mounts, f"{name}: {variable}={value} is not one of its secrets {sorted(mounts)}"
                checked += 1
    assert checked == 3 * 5, f"{checked} secret paths checked, not 5 per node"


def test_every_node_keeps_its_durable_log_on_a_volume():
    """The image puts data.dir on a VOLUME; compose mounts a named volume there for each node,
    and the StatefulSet a claim per pod: persistent messages outlive the container."""
    data_dir = df.image_environment()["CLUSTER_NODE_DATA_DIR"]
    assert any(op == "VOLUME" and data_dir in args for op, args in df.final_stage()), "no VOLUME for data.dir"
    compose = compose_file()
    nodes = [name for name, service in compose["services"].items() if df.built_from_our_dockerfile(service)]
    assert nodes
    for name in nodes:
        volumes = compose["services"][name].get("volumes", [])
        targets = {v.split(":")[1] if isinstance(v, str) else v.get("target"): v for v in volumes}
        assert data_dir in targets, f"compose {name}: nothing mounted at {data_dir}"
        source = targets[data_dir].split(":")[0] if isinstance(targets[data_dir], str) else targets[data_dir]["source"]
        assert source in compose.get("volumes", {}), f"compose {name}: {source} is no named volume"
    for sts in df.k8s_objects("StatefulSet"):
        claims = {c["metadata"]["name"] for c in sts["spec"].get("volumeClaimTemplates", [])}
        container = sts["spec"]["template"]["spec"]["containers"][0]
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        assert mounts.get(data_dir) in claims, f"StatefulSet: {data_dir} is not on a volume claim"
    print(f"data.dir {data_dir}: VOLUME in the image, named volumes for {nodes}, a claim per pod")
