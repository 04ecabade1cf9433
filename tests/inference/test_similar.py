"""More like this title and group picks through the engine, on the tiny exported bundle."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from inference.animelist import AnimeList, ListEntry, Status
from inference.engine import Engine
from inference.group import GroupTooSmall
from inference.options import RecommendOptions
from inference.similar import (
    BlendWeights,
    ItemSimilarity,
    SimilarOptions,
    UnknownTitle,
    one_per_franchise,
    why_lines,
)
from tests.tiny_bundle import (
    ADULT_ID,
    PREQUEL_ID,
    RECAP_ID,
    SEQUEL_ID,
    UNAIRED_ID,
    export_xml,
    tiny_catalog,
)

EVERYTHING = SimilarOptions(count=25)


@pytest.fixture(scope="module")
def engine(tiny_bundle: Path) -> Engine:
    return Engine.from_bundle(tiny_bundle, providers="cpu", micro_batching=False)


def ids(result: object) -> set[int]:
    return {r.mal_id for r in result.recommendations}  # type: ignore[attr-defined]


def a_list(*entries: tuple[int, Status]) -> AnimeList:
    return AnimeList(
        source="mal",
        username="someone",
        entries=[ListEntry(mal_id=m, status=s, score=8.0) for m, s in entries],
    )


def test_item_similarity_blends_cosine_and_normalised_ease() -> None:
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    near = np.array([[2, 1], [0, 2], [0, 1]])
    weights = np.array([[4.0, -2.0], [1.0, 1.0], [1.0, 1.0]])
    sim = ItemSimilarity(emb, near, weights, blend=0.5)
    assert sim.cooccurrence(0).tolist() == [0.0, -0.5, 1.0]
    assert np.allclose(sim.cosine(0), [1.0, 1.0, 0.0])
    assert np.allclose(sim.scores(0), [0.5, 0.25, 0.5])
    # Without neighbours the cosine alone orders.
    bare = ItemSimilarity(emb, np.zeros((3, 0)), np.zeros((3, 0)))
    assert np.allclose(bare.scores(0), [1.0, 1.0, 0.0])


def test_the_knn_blend_ranks_a_planted_co_occurring_pair_first() -> None:
    # Query 0: item 1 is what its viewers also have (the item-kNN pair); item 2 shares its
    # vector, item 3 carries its strongest EASE weight, item 4 is the most popular.
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    near = np.array([[3, 1], [0, 2], [0, 1], [0, 1], [0, 1]])
    weights = np.array([[1.0, 0.2], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    cooc_items = np.array([[1, 3], [0, 2], [0, 1], [0, 1], [0, 1]])
    cooc_weights = np.array([[0.8, 0.1], [0.8, 0.1], [0.5, 0.1], [0.5, 0.1], [0.5, 0.1]])
    popularity = np.array([0.5, 0.5, 0.2, 0.2, 1.0])
    sim = ItemSimilarity(
        emb,
        near,
        weights,
        cooc_items=cooc_items,
        cooc_weights=cooc_weights,
        popularity=popularity,
        weights=BlendWeights(ease=0.25, vectors=0.1, popularity=0.3),
    )
    assert sim.has_knn
    assert np.allclose(sim.knn(0), [0.0, 1.0, 0.0, 0.125, 0.0])
    scores = sim.scores(0)
    scores[0] = -np.inf  # never the query itself (the engine masks it)
    assert int(np.argmax(scores)) == 1
    expected = 1.0 + 0.25 * 0.2 + 0.1 * 0.0 + 0.3 * 0.5
    assert scores[1] == pytest.approx(expected)


def test_without_knn_neighbours_the_older_blend_is_served() -> None:
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    near = np.array([[2, 1], [0, 2], [0, 1]])
    weights = np.array([[4.0, -2.0], [1.0, 1.0], [1.0, 1.0]])
    old = ItemSimilarity(emb, near, weights)
    for empty in (None, np.zeros((3, 0), dtype=np.int32)):
        sim = ItemSimilarity(
            emb, near, weights, cooc_items=empty, cooc_weights=empty, popularity=np.ones(3)
        )
        assert not sim.has_knn
        assert np.allclose(sim.scores(0), old.scores(0))
        assert np.allclose(sim.scores(0), [0.5, 0.25, 0.5])


def test_one_per_franchise_keeps_the_first_of_each() -> None:
    franchise = np.array([5, 5, -1, 6, 6])
    assert one_per_franchise(np.array([0, 1, 2, 3, 4]), franchise, 10) == [0, 2, 3]
    assert one_per_franchise(np.array([0, 1, 2, 3, 4]), franchise, 10, free=5) == [0, 1, 2, 3]


def test_why_lines_say_genres_and_fans() -> None:
    assert why_lines("X", ("Action", "Drama"), ("Drama",), 0.9) == [
        "Liked by fans of X; shares Drama"
    ]
    assert why_lines("X", ("Action",), ("Action", "Comedy"), 0.0) == ["Shares Action with X"]
    assert why_lines("X", ("Action",), ("Comedy",), 0.5) == ["Liked by fans of X"]


def test_similar_names_the_match_and_never_offers_extras(engine: Engine) -> None:
    result = engine.similar_sync("show 3", EVERYTHING)
    assert result.query_title == "Show 3" and result.heading == "More like Show 3"
    offered = ids(result)
    assert offered
    assert 1003 not in offered  # the query itself
    assert not offered & {ADULT_ID, UNAIRED_ID, RECAP_ID}
    assert all(r.why for r in result.recommendations)
    assert result.as_json()["query"] == {"mal_id": 1003, "title": "Show 3"}


def test_same_franchise_only_when_asked(engine: Engine) -> None:
    plain = ids(engine.similar_sync("Show 0", EVERYTHING))
    assert SEQUEL_ID not in plain
    asked = ids(engine.similar_sync("Show 0", SimilarOptions(count=25, franchise=True)))
    assert SEQUEL_ID in asked
    # From the sequel's side, its prequel is the same franchise.
    assert PREQUEL_ID not in ids(engine.similar_sync("Show 1", EVERYTHING))


def test_sequels_of_other_franchises_never(engine: Engine) -> None:
    # Even for someone who completed the prequel, a sequel is not "more like Show 5".
    finished = a_list((PREQUEL_ID, Status.COMPLETED))
    assert SEQUEL_ID not in ids(engine.similar_sync("Show 5", EVERYTHING, finished))


def test_watched_and_dropped_titles_are_left_out(engine: Engine) -> None:
    before = ids(engine.similar_sync("Show 3", EVERYTHING))
    assert {1002, 1004, 1008} <= before
    mine = a_list((1002, Status.COMPLETED), (1004, Status.DROPPED), (1008, Status.PLAN_TO_WATCH))
    after = ids(engine.similar_sync("Show 3", EVERYTHING, mine))
    assert not after & {1002, 1004}
    assert 1008 in after  # plan-to-watch stays


def test_feedback_exclusions_are_honoured(engine: Engine) -> None:
    options = SimilarOptions(count=25, exclude_mal_ids=frozenset({1002}))
    assert 1002 not in ids(engine.similar_sync("Show 3", options))


def test_unknown_title_names_the_closest_three(engine: Engine) -> None:
    with pytest.raises(UnknownTitle) as caught:
        engine.similar_sync("qqqq zzzz", EVERYTHING)
    message = str(caught.value)
    assert "closest" in message and message.count("Show") == 3
    assert "\n" not in message


def test_without_a_model_genres_decide_and_a_note_says_so() -> None:
    engine = Engine.without_model(tiny_catalog())
    result = engine.similar_sync("Show 4", SimilarOptions(count=3))
    assert len(result.recommendations) == 3
    assert any("genres" in note for note in result.notes)
    query_genres = set(engine.catalog[4].genres)
    assert all(set(r.genres) & query_genres for r in result.recommendations)


def test_the_bundle_carries_item_knn_neighbours_from_every_interaction(
    tiny_bundle: Path, engine: Engine
) -> None:
    from training.dataset import Dataset
    from training.export import COOC_K
    from training.neighbours import binary_matrix, fit_cooccurrence

    data = Dataset(tiny_bundle.parent / "planted")
    offsets = np.asarray(data.offsets)
    users = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    matrix = binary_matrix(users, np.asarray(data.items), len(offsets) - 1, data.n_items)
    items, weights = fit_cooccurrence(matrix, COOC_K)
    with np.load(tiny_bundle / "item_facts.npz") as facts:
        np.testing.assert_array_equal(facts["cooc_items"], items)
        np.testing.assert_allclose(facts["cooc_weights"], weights)
    assert engine.model is not None
    assert engine.model.cooc_items is not None and engine.model.cooc_weights is not None
    assert engine.model.cooc_items.shape == (data.n_items, min(COOC_K, data.n_items - 1))
    # /similar's first pick is the query's strongest item-kNN neighbour when it may be offered.
    query = 3
    result = engine.similar_sync("Show 3", SimilarOptions(count=1))
    allowed = ids(engine.similar_sync("Show 3", EVERYTHING))
    first = next(
        engine.catalog[int(i)].mal_id
        for i in engine.model.cooc_items[query]
        if engine.catalog[int(i)].mal_id in allowed
    )
    assert engine.model.cooc_weights[query].max() > 0
    assert ids(result) == {first}


def test_a_bundle_without_item_knn_neighbours_loads_and_serves(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    import hashlib
    import shutil

    bundle = tmp_path / "older"
    shutil.copytree(tiny_bundle, bundle)
    with np.load(bundle / "item_facts.npz") as facts:
        kept = {k: facts[k] for k in facts.files if not k.startswith("cooc_")}
    np.savez(bundle / "item_facts.npz", allow_pickle=False, **kept)
    manifest = json.loads((bundle / "manifest.json").read_text())
    raw = (bundle / "item_facts.npz").read_bytes()
    manifest["files"]["item_facts.npz"] = {
        "sha256": hashlib.sha256(raw).hexdigest(),
        "bytes": len(raw),
    }
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    older = Engine.from_bundle(bundle, providers="cpu", micro_batching=False)
    assert older.model is not None and older.model.cooc_items is None
    result = older.similar_sync("Show 3", SimilarOptions(count=3))
    assert len(result.recommendations) == 3
    assert 1003 not in ids(result)


def test_group_picks_are_new_to_every_member(engine: Engine) -> None:
    alice = a_list((1002, Status.COMPLETED), (1003, Status.COMPLETED), (1004, Status.DROPPED))
    bob = a_list((1008, Status.COMPLETED), (1009, Status.COMPLETED), (1010, Status.WATCHING))
    result = engine.recommend_group_sync(
        [("alice", alice), ("bob", bob)], RecommendOptions(count=5)
    )
    picks = ids(result)
    assert len(picks) == 5
    assert not picks & {1002, 1003, 1004, 1008, 1009, 1010}
    assert not picks & {ADULT_ID, UNAIRED_ID, RECAP_ID}
    for rec in result.recommendations:
        assert any(line.startswith("Suits ") for line in rec.why)


def test_a_member_the_model_cannot_read_is_named_and_the_rest_go_on(engine: Engine) -> None:
    alice = a_list((1002, Status.COMPLETED))
    bob = a_list((1008, Status.COMPLETED))
    stranger = a_list((999_999, Status.COMPLETED))
    result = engine.recommend_group_sync(
        [("alice", alice), ("bob", bob), ("zed", stranger)], RecommendOptions(count=3)
    )
    assert len(result.recommendations) == 3
    assert any("zed" in note for note in result.notes)
    with pytest.raises(GroupTooSmall):
        engine.recommend_group_sync([("alice", alice), ("zed", stranger)], RecommendOptions())


# ----- python -m inference similar -------------------------------------------------------------


def run_cli(*argv: str) -> tuple[int, str]:
    from inference.cli import main

    out = io.StringIO()
    code = main(list(argv), out)
    return code, out.getvalue()


def test_cli_prints_the_match_then_numbered_picks(tiny_bundle: Path, tmp_path: Path) -> None:
    export = tmp_path / "export.xml"
    export.write_text(export_xml([(1002, "Completed", 9, 12), (1004, "Dropped", 3, 2)]))
    code, text = run_cli(
        "similar", "show", "3", "-n", "25", "--export", str(export), "--bundle", str(tiny_bundle)
    )
    assert code == 0
    lines = text.splitlines()
    assert lines[0] == "More like Show 3"
    assert lines[1].startswith("1. ")
    assert any(line.startswith("   why: ") for line in lines)
    titles = {line.split(". ", 1)[1] for line in lines if line[:1].isdigit()}
    assert len(titles) > 3
    assert not titles & {"Show 2", "Show 4", "Show 3"}  # the list's titles, and the query


def test_cli_json_has_the_recommend_shape_and_the_query(tiny_bundle: Path) -> None:
    code, text = run_cli(
        "similar", "Show 3", "--count", "3", "--json", "--bundle", str(tiny_bundle)
    )
    assert code == 0
    document = json.loads(text)
    assert document["query"] == {"mal_id": 1003, "title": "Show 3"}
    assert len(document["recommendations"]) == 3
    assert {"mal_id", "title", "predicted_score", "why"} <= set(document["recommendations"][0])
    assert isinstance(document["notes"], list)


def test_cli_unknown_title_exits_2_naming_the_closest(
    tiny_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = run_cli("similar", "qqqq", "zzzz", "--bundle", str(tiny_bundle))
    assert code == 2 and text == ""
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: I know no title") and err.count("Show") == 3
