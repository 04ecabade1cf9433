"""The list transformer (docs/model.md#transformer): one token per list entry, pre-LN blocks, tied item output.

Each token is the sum of embeddings of its item, score, status, time bucket, progress bucket and
position (fields of `inference.encoding`). Attention is bidirectional for our model and causal for
the SASRec baseline, which uses the same class with `side_inputs=False` (item + position only).

Heads, computed only where a loss or a query needs them (the full-vocabulary softmax is the memory
hotspot):
- `item_logits(h)`: h · item embeddings (tied output) + a per-item bias, over the whole vocabulary;
- `entry_outputs(h, items)`: for a given item, its predicted score (regression, 1–10 scale) and
  status logits (dropped is one of them) — conditioned on the item so that one user state answers
  "how would you rate X?" for any candidate X.

Content (`content_dim` > 0): an item's vector is its learned ID embedding plus a learned projection
of its content vector (`inference.content`), and its output bias likewise. Items without training
interactions (`has_id` false) have only the content part, in the inputs and in the tied output, so
a title the model never saw is read and ranked by what the catalogue says about it; in training
they are left out of the softmax (never a target, they would only ever be pushed down). Training drops
each item's ID part (embedding and bias) with probability `id_dropout` per step, the same items for
the whole step, so the content part learns to stand alone. `content_dim` = 0 is the plain model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from inference.animelist import N_STATUS_CODES
from inference.encoding import (
    ITEM_OFFSET,
    N_PROGRESS_TOKENS,
    N_SCORE_TOKENS,
    N_STATUS_TOKENS,
    N_TIME_TOKENS,
    PAD_ITEM,
)
from training.errors import ConfigError

READOUTS = ("query", "entry")
SCORE_CENTER = 7.0  # typical MyAnimeList score: the score head predicts an offset from it


@dataclass
class ModelConfig:
    n_items: int = 0  # filled from the dataset
    max_len: int = 200
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.1
    causal: bool = False
    side_inputs: bool = True  # score/status/time/progress embeddings (off for SASRec)
    entry_head: bool = True  # score/status of a given item (off for SASRec)
    use_times: bool = True  # entry times as inputs (off for the one-query-per-entry fine-tune)
    # A query's state adds the state of the newest entry it sees: the direct "last item" path
    # SASRec reads from, next to what the query gathers by attention.
    read_last_entry: bool = False
    # What answers "what next?": "query", the MASK query's state (plus the newest entry's with
    # read_last_entry), or "entry", the newest entry's state alone (SASRec's readout; causal only).
    # An "entry" model fine-tunes without query tokens, so a next-entries step costs what a SASRec
    # step does instead of attending over twice the columns.
    readout: str = "query"
    content_dim: int = 0  # columns of the content vectors (0: ID embeddings only)
    id_dropout: float = 0.0  # training: chance an item's ID part is dropped for a step
    # How a fresh model's item ID embeddings start: "random", or "svd" (PureSVD factors of the
    # training part and a log-popularity output bias; training.item_init).
    item_init: str = "random"


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.dropout = cfg.dropout
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, 4 * cfg.d_model),
            nn.GELU(),
            nn.Linear(4 * cfg.d_model, cfg.d_model),
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
        batch, length, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (t.view(batch, length, self.n_heads, -1).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attend, dropout_p=self.dropout if self.training else 0.0
        )
        y = y.transpose(1, 2).reshape(batch, length, d)
        x = x + self.drop(self.proj(y))
        return x + self.drop(self.mlp(self.ln2(x)))


class ListTransformer(nn.Module):
    # Buffers of a content model (content_dim > 0); see set_content.
    content: torch.Tensor
    has_id: torch.Tensor
    content_shift: torch.Tensor
    content_scale: torch.Tensor

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.n_items <= 0:
            raise ValueError("ModelConfig.n_items must be set from the dataset")
        if cfg.d_model % cfg.n_heads:
            raise ConfigError(f"d_model {cfg.d_model} is not divisible by n_heads {cfg.n_heads}")
        if cfg.readout not in READOUTS:
            raise ConfigError(f"model.readout {cfg.readout!r} is not one of {', '.join(READOUTS)}")
        if cfg.readout == "entry" and not cfg.causal:
            # Bidirectional entries would read the query appended at serving, which training
            # never shows them.
            raise ConfigError('model.readout = "entry" needs causal attention')
        self.cfg = cfg
        d = cfg.d_model
        self.item_emb = nn.Embedding(cfg.n_items + ITEM_OFFSET, d, padding_idx=PAD_ITEM)
        self.pos_emb = nn.Embedding(cfg.max_len, d)
        if cfg.side_inputs:
            self.score_emb = nn.Embedding(N_SCORE_TOKENS, d)
            self.status_emb = nn.Embedding(N_STATUS_TOKENS, d)
            self.time_emb = nn.Embedding(N_TIME_TOKENS, d)
            self.progress_emb = nn.Embedding(N_PROGRESS_TOKENS, d)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.item_bias = nn.Parameter(torch.zeros(cfg.n_items))
        if cfg.content_dim > 0:
            self.register_buffer("content", torch.zeros(cfg.n_items, cfg.content_dim))
            self.register_buffer("has_id", torch.ones(cfg.n_items, dtype=torch.bool))
            # Column standardization (set with the vectors): what every title shares (a column
            # constant over the catalogue) would otherwise dominate each token and wash out the
            # differences between titles that the model has to read.
            self.register_buffer("content_shift", torch.zeros(cfg.content_dim))
            self.register_buffer("content_scale", torch.ones(cfg.content_dim))
            self.content_proj = nn.Sequential(
                nn.Linear(cfg.content_dim, d), nn.GELU(), nn.Linear(d, d)
            )
            self.content_bias = nn.Linear(cfg.content_dim, 1)
        # The step's item table while training (one ID-dropout draw shared by inputs and outputs).
        self._step_table: tuple[torch.Tensor, torch.Tensor] | None = None
        if cfg.entry_head:
            # Score and status of a given item: MLP over [user state, item embedding].
            self.entry_head = nn.Sequential(
                nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, 1 + N_STATUS_CODES)
            )
        self.apply(self._init_weights)
        if cfg.content_dim > 0:
            # PyTorch's fan-in init, not the 0.02 of the embeddings: content vectors start at the
            # scale of a layer's input, so titles of like genres start near each other rather than
            # waiting out the plateau small random vectors sit on before they separate.
            for module in (*self.content_proj, self.content_bias):
                if isinstance(module, nn.Linear):
                    module.reset_parameters()
        for name, param in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                # GPT-2's scaled init of residual projections keeps the stream's variance flat.
                nn.init.normal_(param, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def set_content(self, vectors: torch.Tensor, has_id: torch.Tensor) -> None:
        """Content vectors [n_items, content_dim] and which items keep an ID embedding."""
        if self.cfg.content_dim <= 0:
            raise ValueError("this model has no content part (content_dim = 0)")
        if tuple(vectors.shape) != (self.cfg.n_items, self.cfg.content_dim):
            raise ValueError(
                f"content vectors {tuple(vectors.shape)}, expected "
                f"{(self.cfg.n_items, self.cfg.content_dim)}"
            )
        vectors = vectors.to(self.content)
        std = vectors.std(dim=0, unbiased=False)
        self.content.copy_(vectors)
        self.content_shift.copy_(vectors.mean(dim=0))
        self.content_scale.copy_(torch.where(std > 1e-6, 1.0 / std.clamp(min=1e-6), 0.0))
        self.has_id.copy_(has_id.to(self.has_id))

    def _content_inputs(self) -> torch.Tensor:
        return (self.content - self.content_shift) * self.content_scale

    def _item_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Item vectors [n_items + ITEM_OFFSET, d] (padding and MASK rows first) and biases."""
        if self.cfg.content_dim <= 0:
            return self.item_emb.weight, self.item_bias
        if self.training and self._step_table is not None:
            return self._step_table
        keep = self.has_id
        if self.training and self.cfg.id_dropout > 0:
            keep = keep & (torch.rand(keep.shape, device=keep.device) >= self.cfg.id_dropout)
        keep_f = keep.to(self.item_emb.weight.dtype)
        vectors = self.item_emb.weight[ITEM_OFFSET:] * keep_f[:, None]
        content = self._content_inputs()
        vectors = vectors + self.content_proj(content)
        bias = self.item_bias * keep_f + self.content_bias(content).squeeze(-1)
        table = torch.cat([self.item_emb.weight[:ITEM_OFFSET], vectors])
        if self.training:
            self._step_table = (table, bias)
        return table, bias

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Hidden states [B, L, d] of a batch of `inference.encoding` fields."""
        items = batch["items"]
        if self.cfg.content_dim > 0:
            # A new step (or an evaluation): draw the item table afresh.
            self._step_table = None
            table, _ = self._item_table()
            item_x = F.embedding(items, table, padding_idx=PAD_ITEM)
        else:
            item_x = self.item_emb(items)
        x = item_x + self.pos_emb(batch["positions"].clamp(max=self.cfg.max_len - 1))
        if self.cfg.side_inputs:
            x = (
                x
                + self.score_emb(batch["scores"])
                + self.status_emb(batch["statuses"])
                + self.time_emb(batch["times"])
                + self.progress_emb(batch["progress"])
            )
        x = self.drop(x)
        length = items.shape[1]
        valid_key = (items != PAD_ITEM)[:, None, None, :]
        attend = valid_key
        if self.cfg.causal:
            attend = attend & self._causal_mask(batch.get("query_sees"), length, items.device)
        # Every token may see itself, so a padding row never has an all-masked (NaN) softmax.
        attend = attend | torch.eye(length, dtype=torch.bool, device=items.device)
        for block in self.blocks:
            x = block(x, attend)
        return self.ln_f(x)

    @staticmethod
    def _causal_mask(
        query_sees: torch.Tensor | None, length: int, device: torch.device
    ) -> torch.Tensor:
        """Which columns each column may attend to ([L, L] or [B, 1, L, L]).

        Plain causal attention, unless the batch carries `query_sees` ([B, L]: -1 for an entry
        token, else the last entry column a query token may see). Then entry tokens see earlier
        entries, and each query token sees the entries up to its column and itself, while no
        token sees a query: one forward pass asks "what next?" after every prefix of the history,
        exactly as serving asks it once after the whole list (the last column of a plain causal
        pass).
        """
        columns = torch.arange(length, device=device)
        if query_sees is None:
            return columns[None, :] <= columns[:, None]
        is_query = query_sees >= 0
        limit = torch.where(is_query, query_sees, columns[None, :])  # [B, L]
        attend = columns[None, None, :] <= limit[:, :, None]
        attend = attend & ~is_query[:, None, :]
        return attend[:, None]

    def query_states(
        self,
        hidden: torch.Tensor,
        rows: torch.Tensor,
        query_cols: torch.Tensor,
        entry_cols: torch.Tensor,
    ) -> torch.Tensor:
        """States [N, d] that answer queries at (rows, query_cols); `entry_cols` is the newest entry
        each query sees (-1 for none): added when `read_last_entry` is on, the whole state when
        `readout` is "entry" (zero for an empty history, whose logits are then the item biases)."""
        has_entry = (entry_cols >= 0).unsqueeze(-1).to(hidden.dtype)
        newest = has_entry * hidden[rows, entry_cols.clamp(min=0)]
        if self.cfg.readout == "entry":
            return newest
        states = hidden[rows, query_cols]
        return states + newest if self.cfg.read_last_entry else states

    def item_vectors(self) -> torch.Tensor:
        """[n_items, d]: each item's vector as the tied output reads it (ID part, content part, or
        both; no ID dropout outside training)."""
        return self._item_table()[0][ITEM_OFFSET:]

    def item_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """[..., d] -> [..., n_items] over the whole vocabulary (tied to the item embeddings)."""
        table, bias = self._item_table()
        weights = table[ITEM_OFFSET:]
        logits = hidden @ weights.t().to(hidden.dtype) + bias.to(hidden.dtype)
        if self.cfg.content_dim > 0 and self.training:
            # A title without training interactions is never a target, and being left out of
            # everyone's list says nothing against it (it is new, or held out): out of the
            # softmax, or training would teach the content part that such titles go unwatched.
            logits = logits.masked_fill(~self.has_id, float("-inf"))
        return logits

    def entry_outputs(
        self, hidden: torch.Tensor, items: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted score (0–10 scale) and status logits of vocabulary `items` given states [N, d]."""
        if self.cfg.content_dim > 0:
            item_vectors = self._item_table()[0][items + ITEM_OFFSET].to(hidden.dtype)
        else:
            item_vectors = self.item_emb(items + ITEM_OFFSET).to(hidden.dtype)
        out = self.entry_head(torch.cat([hidden, item_vectors], dim=-1))
        return SCORE_CENTER + out[..., 0], out[..., 1:]

    def n_params(self, non_embedding: bool = True) -> int:
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            embeddings = [m.weight.numel() for m in self.modules() if isinstance(m, nn.Embedding)]
            total -= sum(embeddings) + self.item_bias.numel()
        return total


def flops_per_token(cfg: ModelConfig, seq_len: int, logit_share: float) -> float:
    """Training FLOPs per input token: 6·N (non-embedding matmuls, forward + backward), attention
    scores and values (6·2·layers·L·d, PaLM appendix B), and the output softmax, 6·d·n_items for the
    `logit_share` of tokens whose full-vocabulary logits are computed. The entry head is counted
    with N; embedding lookups are free."""
    d = cfg.d_model
    block = 12 * d * d  # qkv 3d², proj d², mlp 8d²
    n = cfg.n_layers * block + (2 * d * d + d * (1 + N_STATUS_CODES)) * logit_share
    return 6 * n + 12 * cfg.n_layers * seq_len * d + 6 * d * cfg.n_items * logit_share
