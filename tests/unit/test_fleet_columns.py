"""The Fleet's columns: sized to their content, degraded on narrow terminals (issue 14.10)."""

from __future__ import annotations

from rich.text import Text

from gpudesk.app.widgets.host_list import COLUMNS, fit_widths, join_cells

HEADER: list[Text | str] = [label for _, label, _ in COLUMNS]
ROWS: list[list[Text | str]] = [
    ["localhost", "local", "connected", "local", "unreachable: no socket", "-",
     "error: no socket"],
    ["gpu-h100-prod-7", "alice@gpu-h100-prod-7.example.org:2222", "disconnected-retrying",
     "retry 4s", "27.3.1 +nvidia", "SIM 2/8 free 278/637G 84°C", "3/4 up"],
]  # fmt: skip


def shown(widths: list[int]) -> list[str]:
    return [join_cells(row, widths=widths).plain for row in [HEADER, *ROWS]]


def test_at_160_columns_every_cell_shows_whole() -> None:
    widths = fit_widths([HEADER, *ROWS], 158)
    assert sum(widths) <= 158 and all(widths)
    for row in ROWS:
        line = join_cells(row, widths=widths).plain
        for cell in row:
            assert str(cell) in line, (cell, line)


def test_at_80_columns_the_lines_fit_and_the_essentials_stay() -> None:
    widths = fit_widths([HEADER, *ROWS], 78)
    assert sum(widths) <= 78
    keys = [key for key, _, _ in COLUMNS]
    for key in ("name", "state", "gpus", "containers"):
        assert widths[keys.index(key)] > 0, key
    header = shown(widths)[0]
    assert "GPUS" in header and "CONTAINERS" in header
    assert all(len(line.rstrip()) <= 78 for line in shown(widths))


def test_one_column_over_cuts_long_cells_before_dropping_a_column() -> None:
    natural = fit_widths([HEADER, *ROWS], 1000)
    widths = fit_widths([HEADER, *ROWS], sum(natural) - 1)
    assert all(widths) and sum(widths) == sum(natural) - 1
