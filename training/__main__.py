"""`python -m training <command>`: the maintainers' CLI.

Each command lives in its own module exposing `configure_parser(parser)` and `main(args) -> int`;
modules are imported only when their command runs, so `--help` stays fast.

Errors are handled here, once for every command: bad input (an `AnimerecError`, such as
`training.errors.TrainingError`, or an OSError naming a missing file) is one line `error: ...` and
exit 2; anything else is logged with its traceback and exits 1. `--debug` (before or after the
command) lets the exception propagate instead, for the raw traceback or a post-mortem debugger.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from inference.errors import AnimerecError
from inference.redaction import install_exception_hooks, redact
from training.errors import install_redaction

log = logging.getLogger("training")

# OSError: a missing input or checkpoint, a full disk, a permission: the message names the file.
EXPECTED_ERRORS = (AnimerecError, OSError)

COMMANDS: dict[str, tuple[str, str]] = {
    "catalog": (
        "training.catalog_build",
        "build the anime catalogue (offline files or live AniList)",
    ),
    "import": (
        "training.importers",
        "import interactions (MovieLens, CooperUnion, MAL CSV/XML, crawl store) to Parquet",
    ),
    "crawl": ("training.crawl", "fetch many users' lists into a resumable store"),
    "synthesize": (
        "training.synthesize",
        "write synthetic anime-like histories of any size to Parquet",
    ),
    "build": ("training.build", "Parquet -> sorted CSR arrays + deterministic splits"),
    "evaluate": (
        "training.evaluate",
        "rank held-out items with baselines and our models; print and save a table",
    ),
    "pretrain": ("training.pretrain", "masked pretraining of the list transformer"),
    "finetune": ("training.finetune", "fine-tune the transformer on recent data"),
    "ranker": ("training.ranker", "train the listwise ranker on the fine-tuned model's outputs"),
    "sasrec": ("training.sasrec", "train the SASRec reference baseline"),
    "vocab-catalog": (
        "training.vocab_catalog",
        "the catalogue in a dataset's vocabulary order (training inputs, bundles)",
    ),
    "export": ("training.export", "export a model bundle to ONNX with parity checks"),
}


DEBUG_HELP = "let errors propagate with their full traceback instead of a one-line report"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        # Also accepted after the command; SUPPRESS keeps an absent one from resetting the flag
        # given before it.
        command_parser.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP
        )
        if name == chosen:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name == module_name:
                    parser.error(f"command {name!r} is not available in this version")
                raise
            module.configure_parser(command_parser)
            command_parser.set_defaults(run=module.main)
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    install_redaction()
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except EXPECTED_ERRORS as exc:
        if args.debug:
            raise
        print(redact(f"error: {one_line(exc)}"), file=sys.stderr)
        return 2
    except Exception as exc:
        if args.debug:
            raise
        log.exception("`python -m training %s` failed", args.command)
        print(
            redact(f"error: unexpected {type(exc).__name__}: {one_line(exc)}")
            + " (traceback above; --debug lets it propagate)",
            file=sys.stderr,
        )
        return 1


def one_line(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


if __name__ == "__main__":
    install_exception_hooks()  # --debug: the raw traceback, the MAL client id masked
    sys.exit(main())
