"""`--models ours:...` in `evaluate` finds our adapters through this module (see models_eval)."""

from training import models_eval  # noqa: F401  (registers "ours", "sasrec")
