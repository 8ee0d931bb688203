"""GpuPanel / GpuProcessTable fed with a recorded 8-GPU simulated agent stream."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from textual.app import App, ComposeResult

from gpudesk.app.widgets.gpu_panel import GpuPanel, GpuProcessTable, GpuRow, bar, sparkline
from gpudesk.core.gpu.sample import DriverState, GpuSample, parse_sample
from gpudesk.core.gpu.stream import GpuHistory

FIXTURE = Path(__file__).parent.parent / "fixtures" / "gpu" / "simulated_h100x8_agent_stream.jsonl"


def load_samples() -> list[GpuSample]:
    return [parse_sample(line) for line in FIXTURE.read_text().splitlines() if line.strip()]


class PanelApp(App[None]):
    def __init__(self, samples: list[GpuSample]) -> None:
        super().__init__()
        self.samples = samples
        # A short window so the fixture's 5 samples (0.2 s apart) span the sparkline.
        self.history = GpuHistory(window_s=1.0, max_points=100)
        self.kill_asked: list[str] = []

    def compose(self) -> ComposeResult:
        yield GpuPanel(id="panel")
        yield GpuProcessTable(id="procs")

    def on_mount(self) -> None:
        for sample in self.samples:
            self.feed(sample)

    def on_gpu_process_table_kill_asked(self, message: GpuProcessTable.KillAsked) -> None:
        self.kill_asked.append(GpuProcessTable.key_of(message.process))

    def feed(self, sample: GpuSample) -> None:
        self.history.add(sample)
        self.query_one(GpuPanel).show(sample, self.history)
        self.query_one(GpuProcessTable).show(sample)


def text_of(widget: object) -> str:
    return str(widget.content)  # type: ignore[attr-defined]


async def test_panel_renders_simulated_sample() -> None:
    samples = load_samples()
    app = PanelApp(samples)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        panel = app.query_one(GpuPanel)
        rows = list(panel.query(GpuRow))
        assert len(rows) == 8
        assert panel.banner.display and "SIMULATED" in text_of(panel.banner)
        assert panel.banner.region.height == 1  # actually laid out, not just present
        assert not panel.message_label.display  # driver ok: no error line
        assert "8 GPUs, 2 free, 6 busy" in text_of(panel.summary)
        assert "H100 80GB HBM3" in text_of(rows[1].name_label)
        last = samples[-1]
        assert f"{last.gpus[1].util_gpu:3.0f}%" in text_of(rows[1].util)
        # thresholds: GPU 3 is hot, GPU 6 memory nearly full, GPU 5 has ECC errors
        assert rows[3].temp.has_class("-hot")
        assert not rows[0].temp.has_class("-hot")
        assert rows[6].mem.has_class("-mem-full")
        assert not rows[1].mem.has_class("-mem-full")
        assert rows[5].ecc.has_class("-ecc") and "ECC 2" in text_of(rows[5].ecc)
        assert not rows[4].ecc.has_class("-ecc")
        # the sparkline draws history: a busy GPU shows bars
        spark = str(rows[1].spark.render())
        assert any(ch in spark for ch in "▁▂▃▄▅▆▇█")

        table = app.query_one(GpuProcessTable)
        assert table.row_count == 6
        assert str(table.get_row("3:40003")[2]) == "sim-train-1"
        assert [table.get_row_at(i)[0] for i in range(6)] == ["1", "2", "3", "4", "5", "6"]


async def test_panel_updates_in_place_and_remounts_on_count_change() -> None:
    samples = load_samples()
    app = PanelApp(samples[:1])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        panel = app.query_one(GpuPanel)
        before = list(panel.query(GpuRow))
        statics = [row.util for row in before]
        app.feed(samples[1])
        await pilot.pause()
        after = list(panel.query(GpuRow))
        assert after == before  # same widget objects, updated in place
        assert [row.util for row in after] == statics
        assert f"{samples[1].gpus[2].util_gpu:3.0f}%" in text_of(after[2].util)

        # fewer GPUs and a driver problem: rows are rebuilt and the message shows
        broken = dataclasses.replace(
            samples[2],
            gpus=samples[2].gpus[:2],
            processes=samples[2].processes[:1],
            driver_state=DriverState.ERROR,
            message="NVML hiccup",
            simulated=False,
        )
        app.feed(broken)
        await pilot.pause()
        rows = list(panel.query(GpuRow))
        assert len(rows) == 2
        assert panel.message_label.display
        assert "NVML hiccup" in text_of(panel.message_label)
        assert not panel.banner.display
        table = app.query_one(GpuProcessTable)
        assert table.row_count == 1
        assert table.get_row_at(0)[1] == str(samples[2].processes[0].pid)


async def test_process_table_sorts_by_any_column_and_reverses() -> None:
    samples = load_samples()
    app = PanelApp(samples)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        table = app.query_one(GpuProcessTable)
        table.focus()
        procs = samples[-1].processes
        # > steps through GPU, PID, Container, User to Memory; S turns it to largest first.
        await pilot.press(*">" * 5)
        await pilot.pause()
        memory = {table.key_of(p): p.used_memory or 0 for p in procs}
        shown = [memory[key] for key in table.shown_keys]
        assert sorted(table.shown_keys) == sorted(memory) and shown == sorted(memory.values())
        assert "▲" in str(table.ordered_columns[4].label)
        await pilot.press("S")
        await pilot.pause()
        shown = [memory[key] for key in table.shown_keys]
        assert shown == sorted(memory.values(), reverse=True)
        assert "▼" in str(table.ordered_columns[4].label)
        # k still kills (nvitop's key) rather than moving up: it asks about the selected row.
        await pilot.press("k")
        await pilot.pause()
        assert app.kill_asked == [table.selected_key] and table.selected_key in memory


def test_bar_and_sparkline_text() -> None:
    assert bar(0) == "░" * 10
    assert bar(100) == "█" * 10
    assert bar(55) == "█████▌░░░░"
    assert bar(None).strip() == "N/A"
    assert sparkline([0.0, None, 100.0, 50.0]) == "▁ █▅"


def test_snapshot(snap_compare: object) -> None:
    app = PanelApp(load_samples())
    assert snap_compare(app, terminal_size=(120, 40))  # type: ignore[operator]
