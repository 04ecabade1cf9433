"""`python -m inference ...`: see inference/cli.py."""

from __future__ import annotations

import sys

from inference.cli import main

if __name__ == "__main__":
    sys.exit(main())
