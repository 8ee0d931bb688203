"""Bulk log ingest: chunks split into lines, over-long lines cut, buffers bounded in bytes."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from gpudesk.core import logs

MAX = 16  # a tiny line limit so that random data exercises the cutting


def reference_lines(data: bytes, max_line: int) -> list[bytes]:
    """What a reader of the whole stream at once would keep: a short reference."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the stream ended with a newline
    note = f" [... line cut at {max_line:,} bytes]".encode()
    return [x if len(x) <= max_line else x[:max_line] + note for x in lines]


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(len(data), c) for c in cuts})
    out, last = [], 0
    for p in [*points, len(data)]:
        out.append(data[last:p])
        last = p
    return [c for c in out if c]


@settings(max_examples=300)
@given(
    st.lists(st.binary(max_size=40), max_size=12).map(b"\n".join),
    st.booleans(),
    st.lists(st.integers(0, 600), max_size=20),
)
def test_splitter_matches_reading_the_whole_stream(body: bytes, newline_end: bool, cuts) -> None:
    data = body + (b"\n" if newline_end else b"")
    splitter = logs.LineSplitter(MAX)
    got: list[bytes] = []
    for chunk in chunked(data, cuts):
        got.extend(splitter.feed(chunk))
    got.extend(splitter.end())
    assert got == reference_lines(data, MAX)


def test_a_huge_carriage_return_line_is_cut_and_memory_stays_small() -> None:
    splitter = logs.LineSplitter(64 * 1024)
    got: list[bytes] = []
    bar = b"\r 42%|####      | 420/1000 [00:10<00:14, 41.9it/s]" * 1000
    for _ in range(200):  # about 10 MB of one line, as tqdm writes it
        got.extend(splitter.feed(bar))
        assert len(splitter._partial) <= 64 * 1024 + len(bar)
    got.extend(splitter.feed(b"\nnext line\n"))
    assert len(got) == 2 and got[1] == b"next line"
    assert got[0].endswith(b"[... line cut at 65,536 bytes]") and len(got[0]) < 70_000


@given(st.lists(st.binary(max_size=30), max_size=60), st.integers(1, 10), st.integers(1, 120))
def test_buffer_keeps_the_newest_lines_within_both_bounds(lines, maxlen, max_bytes) -> None:
    buf = logs.LineBuffer(maxlen, max_bytes)
    for i in range(0, len(lines), 7):
        buf.extend_raw(lines[i : i + 7])
    # Reference: walk back from the newest line while both bounds hold (the newest one always
    # stays, however long).
    kept: list[bytes] = []
    size = 0
    for line in reversed(lines):
        if kept and (len(kept) + 1 > maxlen or size + len(line) > max_bytes):
            break
        kept.insert(0, line)
        size += len(line)
    assert buf.snapshot() == logs.decode_lines(kept)
    assert buf.total == len(lines) and buf.bytes == size


def test_follower_reads_chunks_and_hands_on_decoded_batches() -> None:
    class Chunks:
        def __init__(self, parts: list[bytes]) -> None:
            self.parts = parts

        def chunks(self):
            yield from self.parts

        def close(self) -> None:
            pass

    batches: list[list[str]] = []
    parts = [b"a\r\nb", b"\n\xff\xfe\n", "ünï\n".encode(), b"[bold]x[/]\nlast"]
    follower = logs.LogFollower(
        lambda: contextlib.nullcontext(Chunks(parts)),
        lambda lines, total: batches.append(lines),
        max_lines=3,
    )
    follower.run()
    assert follower.total == 6  # a, b, the invalid bytes, ünï, [bold]x[/], last
    assert follower.lines() == ["ünï", "[bold]x[/]", "last"]
    flat = [line for batch in batches for line in batch]
    assert flat[-3:] == ["ünï", "[bold]x[/]", "last"]


@given(st.lists(st.binary(max_size=12).filter(lambda b: b"\n" not in b), max_size=20))
def test_bulk_decoding_keeps_one_text_line_per_raw_line(raw: list[bytes]) -> None:
    decoded = logs.decode_lines(raw)
    assert decoded == [x.decode("utf-8", "replace").removesuffix("\r") for x in raw]
