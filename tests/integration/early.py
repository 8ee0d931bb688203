"""Slow preparations that mostly wait on the network or the disk, started in the background
when the test session starts so that they overlap the rest of the suite.

A test module names its own in ``START_EARLY``: functions of the test bed that call
:func:`start` (tests/integration/conftest.py calls them once collection is done, only for
modules with a selected test). The test that needs the result calls :func:`start` with the same
key and waits on the future, so the work runs once per session whether or not it was started
early; a failure reaches that test as the exception the work raised.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="early")
_jobs: dict[object, Future[Any]] = {}
_lock = threading.Lock()
_cleanups: list[Callable[[], None]] = []


def start(key: object, work: Callable[[], T]) -> Future[T]:
    """The future of the one job for ``key``, submitting ``work`` if there is none yet."""
    with _lock:
        if key not in _jobs:
            _jobs[key] = _pool.submit(work)
        return _jobs[key]


def on_session_end(cleanup: Callable[[], None]) -> None:
    """Undo something a background job made, should its test not run (``-x``, Ctrl-C)."""
    with _lock:
        _cleanups.append(cleanup)


def settle() -> None:
    """Wait for every job started so far (a test about to restart dockerd would kill them)."""
    with _lock:
        jobs = list(_jobs.values())
    for job in jobs:
        with contextlib.suppress(Exception):  # each job's own test reports its failure
            job.result()


def finish() -> None:
    with _lock:
        cleanups, _cleanups[:] = list(_cleanups), []
    for cleanup in cleanups:
        with contextlib.suppress(Exception):  # best effort at session end; the test reports
            cleanup()
    _pool.shutdown(wait=True, cancel_futures=True)
