"""The append_row format, byte for byte, and the success counting rule."""

import pandas as pd
import pytest

from scoring.results import BadReturnType, ItemCounts, count_items, format_rows, normalise


def test_dataframe_rows_are_pandas_to_csv_with_spaces():
    df = pd.DataFrame(
        {"file": ["a b.png", "c.png"], "class": [3, 7], "probability": [0.1 + 0.2, 1e-12]}
    )
    assert format_rows(df) == df.to_csv(header=None, index=None, sep=" ").encode()
    assert format_rows(df) == b'"a b.png" 3 0.30000000000000004\nc.png 7 1e-12\n'


def test_list_rows_are_str_of_each_element():
    assert format_rows([1, "x y", (1, 2), {"a": 1}]) == b"1\nx y\n(1, 2)\n{'a': 1}\n"


def test_tuple_is_taken_as_a_list():
    assert normalise(("a", "b")) == ["a", "b"]


@pytest.mark.parametrize("value", [None, 3, "text", {"a": 1}, pd.Series([1])])
def test_other_return_types_are_refused_with_the_type_named(value):
    with pytest.raises(BadReturnType, match=type(value).__qualname__):
        normalise(value)


@pytest.mark.parametrize(
    ("returned", "total", "succeeded", "failed", "extra"),
    [(10, 10, 10, 0, 0), (7, 10, 7, 3, 0), (12, 10, 10, 0, 2), (0, 10, 0, 10, 0)],
)
def test_success_counting(returned, total, succeeded, failed, extra):
    counts = ItemCounts(total=total, returned=returned)
    assert (counts.succeeded, counts.failed, counts.extra) == (succeeded, failed, extra)


def test_count_items_uses_the_number_of_rows():
    assert count_items(pd.DataFrame({"a": range(4)}), 5).failed == 1
