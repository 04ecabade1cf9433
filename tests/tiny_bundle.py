"""A tiny trained bundle for the export, engine and CLI tests: the real commands on a planted set.

The planted dataset (tests.training.tiny_data) has 24 items with MAL ids 1000..1023; the catalogue
here gives them titles, media types, genres, franchises (1001 is the sequel of 1000), one adult title,
one not yet aired, one recap and popularity, so every filter has something to act on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from inference.animelist import PartialDate
from inference.catalog import Catalog, CatalogItem, save_catalog
from tests.training.tiny_data import N_ITEMS, planted_dataset

FIRST_ID = 1000
SEQUEL_ID, PREQUEL_ID = 1001, 1000
ADULT_ID = 1005
UNAIRED_ID = 1006
RECAP_ID = 1007
MOVIE_IDS = (1002, 1010, 1018)
GENRES = ("Action", "Comedy", "Drama", "Romance")


def tiny_catalog() -> Catalog:
    items = []
    for i in range(N_ITEMS):
        mal_id = FIRST_ID + i
        fields: dict[str, object] = {
            "media_type": "movie" if mal_id in MOVIE_IDS else "tv",
            "genres": (GENRES[i % 4], GENRES[(i + 1) % 4]) if i % 3 else (GENRES[i % 4],),
            "popularity": 1000 * (N_ITEMS - i),
            "franchise_id": mal_id,
            "episodes": 12,
            "start_date": PartialDate(2010 + i % 10, 4, 1),
        }
        if mal_id == SEQUEL_ID:
            fields["franchise_id"] = PREQUEL_ID
            fields["relations"] = (("prequel", PREQUEL_ID),)
            fields["start_date"] = PartialDate(2011, 4, 1)
        if mal_id == PREQUEL_ID:
            fields["relations"] = (("sequel", SEQUEL_ID),)
        if mal_id == ADULT_ID:
            fields["adult"] = True
        if mal_id == UNAIRED_ID:
            fields["airing_status"] = "not_yet_aired"
            fields["start_date"] = PartialDate(2099, 1, 1)
        if mal_id == RECAP_ID:
            fields["media_type"] = "special"
            fields["title"] = "Show 7 Recap"
        title = str(fields.pop("title", f"Show {i}"))
        items.append(CatalogItem(mal_id=mal_id, title=title, **fields))  # type: ignore[arg-type]
    return Catalog(items, {"source": "tests"})


def build_tiny_bundle(root: Path, *, int8: bool = True, list_relative: bool = False) -> Path:
    """Fine-tune -> ranker -> export with the project's commands; returns the bundle folder.
    `list_relative`: the ranker reads the list-relative features too."""
    from training import ranker
    from training.batches import UserParts, load_episodes
    from training.dataset import Dataset
    from training.export import export_bundle
    from training.finetune import FinetuneConfig, FinetuneJob
    from training.model import ListTransformer
    from training.train import Dist, fit, load_config

    data = planted_dataset(root / "planted", has_times=False)
    catalog_path = root / "catalog.json.gz"
    save_catalog(tiny_catalog(), catalog_path)
    parts = UserParts(Dataset(data), "loo")
    cfg = load_config(
        FinetuneConfig,
        "training/configs/tiny.toml",
        [
            f"out_dir={root}",
            "name=ft",
            "train.epochs=1",
            "train.steps_per_epoch=12",
            "train.val_users=0",
            f"data.path={data}",
            f"data.catalog={catalog_path}",
        ],
    )
    cfg.model.n_items = N_ITEMS
    torch.manual_seed(0)
    fit(
        cfg,
        ListTransformer(cfg.model),
        FinetuneJob(cfg, parts, load_episodes(str(catalog_path), N_ITEMS)),
        Dist(0, 1, torch.device("cpu")),
    )
    (root / "rk.toml").write_text("[train]\nval_users = 0\nepochs = 2\nbatch_size = 8\n")
    args = argparse.Namespace(
        config=str(root / "rk.toml"),
        device="cpu",
        resume=False,
        overrides=[
            f"data.path={data}",
            f"data.catalog={catalog_path}",
            f"out_dir={root}",
            "name=rk",
            f"ranker.finetuned={root}/ft/ckpt.pt",
            "ranker.candidates=12",
            "ranker.negatives=4",
            "ranker.holdout_users=0",
            f"ranker.list_relative={str(list_relative).lower()}",
        ],
    )
    if ranker.main(args) != 0:
        raise RuntimeError("the tiny ranker did not train")
    out = root / "bundle"
    export_bundle(root / "ft" / "ckpt.pt", root / "rk" / "ckpt.pt", catalog_path, out, int8=int8)
    return out


def export_xml(entries: list[tuple[int, str, int, int]]) -> str:
    """A MyAnimeList XML export of (MAL id, status name, score 0-10, episodes watched) rows."""
    rows = []
    for mal_id, status, score, watched in entries:
        rows.append(
            "<anime>"
            f"<series_animedb_id>{mal_id}</series_animedb_id>"
            f"<series_title><![CDATA[Title {mal_id}]]></series_title>"
            "<series_type>TV</series_type><series_episodes>12</series_episodes>"
            f"<my_watched_episodes>{watched}</my_watched_episodes>"
            "<my_start_date>0000-00-00</my_start_date><my_finish_date>0000-00-00</my_finish_date>"
            f"<my_score>{score}</my_score><my_status>{status}</my_status>"
            "<my_times_watched>0</my_times_watched><my_rewatching>0</my_rewatching>"
            "</anime>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8" ?><myanimelist><myinfo>'
        "<user_name>tester</user_name><user_export_type>1</user_export_type></myinfo>"
        + "".join(rows)
        + "</myanimelist>"
    )
