"""The one root of the errors gpudesk shows the user, and the checks shared by every module.

Every error a user can cause or fix (bad config, unreachable host, engine refusal, full disk,
unknown run) is a :class:`GpudeskError` whose message is one sentence: what went wrong and what
to do. The CLI prints it as ``gpudesk: <message>`` with exit code 1, the TUI as a notification;
anything else is a bug.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    ENGINE_ERRORS: tuple[type[Exception], ...]


class GpudeskError(Exception):
    """An error whose message is one sentence for the user (what went wrong, what to do)."""


@functools.cache
def engine_errors() -> tuple[type[Exception], ...]:
    """What a call to a Docker engine raises when the engine, or the way to it, fails: the SDK
    lets transport failures through as requests/OSError, not as DockerException.

    A function, so that importing a module that catches these does not import docker (write
    ``except engine_errors():``, which is only evaluated while an exception is matched).
    """
    import docker.errors
    import requests

    return (docker.errors.DockerException, requests.exceptions.RequestException, OSError)


def __getattr__(name: str) -> Any:
    # The old constant still works, but importing it by name imports docker.
    if name == "ENGINE_ERRORS":
        return engine_errors()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def disk_full(text: str) -> bool:
    """Whether an engine or shell error message says a disk filled up."""
    return "no space left" in text.lower()
