"""Runs a shell block of README.md as its reader would, and finds the nodes it left running.

A block is marked `<!-- NAME:begin -->` ... `<!-- NAME:end -->` around one ```sh fence."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path

from deployfiles import clusterctl_binary, node_binary
from nodes import REPO, wait_for


def block(name: str) -> str:
    text = (REPO / "README.md").read_text()
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    marked = text[text.index(begin):text.index(end)]
    return marked.split("```sh\n", 1)[1].rsplit("```", 1)[0]


def environment(home: Path) -> dict:
    """A HOME of its own, the binaries under test first on PATH, nothing else inherited."""
    binaries = {node_binary().resolve().parent, clusterctl_binary().resolve().parent}
    return {"HOME": str(home), "PATH": os.pathsep.join([*map(str, binaries), os.environ["PATH"]])}


def run(script: str, cwd: Path, env: dict) -> str:
    """Runs `script` with bash -e and returns what it printed. Output goes through a file, not a
    pipe: nodes the script starts in the background inherit it and would hold a pipe open."""
    with tempfile.TemporaryFile("w+") as output:
        result = subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env=env, stdout=output,
                                stderr=subprocess.STDOUT, text=True, timeout=120)
        output.seek(0)
        printed = output.read()
    assert result.returncode == 0, f"the README's example failed:\n{printed}"
    return printed


def nodes_in(directory: Path) -> list[int]:
    """The cluster-node processes whose working directory is `directory`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == directory and "cluster-node" in (entry / "cmdline").read_text():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def stop_nodes_in(directory: Path) -> None:
    """SIGTERM (each node drains first) and wait until every one of them has exited."""
    pids = nodes_in(directory)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    wait_for(lambda: not any(alive(pid) for pid in pids), timeout=30, message="the example's nodes to stop")


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
