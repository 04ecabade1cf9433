"""`python -m bot`: run every platform config.toml enables (the console when none is)."""

import sys

from bot.app import main

sys.exit(main())
