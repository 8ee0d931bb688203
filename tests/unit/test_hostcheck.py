"""The host checklist from what a host printed and what its Docker answered."""

from __future__ import annotations

from gpudesk.core.hostcheck import FIXES, checklist, parse_probe


def by_key(items: list) -> dict:
    return {i.key: i for i in items}


def test_a_ready_gpu_host_passes_every_item() -> None:
    probe = parse_probe("driver=550.54.15\npython3=3.10.12\ndisk_kb=104857600\n")
    info = {"Runtimes": {"runc": {}, "nvidia": {}}, "DockerRootDir": "/data/docker",
            "ServerVersion": "27.1.1"}  # fmt: skip
    items = checklist(probe, info, None)
    assert [i.key for i in items] == ["driver", "nvidia_runtime", "python3", "disk", "docker"]
    assert all(i.ok and not i.fix for i in items)
    assert by_key(items)["disk"].detail == "100.0 GB free at /data/docker"
    assert by_key(items)["driver"].detail == "NVIDIA driver 550.54.15"


def test_each_missing_item_comes_with_its_fix() -> None:
    items = by_key(checklist(parse_probe("disk_kb=1048576\n"), {"Runtimes": {"runc": {}}}, None))
    assert not items["driver"].ok and items["driver"].fix == FIXES["driver"]
    assert not items["nvidia_runtime"].ok and "nvidia-ctk runtime configure" in (
        items["nvidia_runtime"].fix
    )
    assert not items["python3"].ok and "apt install python3" in items["python3"].fix
    assert not items["disk"].ok and "1.0 GB free" in items["disk"].detail
    assert items["docker"].ok


def test_no_docker_access_and_hostile_output() -> None:
    probe = parse_probe("driver=<script>\npython3=3.11.2; rm -rf /\ndisk_kb=lots\n")
    items = by_key(checklist(probe, None, "No permission to use the Docker engine on gpu1."))
    assert not items["driver"].ok and not items["python3"].ok and not items["disk"].ok
    assert not items["docker"].ok and "docker group" not in items["docker"].detail
    assert "usermod -aG docker" in items["docker"].fix
    assert items["docker"].detail.startswith("No permission")
