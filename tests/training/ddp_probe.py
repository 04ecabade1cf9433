"""`python -m tests.training.ddp_probe COMMAND ...`: `python -m training COMMAND ...`, then a list of
the threads still running in this process, written to $THREADS_OUT/rank<RANK>.txt (Linux).

test_ddp reads it: a process group that teardown did not really end keeps gloo's threads (and
sockets) alive into interpreter shutdown, while the other rank exits.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from training.__main__ import main

if __name__ == "__main__":
    code = main(sys.argv[1:])
    tasks = Path("/proc/self/task")
    if tasks.is_dir():
        names = sorted((task / "comm").read_text().strip() for task in tasks.iterdir())
        folder = Path(os.environ["THREADS_OUT"])
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / f"rank{os.environ.get('RANK', '0')}.txt"
        out.write_text("\n".join(names) + "\n")
    sys.exit(code)
