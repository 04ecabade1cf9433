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

`leave_one_out` asks what a pick's utility would be had the list lacked one entry, for many
(entry, pick) pairs in one encoder run and one ranker run: the "because you liked" attribution.
It computes the ranker's features for the asked items only, exactly as `run` computes them for its
candidates, and runs the encoder's trunk (`inference.onnx_trunk`) instead of the whole encoder
where it can; a removed entry older than the encoder's window changes only the item-item
features, and reuses the full list's encoder outputs. (A ranker that reads the list-relative
features gets them standardised by the whole list's candidates, not each variant's: an
approximation, see `_variant_features`.)
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.animelist import NO_TIME, STATUS_CODES, Status
from inference.bundle import RANKER_OUTPUTS, Bundle, BundleError, make_session
from inference.encoding import (
    N_ABSOLUTE_FEATURES,
    N_RANKER_FEATURES,
    N_SCORE_FEATURES,
    RANKER_FEATURES,
    SCORE_FEATURES,
    TRANSITION_WEIGHTS,
    Encoded,
    Entries,
    ItemFacts,
    candidate_statistics,
    encode,
    ranker_features,
    score_features,
    select_candidates,
    with_list_relative,
)
from inference.onnx_trunk import TRUNK_OUTPUTS, EntryHead, OnnxGraph
from inference.order import best_first

log = logging.getLogger(__name__)

ENCODER_OUTPUTS = ("watch_logits", "predicted_scores", "drop_probs", "user_vector")
BELOW_CANDIDATES = 1.0  # gap between the worst candidate's utility and the best non-candidate
RANK_STEP = 1e-4  # non-candidates keep the fine-tuned order below the candidates
# The numpy entry head agrees with the encoder's to ~2e-6 (float32 sums in another order); a gap
# beyond this means the graph is not the one `EntryHead.find` understood.
HEAD_TOLERANCE = 1e-4
_PLAN_TO_WATCH = STATUS_CODES[Status.PLAN_TO_WATCH]
_COMPLETED = STATUS_CODES[Status.COMPLETED]


@dataclass(frozen=True, slots=True)
class Scored:
    """One list through both models: vocabulary-wide arrays (index i = item i)."""

    utilities: np.ndarray  # float64 [n_items]: ranker utility; non-candidates below every candidate
    predicted_scores: np.ndarray  # float32 [n_items]: 1-10, the ranker's score head on candidates
    candidates: np.ndarray  # int64: the items the ranker scored
    user_vector: np.ndarray  # float32 [d]
    watch_logits: np.ndarray  # float32 [n_items]: the encoder's, which chose the candidates
    encoder_scores: np.ndarray  # float32 [n_items]: the encoder's own score head
    drop_probs: np.ndarray  # float32 [n_items]
    # (mean, std) of the list-relative columns over the candidates (`candidate_statistics`)
    candidate_statistics: tuple[np.ndarray, np.ndarray]


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
        # A ranker reads the absolute features alone or the list-relative ones too (the first
        # N_ABSOLUTE_FEATURES columns of RANKER_FEATURES, or all of them).
        read = list(enc.get("ranker_features", []))
        self.n_ranker_features = len(read)
        for key, got, expected in (
            ("ranker_features", read, RANKER_FEATURES[: max(len(read), N_ABSOLUTE_FEATURES)]),
            ("score_features", list(enc.get("score_features", [])), SCORE_FEATURES),
        ):
            if got != list(expected):
                raise BundleError(
                    f"bundle {bundle.path}: its ranker reads the {key} {got}, this code "
                    f"computes {list(expected)}; re-export the bundle with this version"
                )
        self.episodes: np.ndarray | None = None
        if enc.get("progress_from_catalog_episodes"):
            self.episodes = np.array([i.episodes or 0 for i in bundle.catalog], dtype=np.int64)
        facts = np.load(bundle.file(str(enc.get("item_facts", "item_facts.npz"))))
        self.facts = ItemFacts.from_arrays(facts)
        self.item_embeddings: np.ndarray = facts["item_embeddings"]
        # Item-kNN neighbours for `/similar` (`inference.similar`); bundles exported before them
        # have none, and `/similar` serves its older blend for them.
        self.cooc_items: np.ndarray | None = facts.get("cooc_items")
        self.cooc_weights: np.ndarray | None = facts.get("cooc_weights")
        # False for titles without interactions in the training data (a content model reads them
        # from their content vectors alone); bundles before content vectors knew only trained ones.
        self.item_trained: np.ndarray = (
            facts["item_trained"].astype(bool)
            if "item_trained" in facts
            else np.ones(self.n_items, dtype=bool)
        )
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
        self.trunk: Any = None  # the encoder without its entry head (None: use the encoder)
        self.head: EntryHead | None = None
        self._cut_encoder(encoder_path, providers, threads)

    def _cut_encoder(
        self, encoder_path: Path, providers: str | Sequence[str], threads: int | None
    ) -> None:
        """Set `trunk` and `head` when the encoder can be cut and the cut answers as it does."""
        try:
            graph = OnnxGraph(Path(encoder_path).read_bytes())
            head = EntryHead.find(graph, self.n_items)
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "encoder-trunk.onnx"
                path.write_bytes(graph.pruned(TRUNK_OUTPUTS))
                trunk = make_session(path, providers, threads=threads)
            gap = self._cut_gap(trunk, head)
        except (ValueError, BundleError) as exc:  # GraphFormatError is a ValueError
            log.info("%s: leave-one-out runs the whole encoder (%s)", encoder_path.name, exc)
            return
        if gap > HEAD_TOLERANCE:
            log.warning(
                "%s: the cut encoder differs from the whole one by %.2g; leave-one-out runs the "
                "whole encoder",
                encoder_path.name,
                gap,
            )
            return
        self.trunk, self.head = trunk, head

    def _cut_gap(self, trunk: Any, head: EntryHead) -> float:
        """The largest difference between the cut encoder's answers and the whole one's."""
        n = min(5, self.n_items)
        probe = Entries(
            items=np.arange(n, dtype=np.int32),
            scores=np.array([8, 0, 6, 10, 3][:n], dtype=np.int8),
            statuses=np.full(n, STATUS_CODES[Status.COMPLETED], dtype=np.int8),
            progress=np.zeros(n, dtype=np.int16),
            times=np.full(n, NO_TIME, dtype=np.int64),
        )
        inputs = self.encode([probe], None).as_dict()
        logits, scores, drops, users = self.encoder.run(list(ENCODER_OUTPUTS), inputs)
        trunk_logits, trunk_users = trunk.run(list(TRUNK_OUTPUTS), inputs)
        # Items spread over the vocabulary: a misread weight shows on any of them.
        some = np.unique(np.linspace(0, self.n_items - 1, num=min(self.n_items, 512)).astype(int))
        head_scores, head_drops = head(users[0], some)
        return max(
            float(np.abs(trunk_logits - logits).max()),
            float(np.abs(trunk_users - users).max()),
            float(np.abs(head_scores - scores[0, some]).max()),
            float(np.abs(head_drops - drops[0, some]).max()),
        )

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
        features = np.zeros((len(lists), width, self.n_ranker_features), dtype=np.float32)
        asked = np.zeros((len(lists), width, N_SCORE_FEATURES), dtype=np.float32)
        for row, (items, table, score_table) in enumerate(tables):
            features[row, : len(items)] = table[:, : self.n_ranker_features]
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
                    watch_logits=logits[row],
                    encoder_scores=scores[row],
                    drop_probs=drops[row],
                    candidate_statistics=candidate_statistics(tables[row][1]),
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
        order = best_first(logits.astype(np.float64))
        ranks = np.empty(self.n_items, dtype=np.float64)
        ranks[order] = np.arange(self.n_items)
        floor = float(utilities.min()) if len(utilities) else 0.0
        out[:] = floor - BELOW_CANDIDATES - RANK_STEP * ranks
        out[items] = utilities
        return out

    # ----- leave one out ----------------------------------------------------------------------

    def leave_one_out(
        self,
        entries: Entries,
        full: Scored,
        removed: Sequence[int],
        probes: Sequence[np.ndarray],
        now: int | None = None,
        *,
        whole: WholeList | None = None,
    ) -> list[np.ndarray]:
        """Utilities of the items `probes[r]` for the list `entries` without item `removed[r]`
        (vocabulary indices; every entry of that item goes), as `run` would give them: float64
        arrays, one per removal. A probe that `run` would not score (no longer a candidate, so
        below every candidate) gets −inf. `full` is `run`'s answer for the whole list, `now` the
        "now" it was given. One encoder run and one ranker run for all removals.

        Entries older than the encoder's window (`in_window`) change nothing the encoder sees:
        their variants reuse `full`'s encoder answers. `whole` is `WholeList(self, entries,
        full)`, for callers that ask several times about one list.

        Every variant is the whole list less one item, so the ranker's features are the whole
        list's, corrected for what that item contributed (`_variant_features`); tests hold them to
        `run`'s on the variants themselves (for a ranker of list-relative features, to `run`'s
        standardised by the whole list's candidates).
        """
        if len(removed) != len(probes):
            raise ValueError("one array of probed items per removed item")
        if not removed:
            return []
        gone_items = np.asarray(removed, dtype=np.int64)
        probes = [np.asarray(p, dtype=np.int64) for p in probes]
        # Entries older than the encoder's window do not reach it: without one of them the
        # encoder sees the same tokens, and only the item-item features change.
        inside = np.flatnonzero(self.in_window(entries, gone_items)).tolist()
        own_logits: dict[int, np.ndarray] = {}
        scores = [full.encoder_scores[p].astype(np.float64) for p in probes]
        drops = [full.drop_probs[p].astype(np.float64) for p in probes]
        if inside:
            variants = [_without(entries, int(gone_items[r])) for r in inside]
            encoded = self.encode(variants, None if now is None else [now] * len(inside))
            head = self._checked_head(full, np.unique(np.concatenate(probes)))
            if head is not None:
                rows, users = self.trunk.run(list(TRUNK_OUTPUTS), encoded.as_dict())
                sizes = [len(probes[r]) for r in inside]
                head_scores, head_drops = head.pairs(
                    users,
                    np.repeat(np.arange(len(inside)), sizes),
                    np.concatenate([probes[r] for r in inside]),
                )
                cuts = np.cumsum(sizes)[:-1]
                for r, s_r, d_r in zip(
                    inside, np.split(head_scores, cuts), np.split(head_drops, cuts), strict=True
                ):
                    scores[r], drops[r] = s_r, d_r
            else:
                rows, all_scores, all_drops, _ = self.encoder.run(
                    list(ENCODER_OUTPUTS), encoded.as_dict()
                )
                for row, r in enumerate(inside):
                    scores[r] = all_scores[row, probes[r]].astype(np.float64)
                    drops[r] = all_drops[row, probes[r]].astype(np.float64)
            own_logits = {r: rows[row].astype(np.float64) for row, r in enumerate(inside)}
        pair_row = np.repeat(np.arange(len(removed)), [len(p) for p in probes])
        features, asked, is_candidate = self._variant_features(
            whole if whole is not None else WholeList(self, entries, full),
            gone_items,
            own_logits,
            pair_row,
            np.concatenate(probes),
            np.concatenate(scores),
            np.concatenate(drops),
        )
        utilities, _ = self.ranker.run(
            list(RANKER_OUTPUTS),
            {
                "features": features[None, :, : self.n_ranker_features],
                "score_features": asked[None],
            },
        )
        flat = np.where(is_candidate, utilities[0].astype(np.float64), -np.inf)
        return np.split(flat, np.cumsum([len(p) for p in probes])[:-1])

    def in_window(self, entries: Entries, items: np.ndarray) -> np.ndarray:
        """bool per item: whether the encoder sees it in this list (the newest entries it keeps)."""
        keep = self.max_len - 1
        return np.isin(items, np.asarray(entries.items[max(len(entries) - keep, 0) :]))

    def _checked_head(self, full: Scored, items: np.ndarray) -> EntryHead | None:
        """The numpy head, after checking it against the whole encoder's answer for this list."""
        head = self.head
        if head is None or self.trunk is None:
            return None
        scores, drops = head(full.user_vector, items)
        gap = max(
            float(np.abs(scores - full.encoder_scores[items]).max(initial=0.0)),
            float(np.abs(drops - full.drop_probs[items]).max(initial=0.0)),
        )
        if gap > HEAD_TOLERANCE:
            log.error(
                "the numpy entry head differs from the encoder's by %.2g; leave-one-out runs the "
                "whole encoder from now on",
                gap,
            )
            self.head = None
            return None
        return head

    def _variant_features(
        self,
        whole: WholeList,
        removed: np.ndarray,
        own_logits: dict[int, np.ndarray],
        pair_row: np.ndarray,
        pair_item: np.ndarray,
        pair_score: np.ndarray,
        pair_drop: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ranker and score-head features of (variant `pair_row`, item `pair_item`) pairs, where
        variant r is the whole list without item `removed[r]`; and whether `select_candidates`
        would pick the item for that variant. `own_logits[r]` are a variant's watch logits where
        the encoder saw it anew (else the whole list's hold).

        The same numbers as `select_candidates`, `ranker_features` and `score_features` give on
        each variant (RANKER_FEATURES and SCORE_FEATURES say what each column is). A variant
        differs from the whole list in one item and that item's neighbours, so each rank is the
        rank among the whole list's values (one sort) corrected for the few values that changed,
        not a pass over the vocabulary per variant.
        """
        facts = self.facts
        r, p = pair_row, pair_item
        c = removed[r]  # the item each pair's variant lacks
        items, statuses, unseen, logits = whole.items, whole.statuses, whole.unseen, whole.logits
        gone = items[None, :] == removed[:, None]  # [variants, entries]: what each one lacks
        n_gone = gone.sum(axis=1)
        newly = (n_gone > 0)[r]  # the removed item is unseen in the variant
        remaining = ~gone
        free = unseen[p] | ((p == c) & newly)
        planned = ~free & whole.planned[p] & (p != c)
        take = np.minimum(self.n_candidates, whole.n_unseen + newly)
        joins = newly[:, None]  # the removed item itself: unseen once it is off the list

        # The fine-tuned stage: log-probability over the unseen items, stable rank among them.
        # Without an entry, that entry joins the unseen items.
        raw = logits[p]
        log_norm = np.where(newly, np.logaddexp(whole.log_norm, logits[c]), whole.log_norm)
        ranks = whole.logit_ranks.ranks(p, raw, free, c[:, None], logits[c][:, None], joins)
        if own_logits:  # variants the encoder saw anew: their own logits, ranked directly
            rows = np.array(list(own_logits), dtype=np.int64)
            row_logits = np.stack([own_logits[row] for row in rows.tolist()])
            row_unseen = np.repeat(unseen[None, :], len(rows), axis=0)
            row_unseen[np.arange(len(rows)), removed[rows]] |= n_gone[rows] > 0
            row_masked = np.where(row_unseen, row_logits, -np.inf)
            slot = np.full(len(removed), -1, dtype=np.int64)
            slot[rows] = np.arange(len(rows))
            mine = slot[r] >= 0
            at = slot[r[mine]]
            raw[mine] = row_logits[at, p[mine]]
            log_norm[mine] = _log_sum_exp_rows(row_masked)[at]
            ranks[mine] = _direct_ranks(row_masked[at], p[mine], raw[mine], free[mine])

        # The item-item stages: the whole list's scores, less the removed item's neighbour row.
        k = facts.neighbour_items.shape[1]
        near_all = whole.near
        # The items whose score moves: the removed item's neighbours, and the item itself.
        changed = np.concatenate([facts.neighbour_items[removed], removed[:, None]], axis=1)
        delta = np.zeros(changed.shape)
        delta[:, :k] = facts.neighbour_weights[removed].astype(np.float64) * n_gone[:, None]
        changed[(changed[:, :k] == removed[:, None]).any(axis=1), k] = -1  # already a neighbour
        ordered = np.sort(changed, axis=1)
        if ((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)).any():
            changed, delta = _merge_repeats(changed, delta)
        near_changed, near_delta = changed[r], delta[r]
        near = near_all[p] - (near_delta * (near_changed == p[:, None])).sum(axis=1)
        near_ranks = whole.near_ranks.ranks(
            p,
            near,
            free,
            near_changed,
            near_all[np.maximum(near_changed, 0)] - near_delta,
            (near_changed == c[:, None]) & newly[:, None],
        )
        after_all = whole.after
        after = after_all[p]
        if facts.transition_items.shape[1]:
            after_ranks = whole.after_ranks.ranks(
                p, after, free, c[:, None], after_all[c][:, None], joins
            )
        else:  # every score is 0: the rank is the count of unseen items before the item
            before = np.cumsum(unseen) - unseen
            after_ranks = np.where(free, before[p] + (newly & (c < p)), 0).astype(np.int64)
        if facts.transition_items.shape[1]:
            # Transitions come from the newest entries: a variant without one of them is new.
            newest = max(len(items) - len(TRANSITION_WEIGHTS), 0)
            for row in np.flatnonzero(gone[:, newest:].any(axis=1)).tolist():
                mine = r == row
                row_after = facts.transition_scores(items[remaining[row]])
                after_unseen = unseen.copy()
                after_unseen[removed[row]] = True
                after[mine] = row_after[p[mine]]
                block = np.where(after_unseen, row_after, -np.inf)
                after_ranks[mine] = _direct_ranks(
                    np.broadcast_to(block, (int(mine.sum()), len(block))),
                    p[mine],
                    after[mine],
                    free[mine],
                )
        # A list that holds every item has no candidates at all, plan-to-watch ones included.
        is_candidate = (take > 0) & (
            planned
            | (
                free
                & (
                    (ranks < take)
                    | ((k > 0) & (near_ranks < take))
                    | ((facts.transition_items.shape[1] > 0) & (after_ranks < take))
                )
            )
        )

        out = np.zeros((len(p), N_RANKER_FEATURES), dtype=np.float32)
        out[:, 0] = raw - log_norm
        out[:, 1] = np.log1p(ranks)
        out[:, 2] = (pair_score.astype(np.float32) - 7.0) / 2.0
        out[:, 3] = pair_drop
        out[:, 4] = facts.log_popularity[p]
        franchise = facts.franchise[p]
        listed = facts.franchise[items]
        same = (listed[None, :] == franchise[:, None]) & remaining[r]
        out[:, 5] = (franchise >= 0) & same.any(axis=1)
        out[:, 6] = (franchise >= 0) & (same & (statuses == _COMPLETED)[None, :]).any(axis=1)
        out[:, 7] = planned
        if facts.genres.shape[1]:
            # The whole list's genre profile less the removed entries' share (a matrix product
            # per variant would call a multi-threaded BLAS for a few thousand numbers).
            weights32, genres = whole.genre_weights, whole.genres
            variant, entry = np.nonzero(gone)
            taken = np.zeros((len(removed), genres.shape[1]), dtype=np.float32)
            np.add.at(taken, variant, weights32[entry, None] * genres[entry])
            profile = whole.profile[None, :] - taken[r]
            candidate = facts.genres[p]
            norms = np.linalg.norm(candidate, axis=1) * (np.linalg.norm(profile, axis=1) + 1e-9)
            affinity = (candidate * profile).sum(axis=1) / np.maximum(norms, 1e-9)
            out[:, 8] = np.where(remaining[r].any(axis=1), affinity, 0.0)
        out[:, 9] = np.log1p(remaining.sum(axis=1)[r])
        out[:, 10] = near
        out[:, 11] = np.log1p(near_ranks)
        out[:, 12] = after
        out[:, 13] = np.log1p(after_ranks)
        if self.n_ranker_features > N_ABSOLUTE_FEATURES:
            # Standardised by the whole list's candidates, not each variant's: those would take
            # every variant's whole candidate table (ranks over the vocabulary for hundreds of
            # items each). So an attribution is what the entry adds to the pick's own evidence on
            # the whole list's scale, and a full run without the entry can disagree with it.
            with_list_relative(out, whole.full.candidate_statistics)

        asked = np.zeros((len(p), N_SCORE_FEATURES), dtype=np.float32)
        asked[:, 0] = (pair_score.astype(np.float32) - 7.0) / 2.0
        user = whole.user_scores
        scored = remaining & (user > 0)[None, :]  # [variants, entries]
        n_scored = scored.sum(axis=1)
        means = np.where(n_scored > 0, (scored * user).sum(axis=1) / np.maximum(n_scored, 1), 7.0)
        asked[:, 1] = np.where(n_scored[r] > 0, (means[r] - 7.0) / 2.0, 0.0)
        asked[:, 2] = np.log1p(n_scored[r])
        if len(facts.mean_score):
            known = facts.mean_score[p] > 0
            asked[:, 3] = np.where(known, (facts.mean_score[p] - 7.0) / 2.0, 0.0)
            asked[:, 4] = np.log1p(facts.score_count[p])
        if k:
            # |weight| from each entry to each asked item (zero where it is not a neighbour).
            asked_items, column = np.unique(p, return_inverse=True)
            position = np.full(self.n_items, -1, dtype=np.int64)
            position[asked_items] = np.arange(len(asked_items))
            where = position[facts.neighbour_items[items]]  # [entries, k]
            hit = where >= 0
            reach = np.zeros((len(asked_items), len(items)))
            entry, slot_k = np.nonzero(hit)
            np.add.at(
                reach,
                (where[hit], entry),
                np.abs(facts.neighbour_weights[items[entry], slot_k].astype(np.float64)),
            )
            mine = reach[column] * scored[r]  # [pairs, entries]
            support = mine.sum(axis=1)
            total = (mine * ((user[None, :] - means[r][:, None]) / 2.0)).sum(axis=1)
            asked[:, 5] = np.where(n_scored[r] > 0, total / np.maximum(support, 1e-6), 0.0)
            asked[:, 6] = np.where(n_scored[r] > 0, np.log1p(support), 0.0)
        return out, asked, is_candidate

    def describe(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "providers": list(self.providers),
            "max_len": self.max_len,
            "candidates": self.n_candidates,
        }


class WholeList:
    """What `leave_one_out` needs of the whole list, computed once however often it is asked:
    its entries as arrays, and the vocabulary-wide values and sorts that each variant corrects."""

    def __init__(self, model: BundleModel, entries: Entries, full: Scored) -> None:
        facts = model.facts
        self.entries, self.full = entries, full
        self.items = np.asarray(entries.items, dtype=np.int64)
        self.statuses = np.asarray(entries.statuses, dtype=np.int64)
        self.user_scores = np.asarray(entries.scores, dtype=np.float64)
        self.unseen = np.ones(model.n_items, dtype=bool)
        self.unseen[self.items] = False
        self.n_unseen = int(self.unseen.sum())
        self.planned = np.zeros(model.n_items, dtype=bool)
        self.planned[self.items[self.statuses == _PLAN_TO_WATCH]] = True
        self.logits = full.watch_logits.astype(np.float64)
        masked = np.where(self.unseen, self.logits, -np.inf)
        self.log_norm = _log_sum_exp(masked)
        self.logit_ranks = _ChangedRanks(masked)
        self.near = facts.neighbour_scores(self.items)
        self.near_ranks = _ChangedRanks(np.where(self.unseen, self.near, -np.inf))
        self.after = facts.transition_scores(self.items)
        if facts.transition_items.shape[1]:
            self.after_ranks = _ChangedRanks(np.where(self.unseen, self.after, -np.inf))
        user32 = np.asarray(entries.scores, dtype=np.float32)
        self.genre_weights = np.where(user32 > 0, user32 / 10.0, 0.5).astype(np.float32)
        self.genres = facts.genres[self.items]
        self.profile = self.genre_weights @ self.genres


def _without(entries: Entries, item: int) -> Entries:
    keep = np.asarray(entries.items) != item
    return Entries(
        items=entries.items[keep],
        scores=entries.scores[keep],
        statuses=entries.statuses[keep],
        progress=entries.progress[keep],
        times=entries.times[keep],
    )


def _merge_repeats(changed: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of (item, delta) with each item once, its deltas summed (−1 pads)."""
    merged = np.full(changed.shape, -1, dtype=np.int64)
    summed = np.zeros(delta.shape)
    for row in range(len(changed)):
        real = changed[row] >= 0
        items, where = np.unique(changed[row, real], return_inverse=True)
        merged[row, : len(items)] = items
        np.add.at(summed[row], where, delta[row, real])
    return merged, summed


def _log_sum_exp(values: np.ndarray) -> float:
    """log Σ exp over the finite values (−inf where there are none), as select_candidates sums."""
    return float(_log_sum_exp_rows(values[None, :])[0])


def _log_sum_exp_rows(values: np.ndarray) -> np.ndarray:
    top = values.max(axis=1, keepdims=True)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):  # a row with nothing finite: log 0 = −inf
        return safe[:, 0] + np.log(np.exp(values - safe).sum(axis=1))


def _direct_ranks(
    values: np.ndarray, items: np.ndarray, at: np.ndarray, stable: np.ndarray
) -> np.ndarray:
    """Where value `at[j]` stands in row `values[j]` sorted best first: the larger values come
    before and, where `stable[j]` (item `items[j]` is itself in the row, as `argsort(-values,
    kind="stable")` places it), the equal ones with a smaller index too."""
    ahead = (values > at[:, None]).sum(axis=1)
    before = np.arange(values.shape[1])[None, :] < items[:, None]
    ties = ((values == at[:, None]) & before).sum(axis=1)
    return (ahead + np.where(stable, ties, 0)).astype(np.int64)


class _ChangedRanks:
    """`_direct_ranks` among vectors that differ from `values` in a few places.

    `values` holds −inf for items that are not ranked (those on the list). Pair j's vector is
    `values` with the items `changed[j]` (−1: padding) set to `new[j]`; a changed item that is
    −inf in `values` (on the list) is ranked, with its new value, where `joins[j]` says so (the
    removed entry, which leaves the list). Pairs share few distinct (value, item) questions, so
    each distinct one is compared with `values` once, and the changed items are corrected for.
    """

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
        self.index = np.arange(len(values))

    def ranks(
        self,
        items: np.ndarray,
        at: np.ndarray,
        stable: np.ndarray,
        changed: np.ndarray,
        new: np.ndarray,
        joins: np.ndarray,
    ) -> np.ndarray:
        questions: dict[tuple[float, int, bool], int] = {}
        which = np.array(
            [
                questions.setdefault(key, len(questions))
                for key in zip(at.tolist(), items.tolist(), stable.tolist(), strict=True)
            ],
            dtype=np.int64,
        )
        asked = np.array(list(questions), dtype=np.float64).reshape(-1, 3)
        base = _direct_ranks(
            np.broadcast_to(self.values, (len(asked), len(self.values))),
            asked[:, 1].astype(np.int64),
            asked[:, 0],
            asked[:, 2].astype(bool),
        )[which]
        real = changed >= 0
        was_ranked = real & np.isfinite(self.values[np.maximum(changed, 0)])
        now_ranked = was_ranked | (real & joins)

        def ahead(value: np.ndarray, ranked: np.ndarray) -> np.ndarray:
            before = (value > at[:, None]) | (
                stable[:, None] & (value == at[:, None]) & (changed < items[:, None])
            )
            return (ranked & before).sum(axis=1)

        old = np.where(was_ranked, self.values[np.maximum(changed, 0)], -np.inf)
        return base - ahead(old, was_ranked) + ahead(new, now_ranked)
