"""`python -m training <command>`: the maintainers' CLI.

Each command lives in its own module exposing `configure_parser(parser)` and `main(args) -> int`;
modules are imported only when their command runs, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
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
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
