"""Following a run's log or a container's output: bounded, searchable, saveable."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static

from gpudesk.app.desk import Desk, desk_of, show_notice
from gpudesk.app.messages import LogEnded, LogLines, Notice
from gpudesk.app.plain import plain, visible
from gpudesk.app.widgets.log_view import LogView
from gpudesk.core import logs
from gpudesk.core.logs import LogFollower, LogTarget

FollowerFactory = Callable[[Callable[[list[str], int], None]], LogFollower]
MAX_LINES = 10_000
TAIL = 500


class LogScreen(Screen[None]):
    DEFAULT_CSS = """
    LogScreen #log-status { height: 1; background: $panel; padding: 0 1; }
    LogScreen #log-badge {
        dock: bottom; height: 1; width: auto; margin: 0 2 1 0; padding: 0 1;
        background: $warning; color: $background; display: none;
    }
    LogScreen #log-badge.shown { display: block; }
    LogScreen #log-search { dock: bottom; display: none; }
    LogScreen #log-search.shown { display: block; }
    """
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("n", "next_match", "Next match", show=False),
        Binding("N", "previous_match", "Previous match", show=False),
        Binding("end,G", "follow", "Follow"),
        Binding("ctrl+s", "save", "Save"),
    ]

    def __init__(
        self,
        host: str,
        target: LogTarget,
        *,
        follower_factory: FollowerFactory | None = None,
        save_dir: Path | None = None,
        max_lines: int = MAX_LINES,
    ) -> None:
        super().__init__()
        self.host = host
        self.target = target
        self.follower_factory = follower_factory
        self.save_dir = save_dir
        self.max_lines = max_lines
        self.follower: LogFollower | None = None
        self.ended: str | None = None
        self.sub_title = visible(f"{host} · {target.title}")  # a run name is the host's

    @property
    def desk(self) -> Desk:
        return desk_of(self)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="log-status")
        yield LogView(self.max_lines, id="log-view")
        yield Static(id="log-badge")
        yield Input(placeholder="search (enter: find, n/N: next/previous)", id="log-search")
        yield Footer()

    @property
    def view(self) -> LogView:
        return self.query_one(LogView)

    def on_mount(self) -> None:
        self.view.focus()
        self._status()
        self.follow_log()

    def on_unmount(self) -> None:
        if self.follower is not None:
            self.follower.stop()

    @work(thread=True, exit_on_error=False, group="log-follow")
    def follow_log(self) -> None:
        def on_batch(lines: list[str], total: int) -> None:
            self.post_message(LogLines(lines, total))

        try:
            if self.follower_factory is not None:
                follower = self.follower_factory(on_batch)
            else:
                service = self.desk.state.service(self.host)
                follower = logs.follower(
                    service, self.target, on_batch, tail=TAIL, max_lines=self.max_lines
                )
            self.follower = follower
            follower.run()
        except Exception as exc:
            self.post_message(LogEnded(str(exc) or type(exc).__name__))
            return
        self.post_message(LogEnded(follower.error))

    def on_log_lines(self, message: LogLines) -> None:
        self.view.append(message.lines, message.total)
        self._status()

    def on_log_ended(self, message: LogEnded) -> None:
        self.ended = message.error or "stream ended"
        self._status()

    def _status(self) -> None:
        view = self.view
        parts = [f"{view.total:,} lines", f"holding the last {len(view.lines):,}"]
        parts.append("following" if view.following else "paused (end: follow)")
        if view.search:
            parts.append(f"search: {view.search}")
        if self.ended:
            parts.append(f"ended: {self.ended}")
        # The search is the user's, the end reason may be the host's: plain text either way.
        self.query_one("#log-status", Static).update(plain(" · ".join(parts)))
        badge = self.query_one("#log-badge", Static)
        badge.update(f"+{view.unseen:,} new lines")
        badge.set_class(not view.following and view.unseen > 0, "shown")

    def on_log_view_changed(self) -> None:
        self._status()

    # ------------------------------------------------------------------ actions

    def action_back(self) -> None:
        search = self.query_one("#log-search", Input)
        if search.has_class("shown"):
            search.remove_class("shown")
            self.view.focus()
            return
        self.app.pop_screen()

    def action_search(self) -> None:
        search = self.query_one("#log-search", Input)
        search.add_class("shown")
        search.focus()

    @on(Input.Submitted, "#log-search")
    def run_search(self, event: Input.Submitted) -> None:
        self.view.match = None
        found = self.view.find(event.value)
        event.input.remove_class("shown")
        self.view.focus()
        if found is None and event.value:
            self.notify(f"{event.value!r} is not in the last {len(self.view.lines):,} lines.")
        self._status()

    def action_next_match(self) -> None:
        if self.view.search:
            self.view.find(self.view.search, forward=True)
            self._status()

    def action_previous_match(self) -> None:
        if self.view.search:
            self.view.find(self.view.search)
            self._status()

    def action_follow(self) -> None:
        self.view.follow()
        self._status()

    def action_save(self) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.target.name)
        path = (self.save_dir or Path.cwd()) / f"gpudesk-{self.host}-{safe}-{stamp}.log"
        self.save(path, self.view.text())

    @work(thread=True, exit_on_error=False, group="log-save")
    def save(self, path: Path, text: str) -> None:
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            self.post_message(
                Notice(f"Could not save the log to {path}: {exc.strerror or exc}.", error=True)
            )
            return
        self.post_message(Notice(f"Saved {text.count(chr(10)):,} lines to {path}."))

    def on_notice(self, message: Notice) -> None:
        show_notice(self, message)
