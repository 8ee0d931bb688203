"""Heavy third-party packages (docker, paramiko, requests), imported on first use.

``gpudesk --version``, ``--help`` and the TUI's first frame need none of them, and importing
docker alone costs a quarter of a second (it pulls requests, urllib3 and paramiko). A module
binds ``docker = lazy_module("docker")`` (the real import under ``TYPE_CHECKING`` for mypy) and
uses ``docker.errors.NotFound`` as before; the package is imported the first time an attribute
is read, which for an ``except`` clause is only when an exception is being matched.
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class LazyModule(types.ModuleType):
    """Stands in for a module until one of its attributes is read; never in ``sys.modules``."""

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self.__name__)
        try:
            return getattr(module, attr)
        except AttributeError:
            # A submodule the package's __init__ does not import (``docker.types``).
            return importlib.import_module(f"{self.__name__}.{attr}")


def lazy_module(name: str) -> Any:
    """A stand-in for ``import name`` that imports it on first attribute access."""
    return LazyModule(name)
