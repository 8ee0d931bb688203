"""The shared sort/filter of every table: order, direction, regex filter and its errors."""

from __future__ import annotations

from rich.text import Text

from gpudesk.app.widgets.table_nav import Row, SortFilter

ROWS = [
    Row("a", ["alpha", "9"], ["alpha", 9]),
    Row("b", [Text("beta"), "10"], ["beta", 10]),
    Row("c", ["gamma", "-"], ["gamma", None]),
    Row("d", ["Delta", "2"], ["Delta", 2]),
]


def keys(rows: list[Row]) -> list[str]:
    return [r.key for r in rows]


def test_unsorted_keeps_the_given_order_and_cycles_through_every_column() -> None:
    view = SortFilter(["NAME", "N"])
    assert keys(view.apply(ROWS)) == ["a", "b", "c", "d"]
    view.cycle(1)
    assert view.sort == 0 and view.label(0) == "NAME ▲" and view.label(1) == "N"
    assert keys(view.apply(ROWS)) == ["a", "b", "d", "c"]  # case-insensitive text
    view.cycle(1)
    # Numbers sort as numbers (9 before 10); a missing value goes last.
    assert keys(view.apply(ROWS)) == ["d", "a", "b", "c"]
    view.flip()
    assert view.label(1) == "N ▼" and view.describe() == "sorted by N ▼"
    assert keys(view.apply(ROWS)) == ["b", "a", "d", "c"]  # still last when reversed
    view.cycle(1)
    assert view.sort is None and view.describe() == ""
    view.cycle(-1)
    assert view.sort == 1


def test_filter_is_a_case_insensitive_regex_and_bang_inverts() -> None:
    view = SortFilter(["NAME", "N"])
    view.filter_text = "^(al|BE)"
    assert keys(view.apply(ROWS)) == ["a", "b"]
    assert view.describe_filter(2, 4) == "filter '^(al|BE)': 2 of 4"
    view.filter_text = "!^(al|be)"
    assert keys(view.apply(ROWS)) == ["c", "d"]


def test_an_invalid_regex_says_so_and_hides_nothing() -> None:
    view = SortFilter(["NAME", "N"])
    view.filter_text = "gam("
    assert view.filter_error is not None
    assert keys(view.apply(ROWS)) == ["a", "b", "c", "d"]
    assert "not a valid regex" in view.describe_filter(4, 4)
    view.filter_text = "gam"
    assert view.filter_error is None and keys(view.apply(ROWS)) == ["c"]
