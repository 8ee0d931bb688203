"""``torchrun`` for the bundled scripts, made safe to stop: ``python ddp_launch.py ARGS`` takes
exactly torchrun's arguments.

torchrun starts each rank in a session of its own, so ``gpudesk stop-run`` (SIGTERM to the
run's process group) reaches only torchrun, which turns it into a ``SignalException``: it
kills the ranks and exits 1 with a traceback even when they checkpoint. Here torchrun's
handler is left off for SIGTERM/SIGINT; instead the launcher passes SIGTERM on to every rank
it started, the ranks agree to stop at the current step, checkpoint and exit 0, and torchrun
then exits 0 as for any finished job. Ctrl-C in a terminal stops a run the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from types import FrameType


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (Linux /proc; the containers are Linux)."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # exited meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            kids.append(int(entry))
    return kids


def _pass_on(signum: int, frame: FrameType | None) -> None:
    for pid in _children(os.getpid()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def main() -> None:
    import dataclasses

    from torch.distributed.launcher.api import LaunchConfig
    from torch.distributed.run import main as torchrun

    # torchrun installs its raising handler only for the signals named here: newer torch
    # takes them as an option (which overrides the environment), older from the environment
    keep = "SIGHUP,SIGQUIT"
    os.environ["TORCHELASTIC_SIGNALS_TO_HANDLE"] = keep
    if "signals_to_handle" in {f.name for f in dataclasses.fields(LaunchConfig)}:
        sys.argv[1:1] = [f"--signals-to-handle={keep}"]
    signal.signal(signal.SIGTERM, _pass_on)
    signal.signal(signal.SIGINT, _pass_on)
    torchrun()


if __name__ == "__main__":
    main()
