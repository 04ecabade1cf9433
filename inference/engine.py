"""The recommendation engine: an AnimeList and options in, annotated picks out (docs/architecture.md#request-path).

`Engine.recommend` is what every front end calls. With a model bundle (`Engine.from_bundle`) a list
goes encoder -> candidates -> ranker (`inference.bundle_model`) -> filters (`inference.filters`) ->
re-rank (`inference.rerank.select`: at most one title per franchise, diversity, the adventurous
knob, the plan-to-watch cap) -> annotations (`inference.explain`: predicted score from the score
head, "because you liked" from leave-one-out through both models: the liked entries whose removal
lowers the pick's utility most, at most `MAX_REMOVALS` variants of the list per reply, all in one
encoder run of at most `MAX_ENCODER_TOKENS` tokens and one ranker run). A list with no title the
model knows gets the cold-start path, popular-and-recent picks, with a note saying so; so does
every list when no bundle is loaded (`Engine.without_model`).

In the familiar mode (adventurous 0) two kinds of pick are demoted before re-ranking, below every
other candidate but never removed: titles whose predicted score is more than `BELOW_MEAN_DEMOTION`
under the user's own mean score (for users with at least `MIN_SCORES_FOR_DEMOTION` scores), and
extras (specials, music videos, promotional videos, recaps) unless the user completed and liked an
entry of the same franchise.

Titles new to the model (no interactions in its training data; a content model reads them from
their content vectors) are at most `[engine] new_titles_max` of a reply's picks, each marked so,
with a note saying how many there are.

Serving: one onnxruntime session per model, shared by all requests; the work runs on a small
thread pool, never on the event loop; concurrent `recommend` calls are micro-batched into one
encoder run and one ranker run (`inference.batching`), unless `micro_batching=False`.

The knobs (precision, threads, batching, the re-ranking method and its weights) are
`inference.config.EngineSettings`, the [engine] table of config.toml.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.animelist import AnimeList, Status
from inference.batching import MicroBatcher
from inference.bundle import load_bundle
from inference.bundle_model import BundleModel, Scored, WholeList
from inference.catalog import Catalog
from inference.config import EngineSettings
from inference.eligibility_index import EligibilityIndex
from inference.encoding import Entries, entries_from_list
from inference.explain import Explainer, Recommendation, UserContext, choose_causes
from inference.filters import (
    Eligibility,
    carried_laters,
    exclusion_notes,
    is_unaired,
    list_statuses,
    redirect_utilities,
)
from inference.franchise import FranchiseIndex, franchise_array
from inference.group import MIN_MEMBERS, GroupTooSmall, MemberScores, suits_line, take_turns
from inference.options import RecommendOptions
from inference.order import best_first
from inference.popular import COLD_START_NOTE, popular_recent
from inference.rerank import Method, select
from inference.similar import (
    NO_MODEL_SIMILAR_NOTE,
    ItemSimilarity,
    SimilarOptions,
    SimilarResult,
    UnknownTitle,
    genre_similarity,
    one_per_franchise,
    why_lines,
)
from inference.title_search import TitleIndex, TitleMatch, describe

log = logging.getLogger(__name__)

NEW_TO_MODEL_LINE = "New to the model: judged by its genres, type, season and popularity"
NO_MODEL_NOTE = "No trained model is loaded, so these are popular recent picks for everyone."
# The defaults of the re-ranking knobs (set in config.toml's [engine]; see EngineSettings).
DEFAULT_SETTINGS = EngineSettings()
GENRE_WEIGHT = DEFAULT_SETTINGS.genre_weight
TRADEOFF = DEFAULT_SETTINGS.tradeoff
RERANK_POOL = DEFAULT_SETTINGS.rerank_pool
# Familiar-mode demotions (see the module doc). A predicted score this far under the user's mean
# is a title the model expects them to like clearly less than what they usually watch.
BELOW_MEAN_DEMOTION = 1.5
MIN_SCORES_FOR_DEMOTION = 5  # the mean of fewer scores says too little about the user
DEMOTION_GAP = 0.5  # the best demoted title sits this far under the worst other candidate
# Lists without one entry that one reply runs through the models to find its causes (each is a
# row of ranker features, and an encoder row if the encoder sees that entry): every pick's most
# similar liked entry first, then the second...
MAX_REMOVALS = 24
# Of those, the ones without an entry the encoder sees need an encoder row each (the others reuse
# the whole list's encoder run): at most this many per pick, and rows of at most this many tokens
# in all per reply (a row is as long as the list, up to the model's window: 5 rows of 128 tokens,
# or 12 of a 50-entry list).
ENCODER_CAUSES_PER_PICK = 3
MAX_ENCODER_TOKENS = 640
EXTRA_KINDS = {"special": "A special", "tv_special": "A TV special", "music": "A music video"}
PROMO_TITLE = re.compile(r"\b(?:PVs?|CMs?|promotion(?:al)? videos?|trailers?|teasers?)\b", re.I)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What /help says about the model."""

    name: str
    version: str
    trained_on: str
    created_at: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RecommendationResult:
    recommendations: list[Recommendation]
    notes: list[str]
    model: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "recommendations": [r.as_json() for r in self.recommendations],
            "notes": list(self.notes),
            "model": dict(self.model),
        }


@dataclass(frozen=True, slots=True)
class _Request:
    anime_list: AnimeList
    options: RecommendOptions  # genres already resolved
    today: dt.date | None
    now: int | None


class Engine:
    """Shared by every request of a process; `recommend_sync` is thread-safe."""

    def __init__(
        self,
        catalog: Catalog,
        info: ModelInfo,
        model: BundleModel | None = None,
        settings: EngineSettings = DEFAULT_SETTINGS,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.info = info
        self.model = model
        self.franchises = FranchiseIndex.build(catalog)
        self.filters = EligibilityIndex(catalog, self.franchises)
        self.explainer = Explainer(
            catalog,
            item_embeddings=None if model is None else model.item_embeddings,
            franchises=self.franchises,
            title_language=settings.title_language,
        )
        self.method: Method = settings.method
        self.tradeoff = settings.tradeoff
        self.genre_weight = settings.genre_weight
        self.item_index = {item.mal_id: i for i, item in enumerate(catalog)}
        self._franchise_ids = franchise_array(catalog)
        self._popularity = np.array(
            [np.nan if item.popularity is None else item.popularity for item in catalog],
            dtype=np.float64,
        )
        self._extras = np.array([self._extra_kind(i) is not None for i in range(len(catalog))])
        self._executor = ThreadPoolExecutor(
            max_workers=settings.workers, thread_name_prefix="engine"
        )
        self.micro_batching = settings.micro_batching
        self._batcher: MicroBatcher[_Request, RecommendationResult | Exception] = MicroBatcher(
            self._run_requests,
            self._executor,
            max_batch=settings.max_batch,
            max_wait_s=settings.max_wait_s,
        )

    @classmethod
    def without_model(
        cls, catalog: Catalog, settings: EngineSettings = DEFAULT_SETTINGS, **overrides: Any
    ) -> Engine:
        """The no-model mode: popular recent picks. `overrides` replace fields of `settings`."""
        info = ModelInfo(name="none", version="-", trained_on="no model: popularity only")
        return cls(catalog, info, settings=dataclasses.replace(settings, **overrides))

    @classmethod
    def from_bundle(
        cls,
        path: Path | str,
        providers: str | Sequence[str] | None = None,
        settings: EngineSettings = DEFAULT_SETTINGS,
        **overrides: Any,
    ) -> Engine:
        """Load and verify a bundle (a wrong hash or format version raises `BundleError`).

        `settings` are [engine]'s knobs (precision, threads, batching, re-ranking); `overrides`
        replace some of them (`micro_batching=False`, `method="mmr"`, ...) and are checked like
        the file's values. `providers` wins over `settings.providers` when given.
        """
        settings = dataclasses.replace(settings, **overrides)
        started = time.perf_counter()
        bundle = load_bundle(path)
        model = BundleModel(
            bundle,
            settings.provider_names() if providers is None else providers,
            precision=settings.precision,
            # 0 in the config is onnxruntime's own default (every core).
            threads=settings.threads or None,
        )
        manifest = bundle.manifest
        data = manifest.get("training_data", {})
        trained_on = f"{data.get('dataset', '?')}: {data.get('users', '?')} users, " + (
            f"{data.get('interactions', '?')} list entries"
        )
        files = manifest["files"]
        info = ModelInfo(
            name=bundle.name,
            version=str(files["encoder.onnx"]["sha256"])[:12],
            trained_on=trained_on,
            created_at=manifest.get("created_at"),
            metrics=_headline_metrics(manifest.get("metrics", {})),
        )
        engine = cls(bundle.catalog, info, model, settings)
        log.info(
            "bundle %s loaded in %.2f s; models run on %s (%s)",
            bundle.name,
            time.perf_counter() - started,
            model.providers[0],
            settings.precision,
        )
        return engine

    # ----- requests ---------------------------------------------------------------------------

    def recommend_sync(
        self,
        anime_list: AnimeList,
        options: RecommendOptions,
        *,
        today: dt.date | None = None,
        now: int | None = None,
    ) -> RecommendationResult:
        """One request, on the calling thread. Unknown genres raise ValueError."""
        request = _Request(anime_list, self.filters.resolve(options), today, now)
        (result,) = self._run_requests([request])
        if isinstance(result, Exception):
            raise result
        return result

    async def recommend(
        self, anime_list: AnimeList, options: RecommendOptions
    ) -> RecommendationResult:
        """One request, off the event loop; concurrent calls share model runs when batching."""
        request = _Request(anime_list, self.filters.resolve(options), None, None)
        if self.micro_batching and self.model is not None:
            result = await self._batcher.submit(request)
        else:
            loop = asyncio.get_running_loop()
            (result,) = await loop.run_in_executor(self._executor, self._run_requests, [request])
        if isinstance(result, Exception):
            raise result
        return result

    def model_inputs(self, anime_list: AnimeList, now: int | None = None) -> dict[str, np.ndarray]:
        """The encoder inputs this list becomes (what the encoder equivalence test compares)."""
        if self.model is None:
            raise ValueError("no model is loaded")
        entries, _ = entries_from_list(anime_list.entries, self.item_index)
        return self.model.encode([entries], None if now is None else [now]).as_dict()

    def close(self) -> None:
        self._executor.shutdown(wait=False)

    # ----- more like this title (`inference.similar`) -----------------------------------------

    def find_title(self, text: str) -> TitleMatch:
        """The catalogue titles closest to what was typed (`inference.title_search`)."""
        index = getattr(self, "_title_index", None)
        if index is None:
            # Built on first use: a bot that never answers /similar never pays for it.
            index = self._title_index = TitleIndex(self.catalog)
        return index.search(text)

    def similar_sync(
        self,
        title: str,
        options: SimilarOptions,
        anime_list: AnimeList | None = None,
        *,
        today: dt.date | None = None,
    ) -> SimilarResult:
        """Titles like `title`, for the owner of `anime_list` when given (their list's titles
        are left out). `UnknownTitle` names the closest titles when none matches."""
        match = self.find_title(title)
        best = match.best
        if best is None:
            raise UnknownTitle(_unknown_title_message(title, match, self.catalog))
        query = best.index
        notes: list[str] = []
        if match.ambiguous:
            others = [c.index for c in match.tied() if c.index != query]
            notes.append(
                f"Several titles match {title.strip()!r}; I used {describe([query], self.catalog)}"
                f". Also matching: {describe(others, self.catalog)}."
            )
        elif not match.exact:
            notes.append(f"I read {title.strip()!r} as {describe([query], self.catalog)}.")
        anime_list = anime_list or AnimeList(source="mal", username=None)
        picks, scores, cooccurrence, carried = self._similar_picks(
            query, options, anime_list, today
        )
        user = UserContext(anime_list, self.catalog)
        name = self.explainer.titles.name(query)
        genres = self.catalog[query].genres
        recommendations = []
        for index in picks:
            source = carried.get(index)
            fans = float(cooccurrence[index])
            if source is not None:
                fans = max(fans, float(cooccurrence[source]))
            why = why_lines(name, genres, self.catalog[index].genres, fans)
            if source is not None:
                why.append(f"Where the franchise of {self.explainer.titles.name(source)} starts")
            recommendations.append(
                self.explainer.explain(index, user, utility=float(scores[index]), extra_why=why)
            )
        if self.model is None:
            notes.append(NO_MODEL_SIMILAR_NOTE)
        if len(recommendations) < options.count:
            notes.append(f"Only {len(recommendations)} title(s) passed the filters.")
        return SimilarResult(
            self.catalog[query].mal_id, name, recommendations, notes, self._model_json()
        )

    async def similar(
        self, title: str, options: SimilarOptions, anime_list: AnimeList | None = None
    ) -> SimilarResult:
        """`similar_sync` on the engine's thread pool, off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, lambda: self.similar_sync(title, options, anime_list)
        )

    def _similar_picks(
        self,
        query: int,
        options: SimilarOptions,
        anime_list: AnimeList,
        today: dt.date | None,
    ) -> tuple[list[int], np.ndarray, np.ndarray, dict[int, int]]:
        """(picks, scores, normalised co-occurrence from the query, entry point -> the later
        entry whose score it carries) under the rules of `inference.similar`'s module doc."""
        if self.model is not None:
            facts = self.model.facts
            similarity = ItemSimilarity(
                self.model.item_embeddings,
                facts.neighbour_items,
                facts.neighbour_weights,
                cooc_items=self.model.cooc_items,
                cooc_weights=self.model.cooc_weights,
                popularity=facts.log_popularity,
            )
            scores = similarity.scores(query)
            cooccurrence = similarity.cooccurrence(query)
        else:
            # Genres alone, popularity breaking the (many) ties.
            genres = [item.genres for item in self.catalog]
            popularity = np.nan_to_num(self._popularity, nan=0.0)
            scores = genre_similarity(genres, query) + 1e-9 * popularity
            cooccurrence = np.zeros(len(self.catalog))
        recommend_options = RecommendOptions(
            count=options.count,
            adult=options.adult,
            unaired=options.unaired,
            exclude_mal_ids=options.exclude_mal_ids,
        )
        allowed = self.filters.eligible(anime_list, recommend_options, today=today)
        # Later entries (sequels, side stories, spin-offs) never, whatever the list holds: their
        # franchise's start stands in for them through the redirects.
        later = np.zeros(len(self.catalog), dtype=bool)
        later[list(self.franchises.requires)] = True
        mask = allowed.mask & ~self._extras & ~later
        own = self._franchise_ids[query]
        same = (self._franchise_ids == own) if own >= 0 else np.zeros(len(mask), dtype=bool)
        if options.franchise and own >= 0:
            # Asked for: the query's franchise in full (sequels and specials too), but never what
            # is on the list, recaps, promos or music videos, nor adult titles unless asked.
            statuses = list_statuses(anime_list, self.catalog)
            listed = np.zeros(len(mask), dtype=bool)
            listed[[i for i, s in statuses.items() if s != Status.PLAN_TO_WATCH]] = True
            day = today or dt.date.today()
            never = np.array(
                [
                    self._extra_kind(i) in ("A recap", "A promotional video", "A music video")
                    or (self.catalog[i].adult and not options.adult)
                    or (not options.unaired and is_unaired(self.catalog[i], day))
                    if same[i]
                    else True
                    for i in range(len(mask))
                ]
            )
            mask |= same & ~listed & ~never
        else:
            mask &= ~same
        mask[query] = False
        utilities = redirect_utilities(scores, allowed)
        carried = carried_laters(scores, allowed, skip=same if own >= 0 else None)
        ranking = np.where(mask, utilities, -np.inf)
        order = best_first(ranking)[: int(mask.sum())]
        free = int(own) if options.franchise and own >= 0 else None
        picks = one_per_franchise(order, self._franchise_ids, options.count, free=free)
        return picks, utilities, cooccurrence, carried

    # ----- groups (`inference.group`) -----------------------------------------------------------

    def score_members(
        self,
        lists: Sequence[AnimeList],
        options: RecommendOptions,
        *,
        today: dt.date | None = None,
        now: int | None = None,
    ) -> list[MemberScores | None]:
        """Each list's utilities over the vocabulary (one encoder and one ranker run for all) and
        what its owner may be offered; None for a list without a title the model knows. Without
        a model every list gets the popularity order."""
        options = self.filters.resolve(options)
        today = today or dt.date.today()
        prepared = [entries_from_list(lst.entries, self.item_index) for lst in lists]
        out: list[MemberScores | None] = [None] * len(lists)
        if self.model is None:
            popularity = np.log1p(np.nan_to_num(self._popularity, nan=0.0))
            for i, lst in enumerate(lists):
                allowed = self.filters.eligible(lst, options, today=today)
                out[i] = MemberScores(popularity, allowed.mask, None)
            return out
        warm = [i for i, (entries, _) in enumerate(prepared) if len(entries)]
        if not warm:
            return out
        moment = int(time.time()) if now is None else now
        runs = self.model.run(
            [prepared[i][0] for i in warm],
            [moment] * len(warm) if self.model.has_times else None,
        )
        for i, scored in zip(warm, runs, strict=True):
            allowed = self.filters.eligible(lists[i], options, today=today)
            out[i] = MemberScores(
                redirect_utilities(scored.utilities, allowed),
                allowed.mask,
                np.asarray(scored.predicted_scores, dtype=np.float64),
            )
        return out

    def recommend_group_sync(
        self,
        members: Sequence[tuple[str, AnimeList]],
        options: RecommendOptions,
        *,
        today: dt.date | None = None,
        now: int | None = None,
    ) -> RecommendationResult:
        """Picks for a group (`inference.group.take_turns`): none any member has on their list
        (their own plan-to-watch aside), the members choosing in turn. Members
        whose list has no title the model knows are left out with a note; `GroupTooSmall` when
        fewer than two are left."""
        scored = self.score_members([lst for _, lst in members], options, today=today, now=now)
        notes: list[str] = []
        kept = [m for m, s in enumerate(scored) if s is not None]
        left_out = [members[m][0] for m, s in enumerate(scored) if s is None]
        if left_out:
            notes.append(
                f"Left out {', '.join(left_out)}: no title on their list is in the model's "
                "catalogue."
            )
        if len(kept) < MIN_MEMBERS:
            raise GroupTooSmall(
                f"A group needs at least {MIN_MEMBERS} lists the model can read; "
                f"only {len(kept)} {'is' if len(kept) == 1 else 'are'} left.",
                left_out,
            )
        member_scores = [s for s in scored if s is not None]
        names = [members[m][0] for m in kept]
        pool = np.logical_and.reduce([s.eligible for s in member_scores]) & ~self._extras
        utilities = np.stack([s.utilities for s in member_scores])
        picks = take_turns(utilities, pool, options.count, self._franchise_ids)
        pool_size = int(pool.sum())
        user = UserContext(
            AnimeList(source=members[kept[0]][1].source, username=None), self.catalog
        )
        recommendations = []
        for pick in picks:
            predicted = [s.predicted[pick.index] for s in member_scores if s.predicted is not None]
            recommendations.append(
                self.explainer.explain(
                    pick.index,
                    user,
                    predicted_score=float(np.mean(predicted)) if predicted else None,
                    utility=pick.minimum,
                    extra_why=[suits_line(pick, names, pool_size)],
                )
            )
        if self.model is None:
            notes.append(NO_MODEL_NOTE)
        if len(recommendations) < options.count:
            notes.append(
                f"Only {len(recommendations)} title(s) are new to every member and pass the "
                "filters."
            )
        return RecommendationResult(recommendations, notes, self._model_json())

    async def recommend_group(
        self, members: Sequence[tuple[str, AnimeList]], options: RecommendOptions
    ) -> RecommendationResult:
        """`recommend_group_sync` on the engine's thread pool, off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, lambda: self.recommend_group_sync(members, options)
        )

    # ----- the pipeline -----------------------------------------------------------------------

    def _run_requests(self, requests: Sequence[_Request]) -> list[RecommendationResult | Exception]:
        """Many requests: one encoder and one ranker run for all lists the model knows."""
        prepared = [entries_from_list(r.anime_list.entries, self.item_index) for r in requests]
        warm = [
            i for i, (entries, _) in enumerate(prepared) if self.model is not None and len(entries)
        ]
        scored: dict[int, Scored] = {}
        nows: dict[int, int | None] = {}
        if warm:
            assert self.model is not None
            # One "now" per request, for its run and its leave-one-out runs alike.
            nows = {i: self._now(requests[i]) if self.model.has_times else None for i in warm}
            runs = self.model.run(
                [prepared[i][0] for i in warm],
                [nows[i] for i in warm] if self.model.has_times else None,
            )
            scored = dict(zip(warm, runs, strict=True))
        results: list[RecommendationResult | Exception] = []
        for i, request in enumerate(requests):
            try:
                entries, n_unknown = prepared[i]
                if i in scored:
                    results.append(
                        self._ranked(request, entries, n_unknown, scored[i], nows.get(i))
                    )
                else:
                    results.append(self._cold(request, n_unknown))
            except Exception as exc:  # one bad request must not fail its batch-mates
                results.append(exc)
        return results

    def _now(self, request: _Request) -> int | None:
        # Serving's "now" is the wall clock (docs/model.md#encoding), never an entry's own time.
        return int(time.time()) if request.now is None else request.now

    def _ranked(
        self,
        request: _Request,
        entries: Entries,
        n_unknown: int,
        scored: Scored,
        now: int | None = None,
    ) -> RecommendationResult:
        assert self.model is not None
        options = request.options
        today = request.today or dt.date.today()
        allowed = self.filters.eligible(request.anime_list, options, today=today)
        utilities = redirect_utilities(scored.utilities, allowed)
        user = UserContext(request.anime_list, self.catalog)
        demoted = self._demoted(options, user, scored, allowed)
        ranking = demote(utilities, demoted, allowed.mask, scored.candidates)
        trained = self.model.item_trained
        cap = min(self.settings.new_titles_max, options.count)
        mask = allowed.mask if cap else allowed.mask & trained
        picks = self._select(ranking, mask, options, allowed)
        new = [p for p in picks if not trained[p]]
        if len(new) > cap:
            # Keep the best `cap` of them (select returns picks best first) and choose again, so
            # the freed places go to titles the model has learnt from lists.
            mask = mask & trained
            mask[new[:cap]] = True
            picks = self._select(ranking, mask, options, allowed)
        # The later entry whose utility each franchise entry point was given, if it was.
        carried = carried_laters(scored.utilities, allowed)
        causes = self._causes(entries, scored, now, user, picks, carried)
        recommendations = []
        for index in picks:
            extra = []
            source = carried.get(index)
            if source is not None:
                extra.append(f"Where the franchise of {self.explainer.titles.name(source)} starts")
            if demoted[index]:
                extra.append(self._demotion_line(index, user, scored))
            if not trained[index]:
                extra.append(NEW_TO_MODEL_LINE)
            pick = self.explainer.explain(
                index,
                user,
                because=causes.get(index, ()),
                predicted_score=float(scored.predicted_scores[index]),
                utility=float(ranking[index]),
                extra_why=extra,
            )
            recommendations.append(dataclasses.replace(pick, new_to_model=not trained[index]))
        notes = exclusion_notes(allowed)
        if n_unknown:
            notes.append(_unknown_note(n_unknown))
        n_new = sum(r.new_to_model for r in recommendations)
        if n_new:
            notes.append(_new_titles_note(n_new, len(recommendations)))
        if len(recommendations) < options.count:
            notes.append(
                f"Only {len(recommendations)} title(s) passed your filters; loosen them for more."
            )
        return RecommendationResult(recommendations, notes, self._model_json())

    def _select(
        self,
        ranking: np.ndarray,
        mask: np.ndarray,
        options: RecommendOptions,
        allowed: Eligibility,
    ) -> list[int]:
        """The re-ranked picks among `mask`, best first (`inference.rerank.select`)."""
        assert self.model is not None
        has_genres = bool(self.model.facts.genres.shape[1])
        picks: list[int] = select(
            ranking,
            mask,
            self.model.item_embeddings,
            self._franchise_ids,
            options.count,
            popularity=self._popularity,
            adventurous=float(options.adventurous),
            genres=self.model.facts.genres if has_genres else None,
            genre_weight=self.genre_weight if has_genres else 0.0,
            limited=allowed.plan_to_watch if options.plan_to_watch else None,
            limit=options.plan_to_watch_max if options.plan_to_watch else None,
            method=self.method,
            tradeoff=self.tradeoff,
            n_candidates=self.settings.rerank_pool,
        ).tolist()
        return picks

    # ----- demotions and causes ---------------------------------------------------------------

    def _extra_kind(self, index: int) -> str | None:
        """ "A special", "A music video"... for the low-value extras; None for anything else."""
        item = self.catalog[index]
        if self.franchises.is_recap(index):
            return "A recap"
        if PROMO_TITLE.search(item.title):
            return "A promotional video"
        return EXTRA_KINDS.get(item.media_type or "")

    def _demoted(
        self, options: RecommendOptions, user: UserContext, scored: Scored, allowed: Eligibility
    ) -> np.ndarray:
        """bool [n_items]: the familiar mode's demotions (see the module doc)."""
        demoted = np.zeros(len(self.catalog), dtype=bool)
        if options.adventurous != 0:
            return demoted
        if self._below_mean_rule(user):
            assert user.mean_score is not None
            demoted |= scored.predicted_scores < user.mean_score - BELOW_MEAN_DEMOTION
        liked_franchises = self._franchise_ids[user.completed_liked]
        liked_franchises = liked_franchises[liked_franchises >= 0]
        # An extra of a series the user finished and liked is theirs to want; so is one they
        # put on their own plan-to-watch list.
        demoted |= (
            self._extras
            & ~np.isin(self._franchise_ids, liked_franchises, kind="table")
            & ~allowed.plan_to_watch
        )
        return demoted

    @staticmethod
    def _below_mean_rule(user: UserContext) -> bool:
        return user.mean_score is not None and user.n_scores >= MIN_SCORES_FOR_DEMOTION

    def _demotion_line(self, index: int, user: UserContext, scored: Scored) -> str:
        kind = self._extra_kind(index)
        predicted = float(scored.predicted_scores[index])
        if (
            self._below_mean_rule(user)
            and user.mean_score is not None
            and predicted < user.mean_score - BELOW_MEAN_DEMOTION
        ):
            return f"Predicted {predicted:.1f}, well under your mean score of {user.mean_score:.1f}"
        return f"{kind}, an extra to its series" if kind else "Ranked below the main titles"

    def _causes(
        self,
        entries: Entries,
        scored: Scored,
        now: int | None,
        user: UserContext,
        picks: Sequence[int],
        carried: dict[int, int],
    ) -> dict[int, list[int]]:
        """pick -> the entries to name as "because you liked" (see the module doc).

        Each pick's most similar liked entries are taken off the list one at a time and the list
        run through both models again, all variants in one batch. A variant without an entry
        older than the encoder's window costs no encoder work (the encoder sees the same list);
        one without an entry the encoder sees costs a row of an encoder run, so each pick tries
        at most `ENCODER_CAUSES_PER_PICK` of those, and a reply `MAX_ENCODER_TOKENS` tokens
        worth of rows.
        """
        model = self.model
        assert model is not None
        tried = within_budget(
            {pick: self.explainer.candidate_causes(pick, user) for pick in picks}, MAX_REMOVALS
        )
        every = np.array(sorted({c for causes in tried.values() for c in causes}), dtype=np.int64)
        seen = set(every[model.in_window(entries, every)].tolist())
        encoded = within_budget(
            {
                pick: [c for c in causes if c in seen][:ENCODER_CAUSES_PER_PICK]
                for pick, causes in tried.items()
            },
            max(1, MAX_ENCODER_TOKENS // (min(len(entries), model.max_len - 1) + 1)),
        )
        tried = {
            pick: [c for c in causes if c not in seen or c in encoded[pick]]
            for pick, causes in tried.items()
        }
        # A pick's utility is its own, or the later entry's that its franchise start carries.
        carriers = {pick: [pick] + ([carried[pick]] if pick in carried else []) for pick in picks}
        try:
            drops = self._drops(WholeList(model, entries, scored), now, tried, carriers)
        except Exception:  # the picks stand without their "because" lines
            log.exception("leave-one-out attribution failed; the reply names no causes")
            return {}
        return choose_causes(picks, drops, self.catalog)

    def _drops(
        self,
        whole: WholeList,
        now: int | None,
        tried: dict[int, list[int]],
        carriers: dict[int, list[int]],
    ) -> dict[int, dict[int, float]]:
        """pick -> {entry: how much the pick's utility falls without it} for the `tried` pairs."""
        assert self.model is not None
        removals = sorted({cause for causes in tried.values() for cause in causes})
        if not removals:
            return {pick: {} for pick in tried}
        probes = [
            np.array(sorted({c for pick in tried if cause in tried[pick] for c in carriers[pick]}))
            for cause in removals
        ]
        scored = whole.full
        without = self.model.leave_one_out(
            whole.entries, scored, removals, probes, now, whole=whole
        )
        utility_without = {
            (cause, int(item)): float(u)
            for cause, items, values in zip(removals, probes, without, strict=True)
            for item, u in zip(items, values, strict=True)
        }
        return {
            pick: {
                cause: max(float(scored.utilities[c]) for c in carriers[pick])
                - max(utility_without[(cause, c)] for c in carriers[pick])
                for cause in causes
            }
            for pick, causes in tried.items()
        }

    def _cold(self, request: _Request, n_unknown: int) -> RecommendationResult:
        picks, note = popular_recent(
            self.catalog,
            request.options,
            request.anime_list,
            today=request.today,
            franchises=self.franchises,
            explainer=self.explainer,
        )
        notes = [NO_MODEL_NOTE if self.model is None else note]
        if n_unknown and self.model is not None:
            notes.append(_unknown_note(n_unknown))
        return RecommendationResult(picks, notes, self._model_json())

    def _model_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.info.name, "version": self.info.version}
        if self.model is not None:
            out.update(self.model.describe())
        return out


def within_budget(tried: dict[int, list[int]], budget: int) -> dict[int, list[int]]:
    """`tried` (pick -> entries, most similar first) cut to at most `budget` distinct entries:
    each pick's first entry, then each pick's second, and so on."""
    kept: set[int] = set()
    out: dict[int, list[int]] = {pick: [] for pick in tried}
    for depth in range(max((len(c) for c in tried.values()), default=0)):
        for pick, causes in tried.items():
            if depth < len(causes):
                cause = causes[depth]
                if cause not in kept and len(kept) == budget:
                    continue
                kept.add(cause)
                out[pick].append(cause)
    return out


def demote(
    utilities: np.ndarray, demoted: np.ndarray, eligible: np.ndarray, candidates: np.ndarray
) -> np.ndarray:
    """A copy of `utilities` where the eligible `demoted` items sit below every eligible item that
    is not demoted and was a ranker candidate (`candidates`: vocabulary indices), in their own
    order. Nothing is removed: a request that leaves few other titles still gets these."""
    down = np.asarray(demoted, dtype=bool) & np.asarray(eligible, dtype=bool)
    if not down.any():
        return np.asarray(utilities, dtype=np.float64)
    up = np.asarray(eligible, dtype=bool) & ~down
    contenders = np.zeros_like(up)
    contenders[np.asarray(candidates, dtype=np.int64)] = True
    contenders &= up
    out = np.array(utilities, dtype=np.float64, copy=True)
    if contenders.any():
        floor = float(out[contenders].min())
    elif up.any():
        floor = float(out[up].min())
    else:
        return out
    shift = float(out[down].max()) - floor + DEMOTION_GAP
    if shift > 0:
        out[down] -= shift
    return out


def _new_titles_note(n_new: int, n_picks: int) -> str:
    return (
        f"{n_new} of these {n_picks} picks {'is' if n_new == 1 else 'are'} new to the model (no "
        f"list in its training data has {'it' if n_new == 1 else 'them'}): it judges them by genres, type, season and "
        "popularity only."
    )


def _unknown_title_message(title: str, match: TitleMatch, catalog: Catalog) -> str:
    closest = [c.index for c in match.candidates]
    if not closest:
        return f"I know no title like {title.strip()[:64]!r}."
    return f"I know no title {title.strip()[:64]!r}; the closest are {describe(closest, catalog)}."


def _unknown_note(n: int) -> str:
    what = "1 title" if n == 1 else f"{n} titles"
    return f"{what} on your list {'is' if n == 1 else 'are'} not in the model's catalogue and " + (
        "could not be used."
    )


def _headline_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """A few numbers for /help: parity and, when recorded, the bundle's own evaluation rows."""
    out: dict[str, Any] = {}
    parity = metrics.get("parity", {}).get("encoder_fp32", {})
    if parity:
        out["parity_max_abs_diff"] = max(parity.get("max_abs_diff", {}).values(), default=None)
    headline = metrics.get("headline")
    if isinstance(headline, dict):
        out.update(headline)
    return out


__all__ = [
    "COLD_START_NOTE",
    "NO_MODEL_NOTE",
    "Engine",
    "ModelInfo",
    "RecommendationResult",
    "demote",
    "within_budget",
]
