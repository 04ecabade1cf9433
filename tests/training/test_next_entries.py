"""The one-query-per-entry fine-tune: every query sees only the entries before its target."""

import numpy as np
import pytest
import torch

from inference.encoding import FIELDS, MASK_ITEM, PAD_ITEM, TIME_NOW, TIME_UNKNOWN, encode
from tests.training.tiny_data import N_ITEMS, planted_dataset
from training.batches import UserParts, next_entries_batch
from training.dataset import Dataset
from training.errors import ConfigError
from training.finetune import FinetuneConfig, FinetuneJob, build_model
from training.model import ListTransformer, ModelConfig
from training.scoring import user_states, watch_logits
from training.train import FIELDS_IN, Dist, fit, load_config, to_device

TINY = "training/configs/tiny.toml"


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return UserParts(Dataset(planted_dataset(tmp_path_factory.mktemp("d") / "planted")), "loo")


def _batch(parts, users, max_len=12):
    seeds = np.arange(len(users), dtype=np.uint64) + 7
    return next_entries_batch(parts, users, seeds, max_len=max_len, use_times=False)


def test_every_training_entry_of_the_window_is_a_target_once(parts):
    users = np.arange(8)
    batch = _batch(parts, users, max_len=50)
    for row, user in enumerate(users):
        train_items = parts.part(int(user)).items
        targets = batch["target_items"][row]
        # Entries e_1..e_n are targets (e_0 has nothing before it), each exactly once.
        assert sorted(targets[targets >= 0].tolist()) == sorted(train_items[1:].tolist())
        queries = batch["query_sees"][row] >= 0
        assert (batch["items"][row][queries] == MASK_ITEM).all()
        assert (batch["times"][row][queries] == TIME_NOW).all()
        entries = (batch["items"][row] != PAD_ITEM) & (batch["items"][row] != MASK_ITEM)
        assert (batch["times"][row][entries] == TIME_UNKNOWN).all()  # no per-query "now"


def test_a_query_cannot_see_its_target_or_anything_after_it(parts):
    """Changing entries at or after a query's target leaves that query's state unchanged."""
    torch.manual_seed(0)
    model = ListTransformer(
        ModelConfig(n_items=N_ITEMS, max_len=16, d_model=16, n_heads=2, dropout=0.0, causal=True)
    ).eval()
    longest = int(np.argmax(parts.counts[0]))
    batch = _batch(parts, np.array([longest]), max_len=16)
    fields = (*FIELDS_IN, "query_sees")
    hidden = model(to_device(batch, torch.device("cpu"), fields))
    sees = batch["query_sees"][0]
    target_cols = np.flatnonzero(batch["target_items"][0] >= 0)
    checked = 0
    for col in target_cols:
        limit = int(sees[col])
        if limit + 1 >= len(sees) or batch["items"][0, limit + 1] in (PAD_ITEM, MASK_ITEM):
            continue  # the last query: nothing after it among the entry tokens
        changed = {k: v.copy() for k, v in batch.items()}
        later = np.arange(limit + 1, len(sees))
        later = later[(sees[later] < 0) & (batch["items"][0, later] != PAD_ITEM)]
        changed["items"][0, later] = (changed["items"][0, later] + 5 - 2) % N_ITEMS + 2
        changed["scores"][0, later] = 1
        other = model(to_device(changed, torch.device("cpu"), fields))
        assert torch.allclose(hidden[0, col], other[0, col], atol=1e-6)
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("read_last_entry", [False, True])
def test_serving_form_matches_the_last_training_query(parts, read_last_entry):
    """The state of the last query in a training row equals what scoring computes for that history."""
    model = _small_model(read_last_entry=read_last_entry)
    user = 5
    history = parts.part(user)
    batch = next_entries_batch(
        parts, np.array([user]), np.array([1], dtype=np.uint64), max_len=16, use_times=False
    )
    inputs = to_device(batch, torch.device("cpu"), (*FIELDS_IN, "query_sees"))
    hidden = model(inputs)
    width = int(np.flatnonzero(batch["query_sees"][0] >= 0).min())  # the first query column
    assert batch["target_items"][0, width] == history.items[-1]
    row, col = torch.tensor([0]), torch.tensor([width])
    trained = model.query_states(hidden, row, col, inputs["query_sees"][0, col])
    served = user_states(model, [history.select(np.arange(len(history) - 1))], has_times=True)
    assert torch.allclose(trained[0], served[0], atol=1e-5)


def test_next_entries_finetune_learns_the_planted_cycle(tmp_path, parts):
    cfg = load_config(
        FinetuneConfig,
        TINY,
        [
            f"out_dir={tmp_path}",
            "name=ne",
            # 30 epochs left "repeat the last entry" within 0.04 of the true next item for one
            # user, and the thread count decided which won; at 45 the margin is over 3 logits.
            "train.epochs=45",
            "train.lr=0.01",
            "finetune.next_entries=true",
            "finetune.cuts_per_user=1",
        ],
    )
    cfg.model.n_items = N_ITEMS
    model = build_model(cfg, parts)
    assert model.cfg.causal and not model.cfg.use_times
    state = fit(cfg, model, FinetuneJob(cfg, parts, None), Dist(0, 1, torch.device("cpu")))
    assert state.history[-1]["loss_item"] < 0.5 * state.history[0]["loss_item"]
    assert state.history[-1]["val_HR@10"] >= 0.9
    histories = [parts.part(u) for u in range(4)]
    logits = watch_logits(model, user_states(model, histories, has_times=True))
    nxt = [(int(h.items[-1]) + 1) % N_ITEMS for h in histories]
    assert all(int(np.argmax(row)) == n for row, n in zip(logits, nxt, strict=True))


def _small_model(**overrides) -> ListTransformer:
    """A fresh causal 16-wide model without entry times (seed 0), in eval mode."""
    torch.manual_seed(0)
    cfg = dict(
        n_items=N_ITEMS,
        max_len=16,
        d_model=16,
        n_heads=2,
        dropout=0.0,
        causal=True,
        use_times=False,
    )
    return ListTransformer(ModelConfig(**{**cfg, **overrides})).eval()


def _entry_model(**overrides) -> ListTransformer:
    return _small_model(**{"readout": "entry", **overrides})


def test_without_queries_each_entry_is_asked_for_the_next_one(parts):
    users = np.arange(8)
    seeds = np.arange(len(users), dtype=np.uint64) + 7
    with_queries = next_entries_batch(parts, users, seeds, max_len=50, use_times=False)
    batch = next_entries_batch(parts, users, seeds, max_len=50, use_times=False, queries=False)
    assert "query_sees" not in batch
    width = batch["items"].shape[1]
    # The same rows as serving encodes them (the window, the MASK column, positions), no queries.
    for name in FIELDS_IN:
        assert (batch[name] == with_queries[name][:, :width]).all(), name
    for row, user in enumerate(users):
        train_items = parts.part(int(user)).items
        items, targets = batch["items"][row], batch["target_items"][row]
        entries = np.flatnonzero((items != PAD_ITEM) & (items != MASK_ITEM))
        # Entry e_k asks for e_{k+1}: targets e_1..e_n in the entries' columns, nothing elsewhere.
        assert targets[entries].tolist() == train_items[1:].tolist()
        assert (np.delete(targets, entries) == -1).all()
        assert (batch["target_scores"][row][entries] == parts.part(int(user)).scores[1:]).all()


def test_the_entry_readout_serves_the_state_it_was_trained_on(parts):
    """The state of a history's newest entry in a training row equals what scoring (and serving,
    with its MASK query appended) computes for that history."""
    model = _entry_model()
    user = 5
    history = parts.part(user)
    batch = next_entries_batch(
        parts,
        np.array([user]),
        np.array([1], dtype=np.uint64),
        max_len=16,
        use_times=False,
        queries=False,
    )
    hidden = model(to_device(batch, torch.device("cpu"), FIELDS_IN))
    col = int(np.flatnonzero(batch["target_items"][0] >= 0).max())  # e_{n-1}, asked for e_n
    assert batch["target_items"][0, col] == history.items[-1]
    row, cols = torch.tensor([0]), torch.tensor([col])
    trained = model.query_states(hidden, row, cols, cols)
    assert torch.equal(trained[0], hidden[0, col])
    served = user_states(model, [history.select(np.arange(len(history) - 1))], has_times=True)
    assert torch.allclose(trained[0], served[0], atol=1e-5)
    # An empty history has no entry to read: the state is zero and the logits are the biases.
    empty = user_states(model, [history.select(np.arange(0))], has_times=True)
    assert torch.equal(empty, torch.zeros_like(empty))


def test_the_entry_readout_needs_causal_attention_and_the_next_entries_fine_tune(tmp_path, parts):
    with pytest.raises(ConfigError, match="causal"):
        _entry_model(causal=False)
    with pytest.raises(ConfigError, match="readout"):
        _entry_model(readout="pooled")
    cfg = load_config(FinetuneConfig, TINY, [f"out_dir={tmp_path}", "model.readout=entry"])
    cfg.model.n_items = N_ITEMS
    cfg.model.causal = True
    with pytest.raises(ConfigError, match="next_entries"):
        FinetuneJob(cfg, parts, None)


def test_the_entry_readout_finetune_learns_the_planted_cycle(tmp_path, parts):
    cfg = load_config(
        FinetuneConfig,
        TINY,
        [
            f"out_dir={tmp_path}",
            "name=ne-entry",
            # After 20 epochs the true next item leads by 3 logits or more.
            "train.epochs=20",
            "train.lr=0.01",
            "finetune.next_entries=true",
            "finetune.cuts_per_user=1",
            "model.readout=entry",
        ],
    )
    cfg.model.n_items = N_ITEMS
    model = build_model(cfg, parts)
    assert model.cfg.readout == "entry" and model.cfg.causal
    state = fit(cfg, model, FinetuneJob(cfg, parts, None), Dist(0, 1, torch.device("cpu")))
    assert state.history[-1]["loss_item"] < 0.5 * state.history[0]["loss_item"]
    assert state.history[-1]["val_HR@10"] >= 0.9
    histories = [parts.part(u) for u in range(4)]
    logits = watch_logits(model, user_states(model, histories, has_times=True))
    nxt = [(int(h.items[-1]) + 1) % N_ITEMS for h in histories]
    assert all(int(np.argmax(row)) == n for row, n in zip(logits, nxt, strict=True))


def test_an_entry_readout_model_exports_with_parity(tmp_path, parts):
    from training import export

    model = _entry_model()
    graph = export.EncoderGraph(model).eval()
    path = tmp_path / "encoder.onnx"
    export.export_encoder(graph, path, N_ITEMS, model.cfg.max_len)
    parity = export.encoder_parity(graph, path, N_ITEMS, model.cfg.max_len)
    assert parity["passed"], parity
    # The graph's state is the newest entry's, as scoring reads it.
    history = parts.part(3)
    served = user_states(model, [history], has_times=True)[0].numpy()
    enc = encode([history], model.cfg.max_len, has_times=True, append_query=True, use_times=False)
    inputs = {name: getattr(enc, name) for name in FIELDS}
    state = export._session(path).run(["user_vector"], inputs)[0][0]
    assert np.abs(state - served).max() <= 1e-4
