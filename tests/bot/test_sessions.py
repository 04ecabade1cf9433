"""A /more session survives the store's form unchanged, whatever the options and titles."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.commands import Session
from bot.storage import StoredSession
from inference.animelist import AnimeList, ListEntry, Status
from inference.catalog import MEDIA_TYPES
from inference.options import MAX_COUNT, RecommendOptions

ids = st.integers(min_value=1, max_value=2**31 - 1)
texts = st.text(max_size=30)

options = st.builds(
    RecommendOptions,
    count=st.integers(min_value=1, max_value=MAX_COUNT),
    media_types=st.none() | st.frozensets(st.sampled_from(MEDIA_TYPES), min_size=1),
    # Disjoint alphabets: a genre both included and excluded is refused by the options.
    include_genres=st.tuples(st.text("Aé<- ", min_size=1, max_size=8), st.text("b'\"", max_size=8)),
    exclude_genres=st.tuples(st.text("Xz&ß", min_size=1, max_size=8)),
    plan_to_watch=st.booleans(),
    unaired=st.booleans(),
    adult=st.booleans(),
    adventurous=st.floats(min_value=0.0, max_value=1.0),
    exclude_mal_ids=st.frozensets(ids, max_size=8),
    plan_to_watch_max=st.integers(min_value=0, max_value=10),
)
sessions = st.builds(
    Session,
    anime_list=st.builds(
        AnimeList,
        source=st.sampled_from(["mal", "anilist", "mal-export"]),
        username=st.none() | texts,
        entries=st.lists(
            st.builds(ListEntry, mal_id=ids, status=st.sampled_from(list(Status))), max_size=5
        ),
    ),
    options=options,
    shown_ids=st.sets(ids, max_size=8),
    last_cards=st.lists(st.tuples(ids, texts), max_size=5),
    service=st.none() | st.sampled_from(["mal", "anilist"]),
    username=st.none() | texts,
)


# Generation is cheap but the machine may be busy: a slow draw is not a failure.
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sessions)
def test_a_session_round_trips_through_its_stored_form(session: Session) -> None:
    stored = StoredSession(session.state_json(), session.anime_list.to_json())
    assert Session.from_stored(stored) == session
