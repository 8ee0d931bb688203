"""One run: live loss and eval curves, throughput, GPU memory, its last log lines, its command."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from gpudesk.app.desk import Desk, desk_of
from gpudesk.app.messages import RunLoaded
from gpudesk.app.plain import last_frame, plain, visible
from gpudesk.app.run_source import FleetRunSource, RunSource
from gpudesk.app.screens.logs import LogScreen
from gpudesk.app.widgets.loss_chart import LossChart
from gpudesk.app.widgets.run_state import STATE_STYLE
from gpudesk.core import shell
from gpudesk.core.logs import LogTarget
from gpudesk.core.runs import Run, format_duration, script_label

POLL_INTERVAL = 3.0
# The eval metric worth a curve, per task; val_loss otherwise.
PRIMARY_METRIC = {
    "textcls": "accuracy",
    "translate": "bleu",
    "lm": "perplexity",
    "recsys": "ndcg10",
}


def _num(value: float | None, spec: str, unit: str = "") -> str:
    return "-" if value is None else f"{format(value, spec)}{unit}"


class RunDetailScreen(Screen[None]):
    DEFAULT_CSS = """
    RunDetailScreen #detail-summary { height: auto; padding: 0 1; }
    RunDetailScreen #detail-charts { height: 10; }
    RunDetailScreen #detail-charts LossChart { width: 1fr; height: 10; }
    RunDetailScreen #detail-throughput { height: 7; }
    RunDetailScreen #detail-log { height: auto; padding: 0 1; border: round $primary-darken-2; }
    """
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("l", "log", "Log"),
    ]

    def __init__(
        self, host: str, name: str, container: str = "", *, source: RunSource | None = None
    ) -> None:
        super().__init__()
        self.host = host
        self.run_name = name
        self.container = container
        self.source = source
        self.run: Run | None = None
        self.error: str | None = None
        self.sub_title = visible(f"run {name} on {host}" + (f"/{container}" if container else ""))

    @property
    def desk(self) -> Desk:
        return desk_of(self)

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield Static("Loading…", id="detail-summary")
            with Horizontal(id="detail-charts"):
                yield LossChart("loss", id="chart-loss")
                yield LossChart("eval", id="chart-eval")
            yield LossChart("tokens/s", id="detail-throughput")
            yield Static(id="detail-log")
        yield Footer()

    def on_mount(self) -> None:
        self.poll()

    @work(thread=True, exit_on_error=False, group="run-detail", exclusive=True)
    def poll(self) -> None:
        source = self.source or FleetRunSource(self.desk.state)
        try:
            run = source.run(self.host, self.run_name, self.container)
        except Exception as exc:
            self.post_message(RunLoaded(None, str(exc)))
            return
        self.post_message(RunLoaded(run, None))

    def on_run_loaded(self, message: RunLoaded) -> None:
        if message.run is not None:
            self.run, self.error = message.run, None
        else:
            self.error = message.error
        self.show()
        if self.is_attached and (self.run is None or not self.run.state.finished):
            self.set_timer(POLL_INTERVAL, self.poll, name="run-detail-poll")

    def show(self) -> None:
        run = self.run
        summary = self.query_one("#detail-summary", Static)
        if run is None:
            summary.update(plain(self.error or "not found", style="red"))
            return
        m = run.metrics
        style = STATE_STYLE.get(run.state, "")
        step = (
            "-" if m.step is None else f"{m.step}" + (f"/{m.total_steps}" if m.total_steps else "")
        )
        # Everything below but the numbers comes from the run's folder, written by the
        # container: assembled as plain Text, never parsed as markup.
        text = Text.assemble(
            plain(run.name, "bold"),
            plain(f"  {run.host}/{run.container}  {script_label(run.script)}  "),
            plain(run.state_text, style),
            f"\nstep {step}   loss {_num(m.loss, '.4f')}   tokens/s {_num(m.tokens_per_s, ',.0f')}"
            f"   samples/s {_num(m.samples_per_s, ',.1f')}"
            f"   step time {_num(m.step_time_s, '.3f', ' s')}",
            f"\nelapsed {format_duration(run.elapsed)}   ETA {format_duration(run.eta)}   "
            f"GPU memory {_num(m.mem_gib, '.2f', ' GiB') if m.mem_gib is not None else '- (CPU)'}"
            f"   processes {run.nproc}",
        )
        if m.last_eval:
            shown = {k: v for k, v in m.last_eval.items() if k not in _EVAL_SKIP}
            values = "  ".join(
                f"{k} {v:.4g}" for k, v in shown.items() if isinstance(v, float | int)
            )
            text.append_text(plain(f"\neval @ step {m.last_eval.get('step', '?')}: {values}"))
        if m.error:
            text.append_text(plain(f"\nerror: {m.error}", style="red"))
        command = shell.command(run.command) if run.command else "?"
        text.append_text(plain(f"\n$ {command}", style="dim"))
        summary.update(text)

        self.query_one("#chart-loss", LossChart).show(
            [v for _s, v in m.losses],
            "train loss",
            f"last {_num(m.loss, '.4f')}" if m.losses else "",
        )
        task = str(m.last_train.get("task") or m.last_eval.get("task") or script_label(run.script))
        metric = PRIMARY_METRIC.get(task, "val_loss")
        if m.evals and not any(metric in values for _s, values in m.evals):
            metric = "val_loss"
        series = [values[metric] for _s, values in m.evals if metric in values]
        self.query_one("#chart-eval", LossChart).show(
            series, f"eval {metric}", f"last {series[-1]:.4g}" if series else ""
        )
        self.query_one("#detail-throughput", LossChart).show(
            [v for _s, v in m.throughput], "tokens/s", ""
        )
        log = run.log_tail[-12:]
        self.query_one("#detail-log", Static).update(
            Text("\n").join(plain(last_frame(line)) for line in log)
            if log
            else Text("(no log lines yet)", style="dim")
        )
        self.query_one("#detail-log", Static).border_title = "last log lines"

    def action_log(self) -> None:
        if self.run is not None:
            target = LogTarget.run(self.run.name, self.run.log_path, self.run.container)
            self.app.push_screen(LogScreen(self.host, target))


_EVAL_SKIP = {"ts", "step", "epoch", "event", "task", "world_size", "precision", "compiled"}
