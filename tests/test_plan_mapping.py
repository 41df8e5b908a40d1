"""The rank, log and quantile mappings: exact formulas, ties, order."""

from __future__ import annotations

import math
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from bitplan.plan import Mapping
from bitplan.plan.mapping import level_indices, level_positions, middle_index

values_lists = st.lists(st.integers(0, 50), min_size=1, max_size=30)
level_counts = st.integers(1, 9)


@given(values_lists, level_counts)
def test_rank_is_round_half_up_of_the_scaled_rank(values: list[int], n_levels: int) -> None:
    distinct = sorted(set(values))
    indices = level_indices(values, n_levels, Mapping.rank)
    for value, index in zip(values, indices):
        if len(distinct) == 1:
            assert index == n_levels // 2
        else:
            r = distinct.index(value)
            assert index == math.floor(Fraction(r * (n_levels - 1), len(distinct) - 1) + Fraction(1, 2))


@given(values_lists, level_counts, st.sampled_from(list(Mapping)))
def test_every_mapping_is_monotone_with_equal_ties_and_in_range(values, n_levels, mapping) -> None:
    indices = level_indices(values, n_levels, mapping)
    pairs = sorted(zip(values, indices))
    for (v1, i1), (v2, i2) in zip(pairs, pairs[1:]):
        assert i1 == i2 if v1 == v2 else i1 <= i2
    assert all(0 <= index < n_levels for index in indices)


@given(values_lists, level_counts, st.sampled_from(list(Mapping)))
def test_positions_round_to_the_indices(values, n_levels, mapping) -> None:
    if len(set(values)) == 1:
        return  # one value: the middle level, whatever the position
    for position, index in zip(level_positions(values, n_levels, mapping), level_indices(values, n_levels, mapping)):
        assert min(max(math.floor(position + 0.5 + 1e-9), 0), n_levels - 1) == index


def test_rank_uses_the_extremes_and_the_middle() -> None:
    assert level_indices([5, 1, 9], 5, Mapping.rank) == [2, 0, 4]
    assert level_indices([3, 3], 4, Mapping.rank) == [middle_index(4)] * 2 == [2, 2]


def test_quantile_fills_levels_evenly() -> None:
    indices = level_indices(list(range(100)), 5, Mapping.quantile)
    assert [indices.count(level) for level in range(5)] == [20] * 5


def test_log_separates_an_outlier() -> None:
    assert level_indices([10, 11, 12, 100000], 3, Mapping.log) == [0, 0, 0, 2]
    assert level_indices([10, 11, 12, 100000], 3, Mapping.rank) == [0, 1, 1, 2]
