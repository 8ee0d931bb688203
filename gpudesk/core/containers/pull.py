"""Pulling an image onto a GPU host: the reference's parts and one line of overall progress."""

from __future__ import annotations

from typing import Any


def split_image_ref(ref: str) -> tuple[str, str]:
    """``repo[:tag]`` or ``repo@digest`` to what the pull API takes (tag "latest" if none)."""
    if "@" in ref:
        repository, digest = ref.split("@", 1)
        return repository, digest
    name, _, tag = ref.rpartition(":")
    if name and "/" not in tag:
        return name, tag
    return ref, "latest"


class PullProgress:
    """One line of overall pull progress from Docker's per-layer JSON messages.

    A line is made when the whole-image percentage moves by a step or a layer finishes, so a
    multi-GB pull prints tens of lines, not thousands.
    """

    STEP = 5.0

    def __init__(self) -> None:
        self.layers: dict[str, tuple[int, int]] = {}  # id -> (current, total) bytes
        self.done: set[str] = set()
        self._last = -self.STEP

    def update(self, chunk: dict[str, Any]) -> str | None:
        layer = str(chunk.get("id") or "")
        status = str(chunk.get("status") or "")
        detail = chunk.get("progressDetail") or {}
        if layer and status == "Downloading" and isinstance(detail, dict):
            total = detail.get("total")
            current = detail.get("current")
            if isinstance(total, int) and isinstance(current, int) and total > 0:
                self.layers[layer] = (min(current, total), total)
        finished = layer and status in ("Download complete", "Pull complete", "Already exists")
        if finished and layer not in self.done:
            self.done.add(layer)
            if layer in self.layers:
                self.layers[layer] = (self.layers[layer][1], self.layers[layer][1])
        total = sum(t for _, t in self.layers.values())
        if not total:
            return None
        current = sum(c for c, _ in self.layers.values())
        percent = 100.0 * current / total
        if percent - self._last < self.STEP and not (finished and status == "Pull complete"):
            return None
        self._last = percent
        return (
            f"downloaded {current / 1e9:.2f} of {total / 1e9:.2f} GB ({percent:.0f}%),"
            f" {len(self.done)} layer(s) done"
        )
