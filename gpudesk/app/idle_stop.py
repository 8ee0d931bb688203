"""Offering to stop an idle container (``X`` on the Fleet and host screens), with confirmation.

Which container: the one selected on the host screen if it is idle, else the host's longest
idle one. The question says what is held and for how long; yes stops it in a worker, which
posts a :class:`~gpudesk.app.messages.Notice` (failure) or an ``ActionDone`` to the screen.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from textual.screen import Screen

from gpudesk.app.desk import desk_of
from gpudesk.app.messages import ActionDone, Notice
from gpudesk.app.modals.confirm import ConfirmModal
from gpudesk.app.widgets.container_table import size_text
from gpudesk.core.gpu.idle import IdleContainer, IdlePolicy, duration_text

if TYPE_CHECKING:
    from gpudesk.app.state import FleetState


def idle_choice(state: FleetState, host: str, selected: str | None) -> IdleContainer | None:
    model = state.models.get(host)
    if model is None:
        return None
    if selected is not None and (chosen := model.gpu_idle.get(selected)) is not None:
        return chosen
    idle = model.gpu_idle.idle()
    return idle[0] if idle else None


def stop_question(host: str, idle: IdleContainer, policy: IdlePolicy) -> tuple[str, str]:
    gpus = ",".join(str(g) for g in idle.gpus)
    memory = "an unreported amount" if idle.mem_used is None else size_text(idle.mem_used)
    detail = (
        f"GPU {gpus} under {policy.below:g} % utilisation for {duration_text(idle.low_s)} "
        f"(idle after {duration_text(policy.after_s)}); it holds {memory} of GPU memory. "
        f"Stopping frees them; the container and its workspace stay (u starts it again)."
    )
    return f"Stop idle container {idle.name} on {host}?", detail


def offer_stop_idle(screen: Screen[Any], host: str, selected: str | None = None) -> None:
    state = desk_of(screen).state
    idle = idle_choice(state, host, selected)
    model = state.models.get(host)
    if idle is None or model is None:
        policy = model.gpu_idle.policy if model is not None else IdlePolicy()
        screen.notify(f"No idle containers on {host} ({policy.describe()}).")
        return
    question, detail = stop_question(host, idle, model.gpu_idle.policy)

    def answered(yes: bool | None) -> None:
        if yes:
            screen.notify(f"stop {idle.name}…")
            work = partial(_stop, screen, state, host, idle.name)
            screen.run_worker(work, thread=True, group="idle-stop", exit_on_error=False)

    screen.app.push_screen(ConfirmModal(question, detail, confirm="Stop"), answered)


def _stop(screen: Screen[Any], state: FleetState, host: str, name: str) -> None:
    try:
        result = state.devcontainers(host).act("stop", name)
    except Exception as exc:
        screen.post_message(Notice(str(exc), error=True, timeout=10))
        return
    screen.post_message(ActionDone(f"{name}: {getattr(result, 'status', 'stopped')}"))
