"""The host screen and the Fleet say when the container list is stale (issue 11 item 5)."""

from __future__ import annotations

from datetime import UTC, datetime

from textual.widgets import Static

from gpudesk.app.messages import ContainerChange
from gpudesk.core.containers.watch import ContainersListed, ContainersStale
from tests.app.test_host_containers import CONTAINERS, HOST, SIZE, make_app, open_host, rows


async def test_a_stale_list_says_since_when_and_why_until_it_is_listed_again() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_host(pilot)
        title = screen.query_one("#containers-title", Static)
        since = datetime(2026, 11, 25, 12, 3, 4, tzinfo=UTC)
        # A hostile reason is shown as it is, not parsed as markup.
        reason = "the Docker event stream ended [/]"
        app.post_message(ContainerChange(HOST, ContainersStale(since, reason, 4.0)))
        await pilot.pause()
        text = str(title.render())
        local = since.astimezone().strftime("%H:%M:%S")
        assert f"stale since {local}, reconnecting…" in text and reason in text
        assert rows(screen) == ["train-a", "notebook", "old-exp"]  # the last list, kept
        assert app.models[HOST].extra["containers"] == "2/3 stale"
        fresh = [c for c in CONTAINERS if c.name != "notebook"]
        app.post_message(ContainerChange(HOST, ContainersListed(fresh)))
        await pilot.pause()
        assert "stale" not in str(title.render())
        assert rows(screen) == ["train-a", "old-exp"]
        assert app.models[HOST].extra["containers"] == "1/2 up"
