"""Live GPU widgets. Dumb: they render the samples and history they are given, no IO."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static

from gpudesk.app.plain import cell
from gpudesk.app.widgets.table_nav import NavTable, Row
from gpudesk.core.gpu.sample import (
    DriverState,
    GpuDevice,
    GpuProcess,
    GpuSample,
    GpuSummary,
    summarize,
)
from gpudesk.core.gpu.stream import GpuHistory

HOT_C = 80.0
MEM_FULL_PERCENT = 90.0
BAR_WIDTH = 10
SPARK_CHARS = "▁▂▃▄▅▆▇█"
_MIB = 1024 * 1024
NA = "N/A"


def bar(percent: float | None, width: int = BAR_WIDTH) -> str:
    """A text bar like ``████▌░░░░░`` for a percentage (``N/A`` padded when unknown)."""
    if percent is None:
        return NA.center(width)
    filled = max(0.0, min(1.0, percent / 100.0)) * width
    full = int(filled)
    half = "▌" if filled - full >= 0.5 and full < width else ""
    return ("█" * full + half).ljust(width, "░")


def sparkline(values: list[float | None], top: float = 100.0) -> str:
    """One character per value; ``None`` (no data / gap) is a space."""
    out = []
    for value in values:
        if value is None:
            out.append(" ")
        else:
            level = max(0.0, min(1.0, value / top))
            out.append(SPARK_CHARS[min(len(SPARK_CHARS) - 1, int(level * len(SPARK_CHARS)))])
    return "".join(out)


def _pct(value: float | None) -> str:
    return f"{value:3.0f}%" if value is not None else " N/A"


class UtilSpark(Widget):
    """Sparkline of one GPU's recent utilisation, as wide as the widget; gaps are blank."""

    DEFAULT_CSS = """
    UtilSpark { height: 1; width: 1fr; color: $success; }
    """

    def __init__(self, *, classes: str | None = None) -> None:
        super().__init__(classes=classes)
        self._history: GpuHistory | None = None
        self._index = 0

    def set_data(self, history: GpuHistory, index: int) -> None:
        self._history = history
        self._index = index
        self.refresh()

    def render(self) -> Text:
        width = self.size.width
        if self._history is None or width <= 0:
            return Text("")
        return Text(sparkline(self._history.series(self._index, width)))


class GpuRow(Horizontal):
    """One GPU: name, utilisation and memory bars, temperature, power, ECC, sparkline."""

    DEFAULT_CSS = """
    GpuRow { height: 1; width: 1fr; }
    GpuRow > Static { padding-right: 1; }
    GpuRow > .gpu-name { width: 24; text-overflow: ellipsis; text-wrap: nowrap; }
    GpuRow > .gpu-util { width: 17; color: $success; }
    GpuRow > .gpu-mem { width: 22; color: $success; }
    GpuRow > .gpu-mem.-mem-full { color: $warning; text-style: bold; }
    GpuRow > .gpu-temp { width: 7; }
    GpuRow > .gpu-temp.-hot { color: $error; text-style: bold; }
    GpuRow > .gpu-power { width: 8; }
    GpuRow > .gpu-ecc { width: 8; }
    GpuRow > .gpu-ecc.-ecc { color: $error; text-style: bold; }
    GpuRow > UtilSpark { margin-left: 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.name_label = Static(classes="gpu-name")
        self.util = Static(classes="gpu-util")
        self.mem = Static(classes="gpu-mem")
        self.temp = Static(classes="gpu-temp")
        self.power = Static(classes="gpu-power")
        self.ecc = Static(classes="gpu-ecc")
        self.spark = UtilSpark()

    def compose(self) -> ComposeResult:
        yield self.name_label
        yield self.util
        yield self.mem
        yield self.temp
        yield self.power
        yield self.ecc
        yield self.spark

    def show(self, gpu: GpuDevice, history: GpuHistory) -> None:
        name = (gpu.name or NA).removeprefix("NVIDIA ")
        if gpu.mig_enabled:
            name += " [MIG]"
        self.name_label.update(cell(f"{gpu.index:>2} {name}"))
        self.util.update(f"{bar(gpu.util_gpu)} {_pct(gpu.util_gpu)}")
        mem = gpu.mem_percent
        used = f"{gpu.mem_used / 1024**3:.0f}G" if gpu.mem_used is not None else NA
        self.mem.update(f"{bar(mem)} {_pct(mem)} {used:>4}")
        self.mem.set_class(mem is not None and mem >= MEM_FULL_PERCENT, "-mem-full")
        temp = gpu.temperature
        self.temp.update(f"{temp:3.0f}°C" if temp is not None else "  N/A")
        self.temp.set_class(temp is not None and temp >= HOT_C, "-hot")
        self.power.update(f"{gpu.power_draw:5.0f}W" if gpu.power_draw is not None else "  N/A")
        errors = gpu.ecc_errors
        self.ecc.update(f"ECC {errors}" if errors else "")
        self.ecc.set_class(bool(errors), "-ecc")
        self.spark.set_data(history, gpu.index)


class GpuPanel(Vertical):
    """One row per GPU of a host's latest sample, plus its state and a summary line."""

    DEFAULT_CSS = """
    GpuPanel { height: auto; }
    GpuPanel > #gpu-banner {
        display: none; width: 1fr; content-align: center middle;
        background: $warning; color: $text; text-style: bold;
    }
    GpuPanel.-simulated > #gpu-banner { display: block; }
    GpuPanel > #gpu-message { display: none; color: $error; }
    GpuPanel.-driver-problem > #gpu-message { display: block; }
    GpuPanel > #gpu-summary { color: $text-muted; }
    GpuPanel > #gpu-rows { height: auto; scrollbar-size-vertical: 1; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.banner = Static("SIMULATED: these GPUs are fake", id="gpu-banner")
        self.message_label = Static(id="gpu-message")
        self.summary = Static("waiting for GPU samples…", id="gpu-summary")
        # Scrolls (wheel) when a short terminal leaves room for fewer rows than GPUs.
        self.rows_box = VerticalScroll(id="gpu-rows", can_focus=False)
        self.rows: list[GpuRow] = []

    def compose(self) -> ComposeResult:
        yield self.banner
        yield self.message_label
        yield self.summary
        yield self.rows_box

    def show(
        self, sample: GpuSample, history: GpuHistory, summary: GpuSummary | None = None
    ) -> None:
        """Update in place; rows are only rebuilt when the number of GPUs changes.

        ``summary`` is ``summarize(sample)`` when the caller already has it (the app's model).
        """
        self.set_class(sample.simulated, "-simulated")
        problem = sample.driver_state is not DriverState.OK
        self.set_class(problem, "-driver-problem")
        # Everything in a sample comes from the host: plain Text, never markup.
        self.message_label.update(
            cell(f"{sample.driver_state.value}: {sample.message}" if problem else sample.message)
        )
        if summary is None:
            summary = summarize(sample)
        hottest = f"{summary.hottest:.0f}°C" if summary.hottest is not None else NA
        memory = (
            f"{summary.mem_used / 1024**3:.0f}/{summary.mem_total / 1024**3:.0f} GiB"
            if summary.mem_total
            else NA
        )
        self.summary.update(
            cell(
                f"{sample.hostname}: {summary.count} GPUs, {summary.free} free, "
                f"{summary.busy} busy · memory {memory} · hottest {hottest}"
                + (f" · driver {sample.driver_version}" if sample.driver_version else "")
            )
        )
        if len(self.rows) != len(sample.gpus):
            self.rows_box.remove_children()
            self.rows = [GpuRow() for _ in sample.gpus]
            if self.rows:
                self.rows_box.mount_all(self.rows)
        for row, gpu in zip(self.rows, sample.gpus, strict=True):
            row.show(gpu, history)


ProcessCells = tuple[int, int, Text, Text, str, Text, Text]


def _process_cells(proc: GpuProcess, run: str | None) -> ProcessCells:
    # Names, users and commands come from the host: Text, so DataTable never reads markup.
    container = proc.container_name or (proc.container_id or "")[:12] or "-"
    memory = f"{proc.used_memory // _MIB} MiB" if proc.used_memory is not None else NA
    return (
        proc.gpu,
        proc.pid,
        cell(container),
        cell(proc.user or NA),
        memory,
        cell(run or "-", style="bold" if run else "dim"),
        cell(proc.command or NA),
    )


class GpuProcessTable(NavTable):
    """GPU processes, keyed by ``(gpu, pid)``, sortable by any column (``>``/``<``, ``S``).

    ``k`` asks to kill the selected process (nvitop's key; ``j`` and the arrows move) and enter
    to open its run; the screen decides (widgets do no IO), hearing :class:`KillAsked` and
    :class:`RunAsked`.
    """

    COLUMNS = ("gpu", "pid", "container", "user", "memory", "run", "command")
    LABELS = ("GPU", "PID", "Container", "User", "Memory", "Run", "Command")
    BINDINGS = [
        Binding("k", "kill", "Kill"),
        Binding("enter", "open_run", "Run"),
    ]

    DEFAULT_CSS = """
    GpuProcessTable { height: auto; max-height: 16; }
    """

    class KillAsked(Message):
        def __init__(self, process: GpuProcess) -> None:
            super().__init__()
            self.process = process

    class RunAsked(Message):
        def __init__(self, process: GpuProcess, run: str | None) -> None:
            super().__init__()
            self.process = process
            self.run = run

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(list(zip(self.COLUMNS, self.LABELS, strict=True)), id=id,
                         zebra_stripes=True)  # fmt: skip
        self.processes: dict[str, GpuProcess] = {}
        self.run_names: dict[str, str] = {}

    @staticmethod
    def key_of(proc: GpuProcess) -> str:
        return f"{proc.gpu}:{proc.pid}"

    def show(self, sample: GpuSample, runs: dict[str, str] | None = None) -> None:
        """Show ``sample``'s processes; ``runs`` maps :meth:`key_of` to a gpudesk run's name."""
        self.run_names = dict(runs or {})
        ordered = sorted(sample.processes, key=lambda p: (p.gpu, p.pid))
        self.processes = {self.key_of(proc): proc for proc in ordered}
        rows = []
        for key, proc in self.processes.items():
            cells = _process_cells(proc, self.run_names.get(key))
            values = [proc.gpu, proc.pid, *(c.plain for c in cells[2:4]), proc.used_memory,
                      *(c.plain for c in cells[5:])]  # fmt: skip
            rows.append(Row(key, [str(proc.gpu), str(proc.pid), *cells[2:]], values))
        self.show_rows(rows)

    def selected_process(self) -> GpuProcess | None:
        return self.processes.get(self.selected_key or "")

    def action_kill(self) -> None:
        proc = self.selected_process()
        if proc is not None:
            self.post_message(self.KillAsked(proc))

    def action_open_run(self) -> None:
        proc = self.selected_process()
        if proc is not None:
            self.post_message(self.RunAsked(proc, self.run_names.get(self.key_of(proc))))
