"""`python -m benchmarks [--phrasings 1000 10000] [--requests 500] [--json]`."""

from __future__ import annotations

import sys

from benchmarks.run import cli

if __name__ == "__main__":
    sys.exit(cli())
