"""A loaded bundle's two ONNX models asked about lists: encoder -> candidates -> ranker utilities.

Everything here mirrors how training asked the PyTorch model (`training.scoring`,
`training.ranker.candidate_tables`), so the ranker sees at serving the features it was trained on:

- the list is encoded by `inference.encoding.encode` with the manifest's parameters, the "now"
  query appended;
- candidates come from `inference.encoding.select_candidates`, as in training: the
  `ranker_candidates` unseen items with the best watch logits and those with the best item-item
  neighbour scores;
- plan-to-watch entries are on the list, so training never offered them as candidates; serving does
  (they stay eligible, capped), with the log-probability and ranks they would have among the unseen;
- items outside the candidates keep the fine-tuned order below every candidate, so a franchise
  entry point reached by redirect or a filter-heavy request still has a sensible utility;
- predicted scores are the ranker's score head for the candidates (`score_features`) and the
  encoder's own score head for everything else.

One shared onnxruntime session per model; `run` takes many lists at once (micro-batching): one
encoder run and one ranker run for the whole batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.bundle import RANKER_OUTPUTS, Bundle, BundleError, make_session
from inference.encoding import (
    N_RANKER_FEATURES,
    N_SCORE_FEATURES,
    RANKER_FEATURES,
    SCORE_FEATURES,
    Encoded,
    Entries,
    ItemFacts,
    encode,
    ranker_features,
    score_features,
    select_candidates,
)

log = logging.getLogger(__name__)

ENCODER_OUTPUTS = ("watch_logits", "predicted_scores", "drop_probs", "user_vector")
BELOW_CANDIDATES = 1.0  # gap between the worst candidate's utility and the best non-candidate
RANK_STEP = 1e-4  # non-candidates keep the fine-tuned order below the candidates


@dataclass(frozen=True, slots=True)
class Scored:
    """One list through both models: vocabulary-wide arrays (index i = item i)."""

    utilities: np.ndarray  # float64 [n_items]: ranker utility; non-candidates below every candidate
    predicted_scores: np.ndarray  # float32 [n_items]: 1-10, the ranker's score head on candidates
    candidates: np.ndarray  # int64: the items the ranker scored
    user_vector: np.ndarray  # float32 [d]


class BundleModel:
    """The encoder and ranker sessions of one bundle, with the facts the features need."""

    def __init__(
        self,
        bundle: Bundle,
        providers: str | Sequence[str] = "auto",
        *,
        precision: str = "fp32",
        threads: int | None = 1,
    ) -> None:
        enc = bundle.encoding
        self.encoding = enc
        self.max_len = int(enc["max_len"])
        self.has_times = bool(enc["has_times"])
        self.use_times = bool(enc.get("use_times", True))
        self.n_items = int(enc["n_items"])
        self.n_candidates = int(enc.get("ranker_candidates", 200))
        for key, expected in (
            ("ranker_features", RANKER_FEATURES),
            ("score_features", SCORE_FEATURES),
        ):
            if list(enc.get(key, [])) != list(expected):
                raise BundleError(
                    f"bundle {bundle.path}: its ranker reads the {key} "
                    f"{list(enc.get(key, []))}, this code computes {list(expected)}; "
                    "re-export the bundle with this version"
                )
        self.episodes: np.ndarray | None = None
        if enc.get("progress_from_catalog_episodes"):
            self.episodes = np.array([i.episodes or 0 for i in bundle.catalog], dtype=np.int64)
        facts = np.load(bundle.file(str(enc.get("item_facts", "item_facts.npz"))))
        self.facts = ItemFacts.from_arrays(facts)
        self.item_embeddings: np.ndarray = facts["item_embeddings"]
        if precision == "int8":
            name = enc.get("int8_encoder")
            if not name:
                raise BundleError(f"bundle {bundle.path} has no int8 encoder; export with --int8")
            encoder_path = bundle.file(str(name))
        elif precision == "fp32":
            encoder_path = bundle.encoder_path
        else:
            raise BundleError(f"precision must be 'fp32' or 'int8', not {precision!r}")
        self.precision = precision
        self.encoder = make_session(encoder_path, providers, threads=threads)
        self.ranker = make_session(bundle.ranker_path, providers, threads=threads)
        self.providers = self.encoder.get_providers()

    # ----- encoding -------------------------------------------------------------------------

    def encode(self, lists: Sequence[Entries], now: Sequence[int | None] | None = None) -> Encoded:
        """Model inputs for lists, exactly as training encodes them (see `training.scoring`)."""
        return encode(
            lists,
            self.max_len,
            has_times=self.has_times,
            episodes=self.episodes,
            now=now,
            append_query=True,
            use_times=self.use_times,
        )

    # ----- both models ----------------------------------------------------------------------

    def run(
        self, lists: Sequence[Entries], now: Sequence[int | None] | None = None
    ) -> list[Scored]:
        """Utilities and predicted scores for each list (one encoder and one ranker run)."""
        if not lists:
            return []
        encoded = self.encode(lists, now)
        logits, scores, drops, users = self.encoder.run(list(ENCODER_OUTPUTS), encoded.as_dict())
        tables = [
            self._candidates(entries, logits[row], scores[row], drops[row])
            for row, entries in enumerate(lists)
        ]
        width = max(max(len(t[0]) for t in tables), 1)
        features = np.zeros((len(lists), width, N_RANKER_FEATURES), dtype=np.float32)
        asked = np.zeros((len(lists), width, N_SCORE_FEATURES), dtype=np.float32)
        for row, (items, table, score_table) in enumerate(tables):
            features[row, : len(items)] = table
            asked[row, : len(items)] = score_table
        utilities, head_scores = self.ranker.run(
            list(RANKER_OUTPUTS), {"features": features, "score_features": asked}
        )
        out = []
        for row, (items, _, _) in enumerate(tables):
            # The ranker's score head for its candidates; the encoder's elsewhere.
            predicted = scores[row].copy()
            predicted[items] = head_scores[row, : len(items)]
            out.append(
                Scored(
                    utilities=self._vocabulary_utilities(
                        logits[row], items, utilities[row, : len(items)]
                    ),
                    predicted_scores=predicted,
                    candidates=items,
                    user_vector=users[row],
                )
            )
        return out

    def _candidates(
        self, entries: Entries, logits: np.ndarray, scores: np.ndarray, drops: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        candidates = select_candidates(
            entries, logits, self.facts, self.n_candidates, include_planned=True
        )
        items = candidates.items
        features = ranker_features(entries, candidates, scores[items], drops[items], self.facts)
        return items, features, score_features(entries, items, scores[items], self.facts)

    def _vocabulary_utilities(
        self, logits: np.ndarray, items: np.ndarray, utilities: np.ndarray
    ) -> np.ndarray:
        out = np.empty(self.n_items, dtype=np.float64)
        order = np.argsort(-logits.astype(np.float64), kind="stable")
        ranks = np.empty(self.n_items, dtype=np.float64)
        ranks[order] = np.arange(self.n_items)
        floor = float(utilities.min()) if len(utilities) else 0.0
        out[:] = floor - BELOW_CANDIDATES - RANK_STEP * ranks
        out[items] = utilities
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "providers": list(self.providers),
            "max_len": self.max_len,
            "candidates": self.n_candidates,
        }
