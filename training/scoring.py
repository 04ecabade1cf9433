"""A trained list transformer asked about histories: watch logits, predicted scores, status odds.

Used by the per-epoch validation, the ranker's features and the `evaluate` adapters, so all three
see the model exactly as serving will (inputs from `inference.encoding`, query stamped "now").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from inference.animelist import N_STATUS_CODES, STATUS_CODES, Status
from inference.encoding import PAD_ITEM, EntryArrays, encode
from training.model import ListTransformer

FIELDS = ("items", "scores", "statuses", "times", "progress", "positions")
DROPPED = STATUS_CODES[Status.DROPPED]


def _inputs(
    model: ListTransformer,
    histories: Sequence[EntryArrays],
    has_times: bool,
    episodes: np.ndarray | None,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    # SASRec (no entry head) reads the last entry's state; our model the appended "now" query.
    query = model.cfg.entry_head
    enc = encode(
        histories,
        model.cfg.max_len,
        has_times=has_times,
        episodes=episodes,
        append_query=query,
        use_times=model.cfg.use_times,
    )
    return {name: torch.from_numpy(getattr(enc, name)).to(device) for name in FIELDS}


@torch.no_grad()
def user_states(
    model: ListTransformer,
    histories: Sequence[EntryArrays],
    *,
    has_times: bool,
    episodes: np.ndarray | None = None,
    device: torch.device | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """[n, d] float32: the state each history leaves in the last column."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    states = []
    for start in range(0, len(histories), batch_size):
        chunk = histories[start : start + batch_size]
        inputs = _inputs(model, chunk, has_times, episodes, device)
        hidden = model(inputs)
        rows = torch.arange(len(chunk), device=device)
        last = torch.full_like(rows, hidden.shape[1] - 1)
        # The newest entry sits just before the query (none when the history is empty).
        newest = (
            torch.where(inputs["items"][:, -2] != PAD_ITEM, last - 1, -1)
            if hidden.shape[1] > 1
            else torch.full_like(rows, -1)
        )
        states.append(model.query_states(hidden, rows, last, newest).float())
    model.train(was_training)
    if not states:
        return torch.zeros((0, model.cfg.d_model), device=device)
    return torch.cat(states)


@torch.no_grad()
def watch_logits(model: ListTransformer, states: torch.Tensor) -> np.ndarray:
    """float32 [n, n_items] over the whole vocabulary."""
    return model.item_logits(states).float().cpu().numpy()


@torch.no_grad()
def entry_predictions(
    model: ListTransformer, states: torch.Tensor, rows: np.ndarray, items: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted score (clipped to 1–10) and probability of dropping `items[i]` for user `rows[i]`."""
    if len(items) == 0:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.float32)
    device = states.device
    score, status_logits = model.entry_outputs(
        states[torch.as_tensor(rows, device=device)],
        torch.as_tensor(np.asarray(items, dtype=np.int64), device=device),
    )
    drop = torch.softmax(status_logits.float(), dim=-1)[:, DROPPED]
    return score.float().clamp(1.0, 10.0).cpu().numpy(), drop.cpu().numpy()


@torch.no_grad()
def status_softmax(
    model: ListTransformer, states: torch.Tensor, rows: np.ndarray, items: np.ndarray
) -> np.ndarray:
    """float32 [len(items), N_STATUS_CODES]: the status head's softmax for `items[i]`, user `rows[i]`."""
    if len(items) == 0:
        return np.zeros((0, N_STATUS_CODES), dtype=np.float32)
    device = states.device
    _, status_logits = model.entry_outputs(
        states[torch.as_tensor(rows, device=device)],
        torch.as_tensor(np.asarray(items, dtype=np.int64), device=device),
    )
    return torch.softmax(status_logits.float(), dim=-1).cpu().numpy()
