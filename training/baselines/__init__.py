"""Reference models for `python -m training evaluate` (definitions in docs/evaluation.md#baselines), registered by name.

Ranking: popularity, itemknn, ease, ials, markov. Scores: bias, mf. Statuses: statusrate.
"""

from __future__ import annotations

from training.baselines import ease, ials, itemknn, markov, popularity, scores, statuses
from training.baselines.interface import (
    register_model,
    register_score_model,
    register_status_model,
)

register_model("popularity", popularity.make)
register_model("itemknn", itemknn.make, itemknn.K_GRID)
register_model("ease", ease.make, ease.LAMBDA_GRID)
register_model("ials", ials.make, ials.GRID)
register_model("markov", markov.make)
register_score_model("bias", scores.make_bias, scores.BIAS_GRID)
register_score_model("mf", scores.make_mf, scores.MF_GRID)
register_status_model("statusrate", statuses.make_statusrate, statuses.STATUS_GRID)
