"""What `python -m training` treats as a user's mistake, and the one secret it must never print.

A command raises a `TrainingError` (or another `AnimerecError`) when its input is wrong: a missing
file, a bad config key, a model argument that is not a number. Its message is the whole story, so
the CLI prints it as one line and exits 2. Anything else is a bug or an environment failure: the
CLI logs it with its traceback (see `training.__main__`).

The crawl reads the MyAnimeList client id from the environment; `install_redaction` masks it in
every log record (message, traceback, chained exceptions) and in the lines the CLI prints, with
the redaction the bot uses too (`inference.redaction`).
"""

from __future__ import annotations

import os

from inference import redaction
from inference.config import MAL_CLIENT_ID_ENV
from inference.errors import AnimerecError


class TrainingError(AnimerecError, ValueError):
    """Bad input to a training command. A ValueError too, as the untyped errors it replaces were,
    so code that catches ValueError around a training function still does."""


class ConfigError(TrainingError):
    """A config file or override that does not fit the config dataclasses."""


def install_redaction() -> None:
    """Mask the MAL client id (if set) in every log record created from now on (idempotent)."""
    secret = os.environ.get(MAL_CLIENT_ID_ENV, "").strip()
    redaction.install_redaction([secret] if secret else [])
