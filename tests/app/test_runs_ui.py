"""The runs view, a run's detail and the log pane, fed with a recorded textcls run.

``tests/fixtures/runs/textcls-cpu`` holds metrics.jsonl and train.log from a real CPU run of the
bundled textcls script (see its README); a fake run source built from them is injected into the
screens, so nothing here needs a host.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Button, DataTable, Input, Static

from gpudesk.app.modals.confirm import ConfirmModal
from gpudesk.app.screens.logs import LogScreen
from gpudesk.app.screens.run_detail import RunDetailScreen
from gpudesk.app.screens.runs import RunsScreen
from gpudesk.app.widgets.log_view import LogView
from gpudesk.app.widgets.loss_chart import braille_rows
from gpudesk.core.logs import LogFollower, LogTarget
from gpudesk.core.runs import Run, StopResult, build_run

SIZE = (120, 34)
FIXTURE = Path(__file__).parents[1] / "fixtures/runs/textcls-cpu"
METRICS = (FIXTURE / "metrics.jsonl").read_text().splitlines()
LOG = (FIXTURE / "train.log").read_text().splitlines()
LAST_LOSS = [r["loss"] for r in map(json.loads, METRICS) if r["event"] == "train"][-1]
T0 = json.loads(METRICS[0])["ts"] - 4.0


def recorded_run(
    name: str,
    container: str,
    metrics: list[str],
    *,
    exit_code: str | None = None,
    stopped: bool = False,
    alive: bool = False,
    now_offset: float = 0.0,
    args: tuple[str, ...] = ("--steps", "40", "--log-every", "2"),
) -> Run:
    last_ts = json.loads(metrics[-1])["ts"] if metrics else T0
    record = {
        "name": name,
        "container": container,
        "script": "textcls",
        "started": T0,
        "command": ["/usr/local/bin/gpudesk-python", "/workspace/.gpudesk/scripts/0123/textcls.py",
                    "--out", f"/workspace/runs/{name}", *args],
        "args": list(args),
        "nproc": 1,
    }  # fmt: skip
    item = {
        "dir": f"/home/alice/gpudesk/{container}/runs/{name}",
        "name": name,
        "run": json.dumps(record),
        "pid": "4242",
        "exit_code": exit_code,
        "stopped": stopped,
        "metrics": "\n".join(metrics),
        "ended": last_ts + 1.0 if exit_code is not None else None,
        "log": LOG[-20:],
    }
    return build_run(
        item,
        "gpu-a100",
        container_running={container: True},
        alive={container: {4242} if alive else set()},
        now=last_ts + now_offset,
    )


class RecordedSource:
    def __init__(self) -> None:
        self.stopped: list[str] = []
        self.reruns: list[str] = []

    def all(self) -> list[Run]:
        error = json.dumps({"ts": T0 + 3, "step": 0, "epoch": 0.0, "event": "error",
                            "message": "data file /nope.tsv not found"})  # fmt: skip
        return [
            recorded_run("cls-live", "dev-a", METRICS[:14], alive=True, now_offset=1.0),
            recorded_run("cls-done", "dev-a", METRICS, exit_code="0"),
            recorded_run("cls-bad", "dev-b", [error], exit_code="2"),
            recorded_run("cls-stop", "dev-b", METRICS[:8], stopped=True, exit_code="0"),
            recorded_run("cls-gone", "dev-b", METRICS[:5]),
        ]

    def runs(self, host: str | None) -> tuple[list[Run], list[str]]:
        return self.all(), []

    def run(self, host: str, name: str, container: str) -> Run:
        return next(r for r in self.all() if r.name == name)

    def stop(self, run: Run, grace: float) -> StopResult:
        self.stopped.append(run.name)
        return StopResult(run.name, "terminated", f"Stopped {run.name}.")

    def rerun(self, run: Run) -> Run:
        self.reruns.append(run.name)
        return run


class ScreenApp(App[None]):
    def __init__(self, make: Callable[[], Any]) -> None:
        super().__init__()
        self.make = make

    def on_mount(self) -> None:
        self.push_screen(self.make())


async def settle(pilot: Pilot[Any]) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_runs_view_snapshot(snap_compare: Any) -> None:
    app = ScreenApp(lambda: RunsScreen(source=RecordedSource()))
    assert snap_compare(app, terminal_size=SIZE, run_before=settle)


def test_run_detail_snapshot(snap_compare: Any) -> None:
    source = RecordedSource()
    app = ScreenApp(lambda: RunDetailScreen("gpu-a100", "cls-done", "dev-a", source=source))
    assert snap_compare(app, terminal_size=SIZE, run_before=settle)


def test_live_run_detail_snapshot(snap_compare: Any) -> None:
    source = RecordedSource()
    app = ScreenApp(lambda: RunDetailScreen("gpu-a100", "cls-live", "dev-a", source=source))
    assert snap_compare(app, terminal_size=SIZE, run_before=settle)


async def test_runs_view_rows_filter_and_stop() -> None:
    source = RecordedSource()
    app = ScreenApp(lambda: RunsScreen(source=source))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = app.screen.query_one(DataTable)
        rows = {str(table.get_row_at(i)[0]): table.get_row_at(i) for i in range(table.row_count)}
        assert set(rows) == {"cls-live", "cls-done", "cls-bad", "cls-stop", "cls-gone"}
        assert "running" in str(rows["cls-live"][3]) and str(rows["cls-live"][4]) == "24/40"
        assert "failed (2)" in str(rows["cls-bad"][3])
        assert "stopped" in str(rows["cls-stop"][3]) and "lost" in str(rows["cls-gone"][3])
        assert str(rows["cls-done"][5]) == f"{LAST_LOSS:.4f}"
        assert str(rows["cls-live"][8]) != "-" and str(rows["cls-done"][8]) == "-"

        await pilot.press("slash", *"bad")
        assert table.row_count == 1
        await pilot.press("escape")
        assert table.row_count == 5

        table.move_cursor(row=0)  # cls-live
        await pilot.press("ctrl+d")
        assert isinstance(app.screen, ConfirmModal)
        assert "SIGTERM" in str(app.screen.query(Static)[1].render())
        await pilot.press("y")
        await settle(pilot)
        assert source.stopped == ["cls-live"]


class QueueStream:
    """Lines pushed by the test; ``close()`` ends the iteration like a closed channel."""

    def __init__(self) -> None:
        self.q: queue.Queue[str | None] = queue.Queue()

    def __iter__(self) -> Iterator[str]:
        while (line := self.q.get()) is not None:
            yield line

    def push(self, lines: list[str]) -> None:
        for line in lines:
            self.q.put(line)

    def close(self) -> None:
        self.q.put(None)


async def wait_total(pilot: Pilot[Any], view: LogView, total: int) -> None:
    async def reached() -> None:
        while view.total < total:
            await pilot.pause()

    await asyncio.wait_for(reached(), 10)


async def test_log_screen_badge_search_and_save(tmp_path: Path) -> None:
    stream = QueueStream()
    made: list[LogFollower] = []

    def factory(on_batch: Callable[[list[str], int], None]) -> LogFollower:
        made.append(LogFollower(lambda: contextlib.nullcontext(stream), on_batch, max_lines=500))
        return made[0]

    app = ScreenApp(
        lambda: LogScreen(
            "gpu-a100",
            LogTarget.run("cls-live"),
            follower_factory=factory,
            save_dir=tmp_path,
            max_lines=500,
        )
    )
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        view = app.screen.query_one(LogView)
        badge = app.screen.query_one("#log-badge", Static)
        stream.push([f"line {i}" for i in range(300)])
        await wait_total(pilot, view, 300)
        await pilot.pause()
        assert view.following and view.scroll_y == view.max_scroll_y
        assert not badge.has_class("shown")

        await pilot.press("pageup")
        await pilot.pause()
        assert not view.following
        stream.push([f"more {i}" for i in range(50)])
        await wait_total(pilot, view, 350)
        await pilot.pause()
        assert badge.has_class("shown") and str(badge.render()) == "+50 new lines"

        # Older lines fall out of the ring buffer; memory stays at its bound.
        stream.push([f"flood {i}" for i in range(1000)])
        await wait_total(pilot, view, 1350)
        assert len(view.lines) == 500 and view.lines[-1] == "flood 999"

        await pilot.press("slash", *"flood 600", "enter")
        await pilot.pause()
        assert view.match is not None and view.lines[view.match] == "flood 600"
        top = int(view.scroll_y)
        assert top <= view.match < top + view.scrollable_content_region.height

        await pilot.press("end")
        await pilot.pause()
        assert view.following and not badge.has_class("shown")

        await pilot.press("ctrl+s")

        # settle() would wait for the follower's worker too, which runs until the screen goes;
        # the save worker ends with a notification.
        async def noted() -> None:
            while not any("Saved" in n.message for n in app._notifications):
                await pilot.pause()

        await asyncio.wait_for(noted(), 10)
        saved = list(tmp_path.glob("gpudesk-gpu-a100-cls-live-*.log"))
        assert len(saved) == 1 and saved[0].read_text().splitlines()[-1] == "flood 999"

        await pilot.press("escape")
        await pilot.pause()
        assert made[0].wait(5)


def test_braille_chart_shape() -> None:
    rows, low, high = braille_rows([3.0, 2.0, 1.0, 0.5], 8, 2)
    assert len(rows) == 2 and all(len(r) == 8 for r in rows)
    assert (low, high) == (0.5, 3.0)
    assert rows[0][0] != " " and rows[-1][-1] != " "
    assert braille_rows([], 5, 2)[0] == [" " * 5] * 2


def test_follower_thread_is_not_left_behind() -> None:
    # The log screen stops its follower on unmount; no stray thread keeps a channel open.
    assert not [t for t in threading.enumerate() if t.name == "gpudesk-log-flush"]


async def test_submit_modal_shows_errors_then_dismisses_with_the_run_name() -> None:
    from gpudesk.app.modals.submit_run import SubmitRunModal
    from gpudesk.core.runs import RunError, RunSpec

    calls: list[RunSpec] = []
    results: list[str | None] = []

    def submitter(host: str, container: str, spec: RunSpec) -> Run:
        calls.append(spec)
        if spec.name == "taken":
            raise RunError("A run named taken already exists in dev-a; pick another name.")
        return recorded_run(spec.name or "x", container, METRICS[:2], alive=True)

    class ModalApp(App[None]):
        def on_mount(self) -> None:
            self.push_screen(
                SubmitRunModal("gpu-a100", "dev-a", submitter=submitter), results.append
            )

    app = ModalApp()
    async with app.run_test(size=SIZE) as pilot:
        modal = app.screen
        modal.query_one("#submit-args", Input).value = "--steps 5 --data 'my file.tsv'"
        modal.query_one("#submit-name", Input).value = "Bad Name"
        modal.query_one("#submit", Button).press()
        await pilot.pause()
        error = modal.query_one("#submit-error", Static)
        assert "cannot name a run" in str(error.render()) and not calls

        modal.query_one("#submit-name", Input).value = "taken"
        modal.query_one("#submit", Button).press()
        await pilot.pause()
        await settle(pilot)
        assert "already exists" in str(error.render()) and app.screen is modal

        modal.query_one("#submit-name", Input).value = "cls-new"
        modal.query_one("#submit", Button).press()
        await pilot.pause()
        await settle(pilot)
        assert results == ["cls-new"]
        assert calls[-1] == RunSpec(
            "textcls", ("--steps", "5", "--data", "my file.tsv"), 1, "cls-new"
        )


async def test_runs_sort_by_step_as_numbers_j_k_and_an_invalid_filter() -> None:
    source = RecordedSource()
    app = ScreenApp(lambda: RunsScreen(source=source))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        table = screen.query_one(DataTable)

        def names() -> list[str]:
            return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]

        await pilot.press(*["greater_than_sign"] * 5, "S")  # STEP, largest first
        labels = [str(c.label) for c in table.columns.values()]
        assert labels[4] == "step ▼" and labels[0] == "name"
        steps = {r.name: r.metrics.step for r in source.all()}
        with_step = sorted((n for n in steps if steps[n] is not None), key=lambda n: -steps[n])  # type: ignore[operator]
        assert names() == with_step + [n for n in steps if steps[n] is None]
        assert "sorted by step ▼" in str(screen.query_one("#runs-note").render())

        table.move_cursor(row=0)
        await pilot.press("j", "j")
        assert screen.selected() is not None and screen.selected().name == names()[2]  # type: ignore[union-attr]
        await pilot.press("k")
        assert screen.selected().name == names()[1]  # type: ignore[union-attr]

        await pilot.press("slash", *"cls-(")
        assert table.row_count == 5
        assert "not a valid regex" in str(screen.query_one("#runs-note").render())
        await pilot.press("backspace")
        assert table.row_count == 5 and "5 of 5" in str(screen.query_one("#runs-note").render())
