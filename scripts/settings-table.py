#!/usr/bin/env python3
"""Rewrites the settings table of a Markdown file from `cluster-node --print-settings markdown`.

    scripts/settings-table.py .build/release/cluster-node README.md          # rewrite
    scripts/settings-table.py .build/release/cluster-node README.md --check  # exit 1 if stale

The table sits between the markers `<!-- settings-table:begin ... -->` and
`<!-- settings-table:end -->`; everything between them is replaced.
"""

import re
import subprocess
import sys
from pathlib import Path

BLOCK = re.compile(r"(<!-- settings-table:begin[^>]*-->\n)(.*?)(<!-- settings-table:end -->)", re.S)


def generated(binary: str) -> str:
    return subprocess.run([binary, "--print-settings", "markdown"], check=True, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin"}).stdout


def main() -> int:
    binary, document = sys.argv[1], Path(sys.argv[2])
    check = "--check" in sys.argv[3:]
    text = document.read_text()
    match = BLOCK.search(text)
    if not match:
        sys.exit(f"{document}: no settings-table markers")
    table = generated(binary)
    if check:
        if match.group(2) != table:
            print(f"{document}: the settings table is stale; run `make settings-table`", file=sys.stderr)
            return 1
        return 0
    document.write_text(text[:match.start(2)] + table + text[match.end(2):])
    print(f"{document}: settings table rewritten ({table.count(chr(10)) - 2} settings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
