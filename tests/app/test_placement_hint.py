"""The launch and submit forms' placement hint follows the fleet's free GPUs and the number of
GPUs the form asks for; the Fleet's own samples feed it (fleet_free). Two hosts: gpu1 with one
free GPU, gpu2 (simulated) with two; a third host is not connected."""

from __future__ import annotations

from typing import Any

from textual.app import App
from textual.widgets import Input

from gpudesk.app.modals.launch import LaunchModal
from gpudesk.app.modals.placement_hint import PlacementHint, fleet_free, gpu_count
from gpudesk.app.modals.submit_run import SubmitRunModal
from gpudesk.core.flavours import Flavour
from gpudesk.core.gpu.sample import GpuDevice, GpuProcess, GpuSample
from gpudesk.core.placement import free_map

GIB = 2**30


def sample(free: int, total: int, simulated: bool = False) -> GpuSample:
    gpus = tuple(GpuDevice(i, util_gpu=0.0, mem_used=0, mem_total=80 * GIB) for i in range(total))
    busy = tuple(GpuProcess(gpu=i, pid=10 + i) for i in range(total - free))
    return GpuSample(1, 0, 0.0, gpus=gpus, processes=busy, simulated=simulated)


HOSTS = free_map(
    [("gpu1", sample(1, 4)), ("gpu2", sample(2, 8, simulated=True)), ("gpu3", None)],
    {"gpu3": "connecting"},
)


class ModalApp(App[None]):
    def __init__(self, modal: Any) -> None:
        super().__init__()
        self.modal = modal

    def on_mount(self) -> None:
        self.push_screen(self.modal)


def hint(app: App[Any]) -> str:
    return str(app.screen.query_one(PlacementHint).render())


async def test_submit_form_hint_follows_the_process_count() -> None:
    app = ModalApp(SubmitRunModal("gpu1", "dev1", placement=HOSTS))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert hint(app) == "suggested: gpu1 (GPU 3 free)"  # best fit for one GPU
        app.screen.query_one("#submit-nproc", Input).value = "2"
        await pilot.pause()
        assert hint(app) == "suggested: gpu2 (GPUs 6,7 free SIMULATED)"
        app.screen.query_one("#submit-nproc", Input).value = "3"
        await pilot.pause()
        assert hint(app) == "suggested: none (no host has 3 free GPUs)"


async def test_launch_form_hint_follows_the_gpu_field() -> None:
    app = ModalApp(LaunchModal("gpu1", Flavour.SSH, set(), [3], True, placement=HOSTS))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert hint(app) == "suggested: gpu1 (GPU 3 free)"
        app.screen.query_one("#gpus", Input).value = "0,1,"
        await pilot.pause()
        assert hint(app) == "suggested: gpu2 (GPUs 6,7 free SIMULATED)"


async def test_no_fleet_no_hint() -> None:
    app = ModalApp(SubmitRunModal("gpu1", "dev1"))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert not app.screen.query_one(PlacementHint).display


def test_gpu_count() -> None:
    assert [gpu_count(t) for t in ("2", "0,3", "5,", "all", "", "device=1")] == [2, 2, 1, 1, 1, 1]


def test_fleet_free_reads_connected_hosts_only() -> None:
    from gpudesk.core.ssh import ConnState, ConnStatus

    class Model:
        def __init__(self, state: ConnState, gpu: GpuSample | None) -> None:
            self.status = ConnStatus("x", state)
            self.gpu = gpu

    class State:
        models = {
            "a": Model(ConnState.CONNECTED, sample(2, 2)),
            "b": Model(ConnState.CONNECTING, sample(8, 8)),
        }

        def connected(self, name: str) -> bool:
            return self.models[name].status.state is ConnState.CONNECTED

    free = fleet_free(State())  # type: ignore[arg-type]
    assert [(h.host, h.free, h.problem) for h in free] == [
        ("a", (0, 1), None),
        ("b", (), "connecting"),
    ]
