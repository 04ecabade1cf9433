"""Group picks: rank percentiles, the served turns with a veto and a shortlist, max-min variants
and the round-robin baseline."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from inference.group import (
    GroupPick,
    choose,
    choose_set,
    rank_gains,
    rank_percentiles,
    round_robin,
    suits_line,
    take_turns,
)


def test_rank_percentiles_over_the_pool_only() -> None:
    utilities = np.array([5.0, 1.0, 3.0, 100.0])
    pool = np.array([True, True, True, False])
    percentile, rank = rank_percentiles(utilities, pool)
    assert rank.tolist() == [0, 2, 1, -1]
    assert percentile.tolist() == [1.0, 0.0, 0.5, -1.0]


def test_a_title_loved_by_two_and_hated_by_one_loses_to_one_all_like() -> None:
    # Items: 0 loved by alice and bob, hated by carol; 1 liked by all three; 2..5 filler.
    utilities = np.array(
        [
            [10.0, 8.0, 1.0, 2.0, 3.0, 4.0],
            [10.0, 8.0, 1.0, 2.0, 3.0, 4.0],
            [0.0, 8.0, 1.0, 2.0, 3.0, 4.0],
        ]
    )
    pool = np.ones(6, dtype=bool)
    picks = choose(utilities, pool, 2)
    assert picks[0].index == 1
    assert picks[0].minimum > 0.5
    # Round-robin serves alice's and bob's favourite first.
    assert round_robin(utilities, pool, 1) == [0]


def test_the_mean_breaks_ties_of_the_minimum() -> None:
    utilities = np.array([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 3.0, 2.0]])
    # Percentiles: item 1 -> (2/3, 1/3), item 2 -> (1/3, 1): equal minimum, item 2 has the
    # higher mean.
    picks = choose(utilities, np.ones(4, dtype=bool), 2)
    assert [p.index for p in picks] == [2, 1]


def test_one_title_per_franchise_and_only_from_the_pool() -> None:
    utilities = np.array([[5.0, 4.0, 3.0, 9.0], [5.0, 4.0, 3.0, 9.0]])
    pool = np.array([True, True, True, False])
    franchise = np.array([7, 7, -1, -1])
    picks = choose(utilities, pool, 3, franchise)
    assert [p.index for p in picks] == [0, 2]
    assert round_robin(utilities, pool, 3, franchise) == [0, 2]


def test_suits_line_names_the_best_served_member_first() -> None:
    pick = GroupPick(index=0, percentiles=(0.5, 1.0, 0.9), ranks=(50, 0, 10))
    line = suits_line(pick, ["alice", "bob", "carol"], 100)
    assert line == "Suits bob most (top 1%); carol top 11%, alice top 51%"


@given(
    arrays(np.float64, (3, 12), elements=st.floats(-5, 5, allow_nan=False)),
    arrays(bool, 12),
    st.integers(1, 12),
)
def test_max_min_is_never_worse_for_the_least_served_member(
    utilities: np.ndarray, pool: np.ndarray, count: int
) -> None:
    picks = choose(utilities, pool, count)
    assert len(picks) == min(count, int(pool.sum()))
    assert all(pool[p.index] for p in picks)
    if picks:
        # The first pick's minimum percentile is the best any pool title offers.
        percentiles = np.stack([rank_percentiles(u, pool)[0] for u in utilities])
        best_min = percentiles[:, pool].min(axis=0).max()
        assert picks[0].minimum == best_min


def test_the_served_choice_starts_with_common_ground_then_serves_the_least_served() -> None:
    # Item 0: alice's and bob's favourite, carol's worst; item 1: everyone's second.
    utilities = np.array(
        [
            [10.0, 8.0, 1.0, 2.0, 3.0, 4.0],
            [10.0, 8.0, 1.0, 2.0, 3.0, 4.0],
            [0.0, 8.0, 1.0, 2.0, 3.0, 9.0],
        ]
    )
    picks = choose_set(utilities, np.ones(6, dtype=bool), 2)
    assert picks[0].index == 1  # liked by all beats loved by two and hated by one
    # Everyone has 0.5 after it. Item 0 would leave carol at 0.5 + 1/6; her favourite, item 5,
    # leaves the others at 0.5 + 1/3: the smaller total is larger.
    assert picks[1].index == 5


def test_rank_gains_are_one_for_the_best_and_zero_outside_the_pool() -> None:
    ranks = np.array([0, 1, 9, -1])
    assert rank_gains(ranks).tolist() == [1.0, 0.5, 0.1, 0.0]
    assert rank_gains(ranks, "dcg")[:2].tolist() == [1.0, pytest.approx(1 / np.log2(3))]


@given(
    arrays(np.float64, (3, 12), elements=st.floats(-5, 5, allow_nan=False)),
    arrays(bool, 12),
    st.integers(1, 12),
)
def test_the_served_choice_takes_pool_titles_once(
    utilities: np.ndarray, pool: np.ndarray, count: int
) -> None:
    picks = [p.index for p in choose_set(utilities, pool, count)]
    assert len(picks) == len(set(picks)) == min(count, int(pool.sum()))
    assert all(pool[i] for i in picks)


def test_the_served_turns_never_offer_what_one_member_hates_while_another_is_open() -> None:
    # Item 0: alice's and bob's favourite, carol's worst; item 1: liked by all three.
    utilities = np.array(
        [
            [10.0, 8.0, 1.0, 2.0, 3.0, 4.0],
            [10.0, 8.0, 1.0, 2.0, 3.0, 4.0],
            [0.0, 8.0, 1.0, 2.0, 3.0, 4.0],
        ]
    )
    picks = [p.index for p in take_turns(utilities, np.ones(6, dtype=bool), 4)]
    assert picks[0] == 1  # alice chooses first: liked by all beats loved by two, hated by one
    # Item 0 is in carol's bottom 20%, item 2 in alice's and bob's: neither while others are open.
    assert sorted(picks) == [1, 3, 4, 5]
    # Only vetoed titles left: they are offered rather than nothing.
    everything = [p.index for p in take_turns(utilities, np.ones(6, dtype=bool), 6)]
    assert sorted(everything[4:]) == [0, 2]


def test_the_chooser_takes_the_shortlisted_title_that_serves_the_others_most() -> None:
    # Alice's order is 0, 1, 2, 3, 4, 5; bob ranks item 2 first and carol item 3.
    utilities = np.array(
        [
            [9.0, 8.0, 7.0, 6.0, 5.0, 4.0],
            [1.0, 2.0, 9.0, 3.0, 4.0, 5.0],
            [3.0, 1.0, 2.0, 9.0, 4.0, 5.0],
        ]
    )
    pool = np.ones(6, dtype=bool)
    # Among alice's 3 best, item 2 (bob's favourite) gains the group most.
    assert take_turns(utilities, pool, 1, veto=0.0, shortlist=3)[0].index == 2
    # With a shortlist of one, each member takes their own best in turn.
    assert [p.index for p in take_turns(utilities, pool, 3, veto=0.0, shortlist=1)] == [0, 2, 3]
    assert round_robin(utilities, pool, 3) == [0, 2, 3]


def test_the_least_served_member_chooses_next_when_asked() -> None:
    # Everyone's best is item 0, which serves alice and bob fully; carol ranks it second-best
    # and her own best, item 1, is the worst for the others... item 2 next for alice and bob.
    utilities = np.array(
        [
            [9.0, 1.0, 8.0, 7.0],
            [9.0, 1.0, 8.0, 7.0],
            [8.0, 9.0, 1.0, 7.0],
        ]
    )
    pool = np.ones(4, dtype=bool)
    picks = take_turns(utilities, pool, 2, veto=0.0, shortlist=1, least_served=True)
    # Item 0 gives (1, 1, 1/2): carol is served least, and takes her own best next.
    assert [p.index for p in picks] == [0, 1]
    # In turns, bob (second) would choose: his best open title is item 2.
    assert [p.index for p in take_turns(utilities, pool, 2, veto=0.0, shortlist=1)] == [0, 2]


@given(
    arrays(np.float64, (3, 12), elements=st.floats(-5, 5, allow_nan=False)),
    arrays(bool, 12),
    st.integers(1, 12),
    st.integers(1, 6),
    st.booleans(),
)
def test_the_served_turns_take_pool_titles_once_and_honour_the_veto(
    utilities: np.ndarray, pool: np.ndarray, count: int, shortlist: int, least_served: bool
) -> None:
    picks = take_turns(utilities, pool, count, shortlist=shortlist, least_served=least_served)
    indices = [p.index for p in picks]
    assert len(indices) == len(set(indices)) == min(count, int(pool.sum()))
    assert all(pool[i] for i in indices)
    percentiles = np.stack([rank_percentiles(u, pool)[0] for u in utilities])
    liked = {int(i) for i in np.flatnonzero(pool) if percentiles[:, i].min() >= 0.2 - 1e-9}
    # A vetoed title only once every title all members accept is taken.
    for position, index in enumerate(indices):
        if index not in liked:
            assert liked <= set(indices[:position])


def test_the_served_turns_keep_one_title_per_franchise() -> None:
    utilities = np.array([[5.0, 4.0, 3.0, 9.0], [5.0, 4.0, 3.0, 9.0]])
    pool = np.array([True, True, True, False])
    franchise = np.array([7, 7, -1, -1])
    picks = take_turns(utilities, pool, 3, franchise, veto=0.0)
    assert [p.index for p in picks] == [0, 2]


@given(
    st.permutations(range(10)),
    st.permutations(range(10)),
    st.permutations(range(10)),
    st.integers(1, 10),
)
def test_without_a_veto_the_served_turns_are_round_robin(
    a: list[int], b: list[int], c: list[int], count: int
) -> None:
    utilities = np.array([a, b, c], dtype=np.float64)
    pool = np.ones(10, dtype=bool)
    served = [p.index for p in take_turns(utilities, pool, count, veto=0.0)]
    assert served == round_robin(utilities, pool, count)
