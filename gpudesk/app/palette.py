"""gpudesk's entries in the command palette (`:` or ctrl+p)."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from gpudesk.app.desk import desk_of


class GpudeskCommands(Provider):
    def _commands(self) -> list[tuple[str, str, object]]:
        app = desk_of(self.app)
        screen = self.app.screen
        cmds: list[tuple[str, str, object]] = [
            ("help", "Show every key binding", app.action_help),
            ("quit", "Quit gpudesk", app.action_quit),
        ]
        cmds.append(("runs", "Training runs on every host", app.open_runs))
        where = app.exporter_address
        cmds.append(
            (
                "exporter",
                f"Stop serving Prometheus metrics on {where}"
                if where
                else "Serve the fleet's metrics to Prometheus on 127.0.0.1:9835",
                app.toggle_exporter,
            )
        )
        for seconds in (0.5, 1.0, 2.0, 5.0):
            cmds.append(
                (
                    f"gpu interval {seconds:g}s",
                    f"Sample GPUs every {seconds:g} s on every host (now {app.state.gpu_interval:g} s)",
                    partial(app.set_gpu_interval, seconds),
                )
            )
        add = getattr(screen, "action_add_host", None)
        if add is not None:
            cmds.insert(0, ("add host", "Add a GPU host to the inventory", add))
        for name in app.state.models:
            cmds.append((f"open {name}", f"Open host {name}", partial(app.open_host, name)))
            cmds.append(
                (f"reconnect {name}", f"Reconnect to {name}", partial(app.state.retry_host, name))
            )
        return cmds

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)  # type: ignore[arg-type]

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)  # type: ignore[arg-type]
