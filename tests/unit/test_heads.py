"""Heads: the string form, spec parsing against a ranking, random draws, the one range check."""
from __future__ import annotations

import numpy as np
import pytest

from nasa_lens.heads import (
    HeadSpecError,
    check_head,
    format_head,
    format_heads,
    parse_head,
    parse_heads,
    random_heads,
    ranked_heads,
)
from nasa_lens.vocab import NasaLensError

RANKING = np.array([[0.1, 0.9, -0.3], [0.5, np.nan, 0.9]])  # 2 layers x 3 heads; a tie at 0.9, one NaN


def test_format_and_parse_round_trip():
    assert format_head((18, 4)) == "18.4"
    assert format_heads([(0, 1), (2, 3)]) == "0.1,2.3"
    assert parse_head(" 18.4 ") == (18, 4)
    assert parse_heads("0.1, 1.2", 2, 3) == [(0, 1), (1, 2)]
    assert parse_heads([(1, 0), [0, 2]], 2, 3) == [(1, 0), (0, 2)]


def test_ranked_heads_breaks_ties_by_position_and_puts_nan_last():
    assert ranked_heads(RANKING) == [(0, 1), (1, 2), (1, 0), (0, 0), (0, 2), (1, 1)]
    assert ranked_heads(RANKING, descending=False) == [(0, 2), (0, 0), (1, 0), (0, 1), (1, 2), (1, 1)]


def test_top_bottom_and_random_specs():
    assert parse_heads("top:2", 2, 3, ranking=RANKING) == [(0, 1), (1, 2)]
    assert parse_heads("bottom:1", 2, 3, ranking=RANKING) == [(0, 2)]
    a = parse_heads("random:3:7", 2, 3)
    assert a == random_heads(3, 2, 3, seed=7) == sorted(a) and len(set(a)) == 3
    assert parse_heads("random:3", 2, 3) == random_heads(3, 2, 3, seed=0)
    assert random_heads(2, 2, 3, seed=1, exclude=[(0, 0), (0, 1), (0, 2), (1, 0)]) == [(1, 1), (1, 2)]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("1.x", "bad head '1.x': expected LAYER.HEAD"),
        ("-1.0", "layer and head must be >= 0"),
        ("2.0", r"head '2.0': layer 2 out of range \(the model has 2 layers\)"),
        ("0.3", r"head '0.3': head 3 out of range \(the model has 3 heads per layer\)"),
        ("top:x", "expected top:K with K an integer"),
        ("top:7", r"K must be in 1..6"),
    ],
)
def test_bad_specs_name_the_problem(spec, message):
    with pytest.raises(HeadSpecError, match=message):
        parse_heads(spec, 2, 3, ranking=RANKING)


def test_check_head_is_the_one_range_check_and_takes_the_error_class():
    check_head((1, 2), 2, 3)
    check_head((9, 9), None, None)  # nothing to check against
    with pytest.raises(HeadSpecError, match=r"head 1.3: head 3 out of range"):
        check_head((1, 3), 2, 3)

    class Mine(NasaLensError):
        pass

    with pytest.raises(Mine, match=r"head 5.0: layer 5 out of range \(the model has 2 layers\)"):
        check_head((5, 0), 2, 3, error=Mine)
    assert issubclass(HeadSpecError, NasaLensError) and issubclass(HeadSpecError, ValueError)
    with pytest.raises(HeadSpecError, match="cannot draw 7 random heads from 6"):
        random_heads(7, 2, 3)
