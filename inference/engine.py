"""The recommendation engine: an AnimeList and options in, annotated picks out.

`Engine.recommend` is what every front end calls. With a model bundle it runs encoder ->
candidates -> ranker -> filters -> re-rank -> annotations (added with the ONNX export); without
one (`Engine.without_model`) every list gets the cold-start path, popular-and-recent picks, with a
note saying so. The blocking work runs off the event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from inference.animelist import AnimeList
from inference.catalog import Catalog
from inference.explain import Explainer, Recommendation
from inference.franchise import FranchiseIndex
from inference.options import RecommendOptions
from inference.popular import popular_recent

NO_MODEL_NOTE = "No trained model is loaded, so these are popular recent picks for everyone."


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

    def as_json(self) -> dict[str, Any]:
        return {
            "recommendations": [r.as_json() for r in self.recommendations],
            "notes": list(self.notes),
        }


class Engine:
    """Shared by every request of a process; thread-safe for `recommend_sync`."""

    def __init__(self, catalog: Catalog, info: ModelInfo) -> None:
        self.catalog = catalog
        self.info = info
        self.franchises = FranchiseIndex.build(catalog)
        self.explainer = Explainer(catalog, franchises=self.franchises)

    @classmethod
    def without_model(cls, catalog: Catalog) -> Engine:
        info = ModelInfo(name="none", version="-", trained_on="no model: popularity only")
        return cls(catalog, info)

    def recommend_sync(
        self,
        anime_list: AnimeList,
        options: RecommendOptions,
        *,
        today: dt.date | None = None,
    ) -> RecommendationResult:
        options = options.resolve_genres(self.catalog)
        picks, _cold_start_note = popular_recent(
            self.catalog,
            options,
            anime_list,
            today=today,
            franchises=self.franchises,
            explainer=self.explainer,
        )
        notes = [NO_MODEL_NOTE]
        return RecommendationResult(picks, notes)

    async def recommend(
        self, anime_list: AnimeList, options: RecommendOptions
    ) -> RecommendationResult:
        return await asyncio.to_thread(self.recommend_sync, anime_list, options)
