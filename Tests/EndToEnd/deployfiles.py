"""What the files in docker/ tell a container runtime, read the way the runtime reads them.

Shared by test_containers.py (which runs what they describe on virtual hosts) and
test_deployment_files.py (which checks them against the binaries without running anything):

- docker/Dockerfile: instructions per stage, with ARG defaults substituted; ENTRYPOINT/CMD.
- docker/compose.yaml: YAML merge keys (`<<`, resolved by PyYAML's loader) and compose's
  `${VAR}`, `${VAR:-default}`, `${VAR:?error}` ... interpolation, from a given .env.
- docker/k8s/*.yaml: a container's `env` with `valueFrom` (fieldRef, secretKeyRef) and
  Kubernetes' `$(VAR)` references to variables defined earlier in the list.
"""

from __future__ import annotations

import json
import shlex
import os
import re
from pathlib import Path

import yaml

import nodes

REPO = nodes.REPO
DOCKER = REPO / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "compose.yaml"
K8S = DOCKER / "k8s"

# What the Debian-based image's environment holds before the Dockerfile's ENV and compose or
# Kubernetes add theirs; the runtime adds HOSTNAME.
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# ---------------------------------------------------------------------------------------
# The binaries under test
# ---------------------------------------------------------------------------------------

def node_binary() -> Path:
    """cluster-node: STOMP_NODE_BIN (what the Makefile passes), else CLUSTER_NODE_BIN (its
    old name), else nodes.NODE_BIN. The variable is never passed on to a node: a node
    rejects CLUSTER_NODE_* variables that aren't settings."""
    named = os.environ.get("STOMP_NODE_BIN") or os.environ.get("CLUSTER_NODE_BIN")
    return Path(named) if named else Path(nodes.NODE_BIN)


def clusterctl_binary() -> Path:
    return Path(os.environ.get("CLUSTERCTL_BIN") or REPO / ".build" / "release" / "clusterctl")


# ---------------------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------------------

def dockerfile_instructions(path: Path = DOCKERFILE) -> list:
    """[(stage index, INSTRUCTION, arguments)] with continuations joined, comments dropped and
    global ARG defaults substituted into FROM (as BuildKit does)."""
    logical, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    out, stage, global_args = [], -1, {}
    for text in logical:
        instruction, _, args = text.partition(" ")
        instruction, args = instruction.upper(), args.strip()
        if instruction == "FROM":
            stage += 1
            args = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args.get(m[1] or m[2], ""), args)
        elif instruction == "ARG" and stage < 0:
            name, _, default = args.partition("=")
            global_args[name] = default
        out.append((stage, instruction, args))
    return out


def exec_form(args: str) -> list:
    """ENTRYPOINT/CMD arguments: the JSON exec form, or the shell form as `sh -c`."""
    return json.loads(args) if args.startswith("[") else ["/bin/sh", "-c", args]


def final_stage(path: Path = DOCKERFILE) -> list:
    instructions = dockerfile_instructions(path)
    last = max(stage for stage, _, _ in instructions)
    return [(i, a) for stage, i, a in instructions if stage == last]


def image_command(path: Path = DOCKERFILE) -> tuple:
    """(ENTRYPOINT, CMD) of the image the Dockerfile builds (its last stage)."""
    entrypoint, cmd = [], []
    for instruction, args in final_stage(path):
        if instruction == "ENTRYPOINT":
            entrypoint = exec_form(args)
        elif instruction == "CMD":
            cmd = exec_form(args)
    return entrypoint, cmd


def image_environment(path: Path = DOCKERFILE) -> dict:
    """The image's environment: the base image's PATH and the last stage's `ENV K=V ...`."""
    env = {"PATH": IMAGE_PATH}
    for instruction, args in final_stage(path):
        if instruction == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def container_argv(binary: Path, entrypoint: list, args: list) -> list:
    """The image's command line with its cluster-node path replaced by the binary under test."""
    assert entrypoint and Path(entrypoint[0]).name == "cluster-node", \
        f"the image's ENTRYPOINT should run cluster-node: {entrypoint}"
    return [str(binary), *entrypoint[1:], *args]


# ---------------------------------------------------------------------------------------
# compose
# ---------------------------------------------------------------------------------------

_COMPOSE_VAR = re.compile(r"\$(?:(?P<dollar>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.S)


def interpolate(text: str, env: dict) -> str:
    """compose's variable interpolation of one string (unset variables become empty)."""

    def substitute(m: re.Match) -> str:
        if m["dollar"]:
            return "$"
        if m["named"]:
            return env.get(m["named"], "")
        b = _BRACED.fullmatch(m["braced"])
        if b is None:
            raise ValueError(f"invalid interpolation: {m[0]}")
        name, op, arg = b["name"], b["op"], b["arg"] or ""
        value = env.get(name)
        # With the colon, an empty value counts as unset.
        present = bool(value) if op and op.startswith(":") else value is not None
        if op in (":-", "-"):
            return value if present else interpolate(arg, env)
        if op in (":?", "?"):
            if not present:
                raise ValueError(f"required variable {name} is missing: {arg}")
            return value
        if op in (":+", "+"):
            return interpolate(arg, env) if present else ""
        return value or ""

    return _COMPOSE_VAR.sub(substitute, text)


def _interpolate_tree(node, env: dict):
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate_tree(v, env) for v in node]
    return node


def load_compose(dotenv: dict, path: Path = COMPOSE) -> dict:
    """compose.yaml as compose sees it with `dotenv` as docker/.env: merges resolved (PyYAML
    applies `<<` keys), every string interpolated."""
    return _interpolate_tree(yaml.safe_load(path.read_text()), dotenv)


def compose_environment(service: dict, dotenv: dict) -> dict:
    """A service's `environment` (mapping or list form) as strings; a bare name takes its
    value from the environment compose runs in (here: `dotenv`)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
    return {k: dotenv.get(k, "") if v is None else str(v) for k, v in raw.items()}


def compose_secret_mounts(service: dict) -> dict:
    """container path -> secret name, for the service's `secrets` (compose mounts each at
    /run/secrets/<target>; the target defaults to the secret's name)."""
    mounts = {}
    for entry in service.get("secrets") or []:
        source = entry if isinstance(entry, str) else entry["source"]
        target = source if isinstance(entry, str) else entry.get("target", source)
        mounts[target if target.startswith("/") else f"/run/secrets/{target}"] = source
    return mounts


def built_from_our_dockerfile(service: dict) -> bool:
    build = service.get("build")
    return isinstance(build, dict) and Path(build.get("dockerfile", "")).name == DOCKERFILE.name


# ---------------------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------------------

def k8s_documents() -> list:
    return [doc for f in sorted(K8S.glob("*.yaml")) for doc in yaml.safe_load_all(f.read_text()) if doc]


def k8s_objects(kind: str) -> list:
    return [d for d in k8s_documents() if d.get("kind") == kind]


_K8S_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def k8s_expand(value: str, defined: dict) -> str:
    """Kubernetes' `$(VAR)`: a variable defined earlier in the list; unknown ones stay as
    written, and `$$` is a literal `$`."""
    def substitute(m: re.Match) -> str:
        if m[0] == "$$":
            return "$"
        return defined.get(m[1], m[0])
    return _K8S_REF.sub(substitute, value)


def k8s_environment(container: dict, fields: dict, secrets: dict) -> dict:
    """A container's environment as the kubelet builds it.

    `fields`: fieldRef path -> value (metadata.name, ...); `secrets`: (secret, key) -> value.
    """
    env = {}
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = k8s_expand(str(var["value"]), env)
            continue
        source = var["valueFrom"]
        if "fieldRef" in source:
            env[var["name"]] = fields[source["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[var["name"]] = secrets[(ref["name"], ref["key"])]
        else:
            raise AssertionError(f"valueFrom not handled by this test: {var}")
    return env


def k8s_secret_files(pod_spec: dict, container: dict) -> dict:
    """container path -> (secret, key) of every file a secret volume mounts."""
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
    files = {}
    for mount in container.get("volumeMounts") or []:
        # A mount of no pod volume is a claim's (volumeClaimTemplates): no secret.
        secret = volumes.get(mount["name"], {}).get("secret")
        if secret is None:
            continue
        for item in secret.get("items") or []:
            files[f"{mount['mountPath'].rstrip('/')}/{item['path']}"] = (secret["secretName"], item["key"])
    return files


def relocate_paths(env: dict, moves: dict) -> dict:
    """env with every value naming a container path in `moves` pointed at its host copy."""
    return {k: moves.get(v, v) for k, v in env.items()}
