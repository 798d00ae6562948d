"""``python -m ipfs_kit_node.storage.parquet_export DB TARGET``: the index's Parquet file.

Run by the store in a child process periodically, so pyarrow's memory never lives in
the daemon. Exit 0 and the row count on stdout, or exit 1 with the reason on stderr.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from .index import export_parquet


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m ipfs_kit_node.storage.parquet_export DB TARGET",
              file=sys.stderr)
        return 2
    try:
        print(export_parquet(Path(argv[0]), Path(argv[1])))
    except (OSError, ValueError, sqlite3.Error) as exc:
        print(f"parquet export failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
