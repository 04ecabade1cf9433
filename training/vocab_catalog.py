"""`python -m training vocab-catalog`: the catalogue in a dataset's vocabulary order.

A model's outputs are indexed by the dataset's vocabulary, so everything that reads catalogue facts
per item (episode counts for the progress input, the ranker's franchise and genre features, the
bundle's own catalogue) needs the catalogue rows in that order. This writes the project's derived
table: the dataset's items looked up by MAL id in a full catalogue, in vocabulary order. An item the
catalogue does not know keeps its id and a placeholder title.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from inference.catalog import Catalog, CatalogItem, load_catalog, save_catalog
from inference.errors import CatalogError


def vocab_keys(dataset_path: Path) -> list[int]:
    """The dataset's MAL ids in vocabulary order (`item_keys.json`)."""
    keys_path = dataset_path / "item_keys.json"
    try:
        keys = json.loads(keys_path.read_text())
    except FileNotFoundError as exc:
        raise CatalogError(
            f"{keys_path} does not exist: is {dataset_path} a built dataset?"
        ) from exc
    if not isinstance(keys, list) or not all(isinstance(k, int) for k in keys):
        raise CatalogError(f"{keys_path} is not a list of integer MAL ids")
    return keys


def vocab_catalog(full: Catalog, keys: list[int], dataset_name: str) -> tuple[Catalog, int]:
    """The rows of `full` for `keys`, in that order; also how many keys `full` lacked."""
    items: list[CatalogItem] = []
    missing = 0
    for mal_id in keys:
        item = full.by_mal_id(mal_id)
        if item is None:
            missing += 1
            item = CatalogItem(mal_id=mal_id, title=f"MyAnimeList #{mal_id}")
        items.append(item)
    info = dict(full.info)
    info["vocabulary"] = {
        "dataset": dataset_name,
        "items": len(keys),
        "missing_from_catalogue": missing,
        "full_catalogue_items": len(full),
    }
    return Catalog(items, info), missing


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="a built dataset directory")
    parser.add_argument("--catalog", required=True, type=Path, help="the full catalogue")
    parser.add_argument(
        "--out", required=True, type=Path, help="where to write (.json or .json.gz)"
    )


def main(args: argparse.Namespace) -> int:
    full = load_catalog(args.catalog)
    catalog, missing = vocab_catalog(full, vocab_keys(args.data), args.data.name)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_catalog(catalog, args.out)
    print(f"{args.out}: {len(catalog)} items in vocabulary order, {missing} not in {args.catalog}")
    return 0
