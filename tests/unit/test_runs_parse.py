"""Run state derivation, metrics.jsonl parsing, ETA, commands and the log ring buffer."""

from __future__ import annotations

import contextlib
import json
import shlex
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpudesk.core import logread, logs, shell
from gpudesk.core.runs import (
    Metrics,
    RunError,
    RunSpec,
    RunState,
    build_run,
    default_run_name,
    derive_state,
    eta_seconds,
    format_duration,
    parse_metrics,
    run_command,
    validate_run_name,
    wrapper_script,
)
from gpudesk.payload.train import metrics_schema

FIXTURE = Path(__file__).parents[1] / "fixtures/runs/textcls-cpu/metrics.jsonl"


def test_recorded_metrics_validate_and_summarise() -> None:
    lines = FIXTURE.read_text().splitlines()
    assert all(metrics_schema.validate(json.loads(line)) == [] for line in lines)
    m = parse_metrics(lines)
    last_train = [json.loads(x) for x in lines if '"train"' in x][-1]
    assert m.step == 40 and m.total_steps == 40
    assert m.loss == pytest.approx(last_train["loss"])
    assert m.tokens_per_s == pytest.approx(last_train["tokens_per_s"])
    assert m.done_reason == "completed" and m.error is None
    assert [s for s, _ in m.losses] == list(range(2, 41, 2))
    assert [s for s, _ in m.evals] == [10, 20, 30, 40]
    assert set(m.last_eval) >= {"val_loss", "accuracy", "macro_f1"}
    assert m.progress == 1.0


def test_torn_and_foreign_lines_are_skipped() -> None:
    good = '{"event": "train", "step": 3, "loss": 1.5, "total_steps": 10, "step_time_s": 2.0}'
    m = parse_metrics(["", "not json", '{"event": "train", "step": 9, "lo', "[1, 2]", good])
    assert m.step == 3 and m.loss == 1.5
    assert eta_seconds(m, elapsed=100.0) == pytest.approx(14.0)


def test_error_line_is_kept() -> None:
    m = parse_metrics(['{"event": "error", "step": 0, "message": "bad data"}'])
    assert m.error == "bad data" and m.step == 0


def test_eta_falls_back_to_elapsed_per_step() -> None:
    m = Metrics(step=10, total_steps=40)
    assert eta_seconds(m, elapsed=20.0) == pytest.approx(60.0)
    assert eta_seconds(Metrics(step=40, total_steps=40), 5.0) == 0.0
    assert eta_seconds(Metrics(step=0, total_steps=40), 5.0) is None
    assert eta_seconds(Metrics(step=5), 5.0) is None


@pytest.mark.parametrize(
    ("exit_code", "stopped", "alive", "running", "has_pid", "state"),
    [
        (None, False, True, True, True, RunState.RUNNING),
        (0, False, None, True, True, RunState.SUCCEEDED),
        (2, False, None, False, True, RunState.FAILED),
        (0, True, None, True, True, RunState.STOPPED),
        (None, True, False, True, True, RunState.STOPPED),
        (None, True, True, True, True, RunState.RUNNING),  # still checkpointing after SIGTERM
        (None, False, False, True, True, RunState.LOST),
        (None, False, None, False, True, RunState.LOST),  # the container was stopped
        (None, False, None, True, False, RunState.STARTING),
    ],
)
def test_derive_state(  # noqa: PLR0917 - parametrized
    exit_code: int | None,
    stopped: bool,
    alive: bool | None,
    running: bool,
    has_pid: bool,
    state: RunState,
) -> None:
    assert (
        derive_state(
            exit_code=exit_code,
            stopped=stopped,
            alive=alive,
            container_running=running,
            has_pid=has_pid,
        )
        is state
    )


def raw_item(**extra: object) -> dict[str, object]:
    record = {"name": "r1", "container": "c1", "script": "textcls", "started": 1000.0,
              "command": ["python", "x.py"], "args": ["--steps", "4"], "nproc": 1}  # fmt: skip
    item: dict[str, object] = {"dir": "/ws/runs/r1", "name": "r1", "run": json.dumps(record),
                               "pid": "42\n", "exit_code": None, "stopped": False,
                               "metrics": FIXTURE.read_text(), "ended": None}  # fmt: skip
    item.update(extra)
    return item


def test_build_run_from_folder_contents() -> None:
    run = build_run(raw_item(), "h", container_running={"c1": True}, alive={"c1": {42}}, now=1030.0)
    assert run.state is RunState.RUNNING and run.pid == 42
    assert run.elapsed == 30.0 and run.eta == 0.0
    failed = build_run(
        raw_item(exit_code="3\n", ended=1010.0), "h", container_running={}, alive={}, now=2000.0
    )
    assert failed.state_text == "failed (3)" and failed.elapsed == 10.0 and failed.eta is None
    lost = build_run(raw_item(), "h", container_running={"c1": False}, alive={}, now=1.0)
    assert lost.state is RunState.LOST
    assert build_run(raw_item(run="garbage"), "h", container_running={}, alive={}, now=1.0).name


@given(st.lists(st.text(max_size=80), max_size=30))
def test_parse_metrics_never_raises(lines: list[str]) -> None:
    m = parse_metrics(lines)
    assert m.step is None or m.step >= 0


records = st.fixed_dictionaries(
    {
        "event": st.sampled_from(metrics_schema.EVENTS),
        "step": st.integers(0, 10_000),
        "ts": st.floats(0, 2e9),
        "loss": st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
        "total_steps": st.integers(1, 10_000),
    }
)


@given(st.lists(records, min_size=1, max_size=40))
def test_step_is_the_largest_seen_and_loss_the_last_train(rows: list[dict[str, object]]) -> None:
    m = parse_metrics(json.dumps(r) for r in rows)
    assert m.step == max(int(r["step"]) for r in rows)  # type: ignore[call-overload]
    trains = [r for r in rows if r["event"] == "train"]
    if trains:
        assert m.loss == trains[-1]["loss"]


@given(st.floats(0, 1e7, allow_nan=False))
def test_format_duration_is_short(seconds: float) -> None:
    assert len(format_duration(seconds)) <= 8


def test_run_names() -> None:
    assert validate_run_name("cls-1.a_b") == "cls-1.a_b"
    for bad in ("", "Upper", "-x", "a b", "x" * 64, "a/b"):
        with pytest.raises(RunError):
            validate_run_name(bad)
    from datetime import UTC, datetime

    name = default_run_name("/work/My Script.py", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert name == "my-script-20260102-030405"
    validate_run_name(name)


def test_commands_quote_everything() -> None:
    spec = RunSpec("textcls", ("--data", "a b;rm -rf /"), nproc=1)
    argv = run_command("/usr/bin/python3", "/ws/s/textcls.py", "/workspace/runs/r", spec)
    assert argv[:2] == ["/usr/bin/python3", "/ws/s/textcls.py"]
    inner = wrapper_script(argv, {"GPUDESK_RUN": "r"})
    assert shell.command(argv, env={"GPUDESK_RUN": "r"}) in inner
    assert "'a b;rm -rf /'" in inner
    multi = run_command("py", "/ws/s/lm.py", "/o", RunSpec("lm", nproc=4))
    assert multi[:6] == ["py", "/ws/s/ddp_launch.py", "--standalone",
                         "--nproc_per_node", "4", "/ws/s/lm.py"]  # fmt: skip


# ------------------------------------------------------------------------- logs


class FakeStream:
    def __init__(self, lines: Iterator[str]) -> None:
        self.lines = lines
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[str]:
        for line in self.lines:
            if self.closed.is_set():
                return
            yield line
        self.closed.wait()

    def close(self) -> None:
        self.closed.set()


def test_follower_keeps_a_bounded_buffer_and_counts_everything() -> None:
    stream = FakeStream(iter([f"line {i}" for i in range(5000)]))
    batches: list[list[str]] = []
    got_all = threading.Event()

    def on_batch(lines: list[str], total: int) -> None:
        batches.append(lines)
        if total == 5000:
            got_all.set()

    follower = logs.LogFollower(lambda: contextlib.nullcontext(stream), on_batch, max_lines=100)
    thread = threading.Thread(target=follower.run)
    thread.start()
    assert got_all.wait(10)
    follower.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert follower.total == 5000
    assert follower.lines() == [f"line {i}" for i in range(4900, 5000)]
    assert all(len(b) <= 100 for b in batches)


def test_the_log_reader_request_is_quoted_and_bounded() -> None:
    bounds = {"max_bytes": logs.DEFAULT_MAX_BYTES, "max_line": logs.MAX_LINE_BYTES}
    spec = logread.log_spec("/ws/my ws/runs/r'1/train.log", 10**30, True, depth=3, **bounds)
    assert spec["root"] == "/ws/my ws" and spec["path"] == ["runs", "r'1", "train.log"]
    assert spec["lines"] == logread.MAX_TAIL_LINES and spec["max_bytes"] == logs.DEFAULT_MAX_BYTES
    two = logread.log_spec("/x/a.log", 2, False, **bounds)
    assert two["max_bytes"] == 3 * (logs.MAX_LINE_BYTES + 1)
    command = logread.log_command(spec)
    assert shlex.split(command)[:2] == ["python3", "-"]
    assert json.loads(shlex.split(command)[2]) == {"log": spec}
    with pytest.raises(logs.LogError):
        logread.log_spec("relative/train.log", 1, False, **bounds)
    assert logs.LogTarget.container("c").kind is logs.TargetKind.CONTAINER


def test_cli_passes_script_arguments_through() -> None:
    from gpudesk.cli.main import build_parser, parse_args

    parser = build_parser()
    argv = ["submit", "--host", "h", "--container", "c", "textcls", "--", "--steps", "5"]
    args = parse_args(parser, argv)
    # nproc None: submit makes it --gpus N, or 1
    assert (args.script, args.args, args.nproc, args.name) == (
        "textcls",
        ["--steps", "5"],
        None,
        None,
    )
    args = parser.parse_args(["submit", "--host", "h", "--container", "c", "--nproc", "2", "lm"])
    assert args.nproc == 2 and args.args == []
    args = parser.parse_args(["logs", "run1", "-f", "-n", "50"])
    assert (args.target, args.follow, args.lines) == ("run1", True, 50)


def test_stop_grace_covers_the_runs_own_checkpoint_write() -> None:
    """stop-run's default grace follows the last ckpt line's write time (3x + 5 s, >= 10 s)."""
    from gpudesk.core.runs import default_grace
    from gpudesk.core.runs.model import Run, RunState, parse_metrics

    def run_with(lines: list[dict]) -> Run:
        metrics = parse_metrics(json.dumps(x) for x in lines)
        return Run("r", "h", "c", "lm", RunState.RUNNING, None, None, None, [], [], 1, 1, "/d",
                   "/w/d", metrics)  # fmt: skip

    common = {"ts": 1.0, "epoch": 0.0, "world_size": 1, "precision": "fp32", "compiled": False}
    assert default_grace(run_with([])) == 10.0
    small = run_with([{**common, "step": 5, "event": "ckpt", "seconds": 0.4}])
    assert default_grace(small) == 10.0
    big = run_with(
        [
            {**common, "step": 5, "event": "ckpt", "seconds": 2.0},
            {**common, "step": 9, "event": "ckpt", "seconds": 6.86},
        ]
    )
    assert default_grace(big) == pytest.approx(3 * 6.86 + 5)


def test_the_log_reader_frames_are_split_anywhere_and_its_error_raises() -> None:
    import struct

    def frame(kind: bytes, body: bytes) -> bytes:
        return kind + struct.pack(">I", len(body)) + body

    stream = frame(b"D", b"line 1\nline") + frame(b"D", b" 2\n") + frame(b"Z", b"")
    for cut in range(len(stream) + 1):  # every split point of the byte stream
        deframer = logread.Deframer()
        got = deframer.feed(stream[:cut]) + deframer.feed(stream[cut:])
        assert b"".join(got) == b"line 1\nline 2\n" and deframer.finished
    with pytest.raises(logs.LogError, match="not a regular file"):
        logread.Deframer().feed(
            frame(b"D", b"x") + frame(b"E", b"train.log is not a regular file.")
        )
    with pytest.raises(logs.LogError, match="unreadable"):
        logread.Deframer().feed(b"root:x:0:0:root:/root:/bin/bash\n")
