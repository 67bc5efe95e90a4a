"""One table of settings: every flag, CLUSTER_NODE_* variable and config-file key comes from
it, anything that names no setting stops the node, and the README's table is generated from
it (scripts/settings-table.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from nodes import NODE_BIN, node_environment

ROOT = Path(__file__).resolve().parents[2]


def refused(*args: str, env: dict | None = None, config: str | None = None, tmp_path: Path | None = None) -> str:
    """Runs a node that must refuse to start; returns what it said."""
    command = [str(NODE_BIN), "--ws-port=-1", "--stomp-port=-1", "--admin-port=-1", *args]
    if config is not None:
        path = tmp_path / "node.json"
        path.write_text(config)
        command += ["--config", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, env=node_environment(**(env or {})))
    assert result.returncode != 0, f"{command} started: {result.stdout}{result.stderr}"
    return result.stdout + result.stderr


def test_a_misspelt_environment_variable_stops_the_node_and_names_the_real_one():
    out = refused(env={"CLUSTER_NODE_SEEDS": "n1:7946"})
    assert "unknown environment variable CLUSTER_NODE_SEEDS" in out
    assert "CLUSTER_NODE_CLUSTER_SEEDS" in out


def test_invalid_values_from_the_environment_name_source_key_and_value():
    out = refused(env={"CLUSTER_NODE_WS_PORT": "notaport"})
    assert "invalid value 'notaport' for ws.port from environment variable CLUSTER_NODE_WS_PORT" in out
    out = refused(env={"CLUSTER_NODE_LIMITS_BODY_SIZE": "abc"})
    assert "invalid value 'abc' for limits.body-size from environment variable CLUSTER_NODE_LIMITS_BODY_SIZE" in out


def test_the_config_file_is_checked_like_the_environment(tmp_path):
    out = refused(config=json.dumps({"cluster": {"seed": "n1:7946"}}), tmp_path=tmp_path)
    assert "unknown key cluster.seed in config file" in out and "cluster.seeds" in out
    out = refused(config=json.dumps({"limits": {"body-size": "abc"}}), tmp_path=tmp_path)
    assert "invalid value 'abc' for limits.body-size from config file" in out


def test_an_unknown_flag_names_the_closest():
    out = refused("--max-body-sise", "10")
    assert "unknown flag --max-body-sise" in out and "--max-body-size" in out


def test_help_and_json_list_every_setting():
    document = json.loads(subprocess.run([str(NODE_BIN), "--print-settings", "json"], capture_output=True, text=True,
                                         timeout=30, env=node_environment(), check=True).stdout)
    help_text = subprocess.run([str(NODE_BIN), "--help"], capture_output=True, text=True, timeout=30,
                               env=node_environment()).stdout
    assert len(document["settings"]) >= 60
    for setting in document["settings"]:
        assert setting["env"] == "CLUSTER_NODE_" + setting["key"].upper().replace(".", "_").replace("-", "_")
        assert re.search(rf"(?<![\w-]){re.escape(setting['flag'])}\b", help_text), setting["flag"]


def test_the_readme_table_is_the_generated_one():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "settings-table.py"), str(NODE_BIN),
                             str(ROOT / "README.md"), "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_hash_password_prints_a_phc_scrypt_string_that_standard_scrypt_verifies():
    import base64
    import hashlib
    result = subprocess.run([str(NODE_BIN), "hash-password"], input="hunter2\n", capture_output=True, text=True,
                            timeout=60, env=node_environment())
    assert result.returncode == 0, result.stderr
    _, algorithm, parameters, salt, digest = result.stdout.strip().split("$")
    assert algorithm == "scrypt"
    cost = dict(pair.split("=") for pair in parameters.split(","))

    def unpadded(text):
        return base64.b64decode(text + "=" * (-len(text) % 4))

    expected = unpadded(digest)
    derived = hashlib.scrypt(b"hunter2", salt=unpadded(salt), n=2 ** int(cost["ln"]), r=int(cost["r"]),
                             p=int(cost["p"]), dklen=len(expected), maxmem=2 ** 26)
    assert derived == expected
    empty = subprocess.run([str(NODE_BIN), "hash-password"], input="", capture_output=True, text=True, timeout=60,
                           env=node_environment())
    assert empty.returncode != 0 and "no password" in empty.stderr
