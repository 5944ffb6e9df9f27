"""The engine's fusion and citation functions on small hand-computed inputs (pure functions: no index,
no model), beside the end-to-end hybrid tests in test_engine.py."""
from __future__ import annotations

import pytest

from backend.engine.query_engine import citations_in
from backend.engine.stages import dbsf, rrf


def test_rrf_sums_reciprocal_ranks_over_the_lists() -> None:
    fused = rrf([["a", "b"], ["b", "c"]], k=60)
    assert fused == pytest.approx({"a": 1 / 61, "b": 1 / 62 + 1 / 61, "c": 1 / 62})
    assert sorted(fused, key=fused.get, reverse=True) == ["b", "a", "c"]  # in both lists beats first in one
    assert rrf([]) == {} and rrf([[], ["x"]], k=0) == {"x": 1.0}


def test_dbsf_scales_each_list_by_mean_and_three_deviations() -> None:
    # {a: 1, b: 0}: mean 0.5, std 0.5 -> [-1, 2]; {b: 10, c: 4}: mean 7, std 3 -> [-2, 16]
    fused = dbsf([{"a": 1.0, "b": 0.0}, {"b": 10.0, "c": 4.0}])
    assert fused == pytest.approx({"a": 2 / 3, "b": 1 / 3 + 12 / 18, "c": 6 / 18})
    assert dbsf([{}, {"x": 3.0}]) == {"x": 0.0}  # an empty list adds nothing; one score has no spread
    assert all(0.0 <= v <= 1.0 for v in dbsf([{"p": -1e9, "q": 0.0, "r": 1e9}]).values())  # clipped


def test_citations_are_the_numbers_of_shown_sources() -> None:
    assert citations_in("As [1] and [3] say, not [9] or [0]; again [1].", n_sources=3) == [1, 3]
    assert citations_in("no brackets, [x], [1234]", n_sources=5) == []
