"""``gpudesk hosts check NAME``: is this host ready for GPU dev containers? One item per need
(driver, NVIDIA runtime, python3, disk, Docker access), each with the fix when it is missing.

The probes are one shell command over the host's connection plus one Docker API call; what the
host prints is hostile input, so only the expected shapes are taken from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gpudesk.core import shell
from gpudesk.core.engine import describe_failure

# The default pytorch devel image is about 20 GB unpacked; gpudesk's layers and a few
# checkpoints come on top.
MIN_FREE_GB = 40.0
DEFAULT_DOCKER_ROOT = "/var/lib/docker"

_VERSION_RE = re.compile(r"\d+(\.\d+){1,3}")


@dataclass(frozen=True)
class CheckItem:
    key: str  # driver, nvidia_runtime, python3, disk, docker
    ok: bool
    detail: str  # what was found
    fix: str = ""  # what to do when not ok

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "ok": self.ok, "detail": self.detail, "fix": self.fix or None}


FIXES = {
    "driver": (
        "install the NVIDIA driver for the GPUs (Ubuntu: `sudo ubuntu-drivers install`; Debian:"
        " `sudo apt install nvidia-driver`), reboot, and check that `nvidia-smi` lists them"
    ),
    "nvidia_runtime": (
        "install the NVIDIA Container Toolkit (package nvidia-container-toolkit), then run"
        " `sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker`"
    ),
    "python3": "install python3 (`sudo apt install python3`); the GPU stats agent runs on it",
    "disk": (
        "free space where Docker keeps images (`docker system prune`), or move Docker's"
        " data-root to a larger disk"
    ),
    "docker": (
        "install Docker Engine (docker.io or docker-ce) and let the SSH user use it:"
        " `sudo usermod -aG docker $USER`, then log in again"
    ),
}

PROBE = (
    "nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1"
    ' | sed "s/^/driver=/"; '
    "python3 -c 'import sys; print(\"python3=\" + sys.version.split()[0])' 2>/dev/null; "
    'df -Pk -- "$1" 2>/dev/null | awk \'NR==2 {print "disk_kb=" $4}\''
)


def probe_command(docker_root: str) -> str:
    return shell.command(["sh", "-c", PROBE, "gpudesk-check", docker_root])


def parse_probe(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key in ("driver", "python3", "disk_kb") and key not in found:
            found[key] = value.strip()[:64]
    return found


def checklist(
    probe: dict[str, str],
    docker_info: dict[str, Any] | None,
    docker_error: str | None,
    min_free_gb: float = MIN_FREE_GB,
) -> list[CheckItem]:
    """The five items from what the probe printed and what Docker answered (or its error)."""
    items: list[CheckItem] = []
    driver = probe.get("driver", "")
    if _VERSION_RE.fullmatch(driver):
        items.append(CheckItem("driver", True, f"NVIDIA driver {driver}"))
    else:
        items.append(CheckItem("driver", False, "no NVIDIA driver (nvidia-smi)", FIXES["driver"]))
    if docker_info is None:
        items.append(
            CheckItem("nvidia_runtime", False, "unknown: Docker did not answer", FIXES["docker"])
        )
    else:
        runtimes = sorted((docker_info.get("Runtimes") or {}).keys())
        if "nvidia" in runtimes:
            items.append(CheckItem("nvidia_runtime", True, "Docker has the nvidia runtime"))
        else:
            items.append(
                CheckItem(
                    "nvidia_runtime",
                    False,
                    f"Docker's runtimes: {', '.join(runtimes) or 'none'} (no nvidia)",
                    FIXES["nvidia_runtime"],
                )
            )
    python = probe.get("python3", "")
    if _VERSION_RE.fullmatch(python):
        items.append(CheckItem("python3", True, f"python3 {python}"))
    else:
        items.append(CheckItem("python3", False, "no python3", FIXES["python3"]))
    disk_kb = probe.get("disk_kb", "")
    root = str((docker_info or {}).get("DockerRootDir") or DEFAULT_DOCKER_ROOT)
    if disk_kb.isdigit():
        free_gb = int(disk_kb) / 1024**2
        ok = free_gb >= min_free_gb
        detail = f"{free_gb:.1f} GB free at {root}" + ("" if ok else f" (want {min_free_gb:g})")
        items.append(CheckItem("disk", ok, detail, "" if ok else FIXES["disk"]))
    else:
        items.append(CheckItem("disk", False, f"cannot read free space at {root}", FIXES["disk"]))
    if docker_info is not None:
        version = str(docker_info.get("ServerVersion") or "?")
        items.append(CheckItem("docker", True, f"Docker {version}, usable by the SSH user"))
    else:
        items.append(CheckItem("docker", False, docker_error or "no Docker", FIXES["docker"]))
    return items


def run_checks(service: Any, min_free_gb: float = MIN_FREE_GB) -> list[CheckItem]:
    """The checklist for one connected :class:`~gpudesk.core.fleet.HostService`."""
    docker_info: dict[str, Any] | None = None
    docker_error: str | None = None
    try:
        docker_info = dict(service.docker().info())
    except Exception as exc:  # every failure is described, none escapes
        docker_error = describe_failure(exc, service.host.name)
    root = str((docker_info or {}).get("DockerRootDir") or DEFAULT_DOCKER_ROOT)
    result = service.conn.exec(probe_command(root), timeout=30)
    return checklist(parse_probe(result.text()), docker_info, docker_error, min_free_gb)
