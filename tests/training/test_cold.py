"""Titles the model has never seen: the cold split, the content baseline, the `cold` protocol and
the model's content part (an item without interactions is ranked by its content)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.catalog import Catalog, CatalogItem, save_catalog
from training.__main__ import main as cli
from training.batches import UserParts
from training.content import liked_mask
from training.dataset import TEST, TRAIN, Dataset, write_dataset, write_split
from training.evaluate import EvaluationError, cold_note
from training.finetune import FinetuneConfig, FinetuneJob
from training.model import ListTransformer, ModelConfig
from training.pretrain import attach_content, prepare
from training.scoring import user_states, watch_logits
from training.splits import COLD_STRATA, cold_items, cold_split
from training.train import FIELDS_IN, Dist, fit, load_config, to_device

TINY = "training/configs/tiny.toml"
N_ITEMS = 24
GROUP = 12  # items 0..11 are genre "A", 12..23 genre "B"
HIDDEN = (5, 17)  # one title of each genre, never in training


# ------------------------------------------------------------------------------------ the split


def test_cold_items_take_a_tenth_of_every_popularity_stratum():
    counts = np.arange(1, 201)  # item i has i + 1 interactions: strata are runs of 20 items
    hidden = cold_items(counts, seed=0)
    assert len(hidden) == 20
    per_stratum = np.bincount(hidden // 20, minlength=COLD_STRATA)
    assert per_stratum.tolist() == [2] * COLD_STRATA  # rare and popular titles alike
    assert np.array_equal(hidden, cold_items(counts, seed=0))  # seeded
    assert not np.array_equal(hidden, cold_items(counts, seed=1))


@given(st.lists(st.integers(0, 50), min_size=1, max_size=300), st.integers(0, 3))
@settings(max_examples=50, deadline=None)
def test_cold_items_are_items_with_interactions_and_never_repeat(counts, seed):
    counts = np.array(counts)
    hidden = cold_items(counts, seed)
    assert len(np.unique(hidden)) == len(hidden)
    assert (counts[hidden] > 0).all()
    present = int((counts > 0).sum())
    strata = np.array_split(np.arange(present), COLD_STRATA)
    assert len(hidden) == sum(int(np.floor(len(s) * 0.1 + 0.5)) for s in strata)


def test_cold_split_holds_out_every_interaction_with_a_hidden_item_and_nothing_else():
    rng = np.random.default_rng(0)
    items = rng.integers(0, 300, size=5000)
    labels = cold_split(items, 300, seed=0, chunk_rows=777)  # chunking must not matter
    hidden = cold_items(np.bincount(items, minlength=300), seed=0)
    assert np.array_equal(labels == TEST, np.isin(items, hidden))
    assert set(np.unique(labels).tolist()) == {TRAIN, TEST}
    assert np.array_equal(labels, cold_split(items, 300, seed=0))


# ---------------------------------------------------------------------------------------- data


def genre_catalog(path: Path) -> Path:
    items = [
        CatalogItem(
            mal_id=1000 + i,
            title=f"title {i}",
            media_type="tv",
            genres=("A",) if i < GROUP else ("B",),
            popularity=1000,
        )
        for i in range(N_ITEMS)
    ]
    save_catalog(Catalog(items), path)
    return path


def genre_dataset(path: Path, n_users: int = 96, seed: int = 0) -> Path:
    """Each user lists 7 titles of one genre only (even users A, odd users B), scored; the titles
    in HIDDEN are held out entirely (`cold` split)."""
    rng = np.random.default_rng(seed)
    items, offsets = [], [0]
    for user in range(n_users):
        base = 0 if user % 2 == 0 else GROUP
        chosen = rng.choice(GROUP, size=7, replace=False) + base
        items.append(chosen)
        offsets.append(offsets[-1] + len(chosen))
    all_items = np.concatenate(items)
    n = len(all_items)
    arrays = {
        "items": all_items,
        "scores": np.full(n, 8),
        "statuses": np.ones(n),
        "progress": np.zeros(n),
        "times": np.full(n, -1),
    }
    write_dataset(
        path,
        arrays,
        np.array(offsets),
        list(range(1000, 1000 + N_ITEMS)),
        np.array([f"u{i}" for i in range(n_users)]),
        {"name": "genres", "synthetic": True, "has_times": False},
    )
    write_split(path, "cold", np.where(np.isin(all_items, HIDDEN), TEST, TRAIN))
    genre_catalog(path / "catalog.json.gz")
    return path


@pytest.fixture(scope="module")
def genres(tmp_path_factory) -> Path:
    return genre_dataset(tmp_path_factory.mktemp("cold") / "genres")


# ---------------------------------------------------------------------- baseline and protocol


def test_liked_is_at_or_above_the_mean_score_or_everything_unscored():
    assert liked_mask(np.array([8, 6, 0, 7])).tolist() == [True, False, False, True]
    assert liked_mask(np.array([0, 0])).tolist() == [True, True]


def test_cold_protocol_content_baseline_finds_hidden_titles_popularity_cannot(genres, tmp_path):
    out = tmp_path / "cold.json"
    catalog = genres / "catalog.json.gz"
    code = cli(
        [
            "evaluate",
            "--data",
            str(genres),
            "--protocol",
            "cold",
            "--models",
            f"popularity,content:{catalog}",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    results = json.loads(out.read_text())
    rows = {row["model"].split(":")[0]: row["metrics"] for row in results["rows"]}
    # A hidden title has no training interactions: popularity puts it last among 17 unseen.
    assert rows["popularity"]["Recall@10"] == 0.0
    # Genre cosine ranks the user's own-genre hidden title within the 6 same-genre candidates.
    assert rows["content"]["Recall@10"] == 1.0
    assert any(note.startswith("cold: 2 of 24 titles") for note in results["notes"])


def test_cold_note_refuses_a_split_whose_hidden_titles_are_trained_on(genres):
    dataset = Dataset(genres)
    labels = np.array(dataset.split("cold"))
    assert "2 of 24" in cold_note(dataset, labels)
    leaky = labels.copy()
    leaky[np.flatnonzero(np.asarray(dataset.items) == HIDDEN[0])[0]] = TRAIN
    with pytest.raises(EvaluationError, match="not a cold split"):
        cold_note(dataset, leaky)


def test_content_baseline_refuses_a_catalogue_of_another_vocabulary(genres, tmp_path):
    other = tmp_path / "other.json.gz"
    save_catalog(Catalog([CatalogItem(mal_id=1, title="x")]), other)
    code = cli(
        [
            "evaluate",
            "--data",
            str(genres),
            "--protocol",
            "cold",
            "--models",
            f"content:{other}",
            "--out",
            str(tmp_path / "x.json"),
        ]
    )
    assert code != 0


# ------------------------------------------------------------------------------------- the model


def content_model(id_dropout: float = 0.0) -> ListTransformer:
    torch.manual_seed(0)
    cfg = ModelConfig(n_items=6, max_len=8, d_model=16, n_heads=2, content_dim=3)
    cfg.id_dropout = id_dropout
    model = ListTransformer(cfg)
    vectors = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1]])
    model.set_content(vectors, torch.tensor([True, True, True, True, False, False]))
    return model


def test_plain_model_has_no_content_state():
    model = ListTransformer(ModelConfig(n_items=6, max_len=8, d_model=16, n_heads=2))
    assert not any("content" in key or "has_id" in key for key in model.state_dict())
    with pytest.raises(ValueError):
        model.set_content(torch.zeros(6, 3), torch.ones(6, dtype=torch.bool))


def test_an_item_without_interactions_is_read_from_its_content_only():
    model = content_model().eval()
    states = torch.randn(3, 16)
    before = model.item_logits(states)
    with torch.no_grad():
        model.item_emb.weight[2 + 4] += 5.0  # item 4 has no ID part: its embedding is unused
        model.item_bias[4] += 5.0
        model.item_emb.weight[2 + 0] += 5.0  # item 0 has one
    after = model.item_logits(states)
    assert torch.allclose(before[:, 4], after[:, 4]) and torch.allclose(before[:, 5], after[:, 5])
    assert not torch.allclose(before[:, 0], after[:, 0])
    with torch.no_grad():
        model.content[4] = torch.tensor([1.0, 1.0, 1.0])  # its content is what moves it
    assert not torch.allclose(model.item_logits(states)[:, 4], after[:, 4])


def test_id_dropout_applies_in_training_only_and_is_shared_by_inputs_and_outputs():
    model = content_model(id_dropout=1.0)
    batch = {name: torch.zeros(1, 3, dtype=torch.long) for name in FIELDS_IN}
    batch["items"] = torch.tensor([[2, 3, 4]])
    batch["statuses"] = torch.ones(1, 3, dtype=torch.long)
    states = torch.randn(2, 16)
    model.eval()
    with torch.no_grad():
        full = model.item_logits(states)
        model.train()
        model(batch)
        dropped = model.item_logits(states)  # every ID part dropped: content only
        content = (model.content - model.content_shift) * model.content_scale
        content_only = states @ model.content_proj(content).t() + model.content_bias(
            content
        ).squeeze(-1)
    assert torch.allclose(dropped[:, :4], content_only[:, :4], atol=1e-6)
    assert not torch.allclose(full[:, :4], dropped[:, :4])
    # Titles without training interactions stay out of the training softmax; served, they rank.
    assert torch.isneginf(dropped[:, 4:]).all() and torch.isfinite(full).all()


def test_planted_genres_rank_a_never_seen_title_by_its_content(genres, tmp_path):
    overrides = [
        f"data.path={genres}",
        "data.split=cold",
        f"data.content_catalog={genres / 'catalog.json.gz'}",
        f"out_dir={tmp_path}",
        "name=cold",
        "model.id_dropout=0.5",
        "train.epochs=8",
        "train.lr=0.01",
        "train.val_users=0",
        "finetune.cuts_per_user=4",
    ]
    cfg = load_config(FinetuneConfig, TINY, overrides)
    parts, _ = prepare(cfg)
    torch.manual_seed(0)
    model = ListTransformer(cfg.model)
    attach_content(model, cfg, parts)
    assert model.has_id.tolist() == [i not in HIDDEN for i in range(N_ITEMS)]
    fit(cfg, model, FinetuneJob(cfg, parts, None), Dist(0, 1, torch.device("cpu")))
    model.eval()
    users = np.arange(Dataset(genres).n_users)
    histories = [parts.part(int(u)) for u in users]
    logits = watch_logits(model, user_states(model, histories, has_times=False))
    a_users, b_users = users % 2 == 0, users % 2 == 1
    # The hidden genre-A title outranks the hidden genre-B one for genre-A users, and vice versa.
    assert (logits[a_users, HIDDEN[0]] > logits[a_users, HIDDEN[1]]).mean() >= 0.9
    assert (logits[b_users, HIDDEN[1]] > logits[b_users, HIDDEN[0]]).mean() >= 0.9
    # And it stands among its genre's trained titles, above the other genre's.
    for rows, own, other in ((a_users, 0, GROUP), (b_users, GROUP, 0)):
        hidden = HIDDEN[0] if own == 0 else HIDDEN[1]
        others = [i for i in range(other, other + GROUP) if i not in HIDDEN]
        assert (logits[rows, hidden][:, None] > logits[rows][:, others]).mean() >= 0.9
    ckpt = torch.load(tmp_path / "cold" / "ckpt.pt", weights_only=False)
    assert ckpt["content_layout"]["genres"] == ["A", "B"]


def test_content_catalogue_of_another_size_is_refused(genres, tmp_path):
    small = tmp_path / "small.json.gz"
    save_catalog(Catalog([CatalogItem(mal_id=1000, title="x")]), small)
    cfg = load_config(
        FinetuneConfig,
        TINY,
        [f"data.path={genres}", "data.split=cold", f"data.content_catalog={small}"],
    )
    parts = UserParts(Dataset(genres), "cold")
    cfg.model.n_items, cfg.model.content_dim = N_ITEMS, 10
    model = ListTransformer(cfg.model)
    with pytest.raises(Exception, match="vocab-catalog"):
        attach_content(model, cfg, parts)


def test_to_device_roundtrip_unchanged():
    # The content model's batch fields are the plain encoder's: nothing new to move.
    batch = {name: np.zeros((1, 2), dtype=np.int64) for name in FIELDS_IN}
    moved = to_device(batch, torch.device("cpu"), FIELDS_IN)
    assert set(moved) == set(FIELDS_IN)


def test_a_column_every_title_shares_moves_nothing():
    model = content_model().eval()
    states = torch.randn(3, 16)
    vectors = model.content.clone()
    vectors[:, 0] = 0.25  # the same for every title
    model.set_content(vectors, model.has_id.clone())
    before = model.item_logits(states)
    vectors[:, 0] = 3.0
    model.set_content(vectors, model.has_id.clone())
    assert torch.allclose(before, model.item_logits(states), atol=1e-6)
    assert torch.allclose(
        model.item_vectors() @ states.t(),
        before.t() - model.item_logits(torch.zeros(1, 16)).t(),
        atol=1e-5,
    )


def test_a_content_model_exports_to_onnx_with_parity_and_says_which_titles_are_new(tmp_path):
    from inference.encoding import ItemFacts
    from training import export

    torch.manual_seed(0)
    cfg = ModelConfig(n_items=40, max_len=12, d_model=16, n_heads=2, content_dim=5)
    model = ListTransformer(cfg)
    trained = torch.arange(40) % 4 != 0  # every fourth title is new to the model
    model.set_content(torch.randn(40, 5), trained)
    model.eval()
    graph = export.EncoderGraph(model).eval()
    path = tmp_path / "encoder.onnx"
    export.export_encoder(graph, path, model.cfg.n_items, model.cfg.max_len)
    parity = export.encoder_parity(graph, path, model.cfg.n_items, model.cfg.max_len)
    assert parity["passed"], parity
    facts = ItemFacts(
        log_popularity=np.zeros(40, dtype=np.float32),
        franchise=np.full(40, -1),
        genres=np.zeros((40, 0), dtype=np.float32),
    )
    export.write_item_facts(tmp_path / "facts.npz", model, facts)
    saved = np.load(tmp_path / "facts.npz")
    assert saved["item_trained"].tolist() == trained.tolist()
    with torch.no_grad():
        assert np.allclose(saved["item_embeddings"], model.item_vectors().numpy())
