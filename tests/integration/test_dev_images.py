"""What a dev container offers its user, through the CLI and the real OpenSSH client and rsync:
the usual tools, --sudo, a persistent venv, uid reuse on a base with a uid-1000 user, and
connection sharing for `ssh gpudesk-<name>`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpudesk.core import sshconfig
from gpudesk.core.config import Inventory
from tests.integration.bed import bed_host

pytestmark = pytest.mark.slow
UID1000_BASE = "gpudesk-testbase:uid1000"


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpudesk", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def bed(
    testbed: Any,
    known_hosts_file: Path,
    isolated_home: Path,
    docker_client: Any,
    short_home: Path,
) -> Iterator[str]:
    key = isolated_home / ".ssh" / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    Inventory.load().add(bed_host(testbed))
    yield "bed"
    for container in docker_client.containers.list(all=True, filters={"name": "imgtest-"}):
        container.remove(force=True)


def ssh(home: Path, alias: str, *command: str) -> subprocess.CompletedProcess[str]:
    argv = ["ssh", "-F", str(sshconfig.config_path(home)), "-o", "BatchMode=yes", alias]
    return subprocess.run([*argv, *command], capture_output=True, text=True, timeout=120)


def test_tools_sudo_rsync_venv_and_shared_connections(
    bed: str, testbed: Any, short_home: Path, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    done = cli("launch", "ssh", "--host", bed, "--name", "imgtest-sudo", "--sudo", "--json",
               "--base-image", testbed.base_image, "--workspace", str(workspace))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sudo"] is True
    alias = "gpudesk-imgtest-sudo"

    tools = ssh(short_home, alias, "for t in rsync git curl tmux less vi; do command -v $t; done")
    assert tools.returncode == 0, tools.stderr
    assert len(tools.stdout.split()) == 6
    assert ssh(short_home, alias, "sudo -n true").returncode == 0

    # The second ssh goes through the first one's master (ControlMaster auto + ControlPersist).
    config = str(sshconfig.config_path(short_home))
    check = subprocess.run(["ssh", "-F", config, "-O", "check", alias], capture_output=True,
                           text=True, timeout=30)  # fmt: skip
    assert check.returncode == 0 and "Master running" in check.stderr, check.stderr
    assert any((short_home / "cm").iterdir())
    # `gpudesk ssh` takes the same path.
    via_cli = cli("ssh", "imgtest-sudo", "--", "echo", "via-cli")
    assert via_cli.returncode == 0 and via_cli.stdout.strip() == "via-cli", via_cli.stderr

    # rsync both ways as the dev user, with the real rsync on both ends.
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "data.bin").write_bytes(os.urandom(200_000))
    rsh = f"ssh -F {config} -o BatchMode=yes"
    up = subprocess.run(["rsync", "-a", "-e", rsh, f"{src}/", f"{alias}:/workspace/up/"],
                        capture_output=True, text=True, timeout=120)  # fmt: skip
    assert up.returncode == 0, up.stderr
    assert (workspace / "up" / "sub" / "data.bin").read_bytes() == (
        src / "sub" / "data.bin"
    ).read_bytes()
    back = tmp_path / "back"
    down = subprocess.run(["rsync", "-a", "-e", rsh, f"{alias}:/workspace/up/", f"{back}/"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert down.returncode == 0, down.stderr
    assert (back / "sub" / "data.bin").read_bytes() == (src / "sub" / "data.bin").read_bytes()
    owner = ssh(short_home, alias, "stat -c %U /workspace/up/sub/data.bin")
    assert owner.stdout.strip() == "dev"

    # The user's environment is a venv in the workspace that sees the image's packages.
    env = ssh(short_home, alias, "bash -lc 'command -v python pip; python -c \"import sys; "
              "print(sys.prefix); import site; print(site.getsitepackages()[0])\"'")  # fmt: skip
    assert env.returncode == 0, env.stderr
    python, pip, prefix, site_dir = env.stdout.split()
    assert (python, pip, prefix) == (
        "/workspace/.venv/bin/python",
        "/workspace/.venv/bin/pip",
        "/workspace/.venv",
    )
    assert "include-system-site-packages = true" in (workspace / ".venv" / "pyvenv.cfg").read_text()
    module = ssh(short_home, alias, f"echo 'ANSWER = 42' > {site_dir}/gdmod.py")
    assert module.returncode == 0, module.stderr

    # What went into the venv survives removing the container and launching a new one on it.
    assert cli("rm", "imgtest-sudo").returncode == 0
    again = cli("launch", "ssh", "--host", bed, "--name", "imgtest-nosudo", "--json",
                "--base-image", testbed.base_image, "--workspace", str(workspace))  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["sudo"] is False
    alias = "gpudesk-imgtest-nosudo"
    kept = ssh(short_home, alias, "bash -lc 'python -c \"import gdmod; print(gdmod.ANSWER)\"'")
    assert kept.stdout.strip() == "42", kept.stderr
    refused = ssh(short_home, alias, "sudo -n true")
    assert refused.returncode != 0 and "password is required" in refused.stderr
    ps = cli("ps", "--host", bed)
    assert "ssh+sudo" not in ps.stdout and "imgtest-nosudo" in ps.stdout


def test_a_base_with_a_uid_1000_user_gives_a_writable_workspace(
    bed: str, testbed: Any, docker_client: Any, short_home: Path, tmp_path: Path
) -> None:
    dockerfile = f"FROM {testbed.base_image}\nRUN useradd -m -u 1000 -s /bin/bash ubuntu\n"
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=UID1000_BASE, rm=True)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    os.chown(workspace, 1000, 1000)
    done = cli("launch", "ssh", "--host", bed, "--name", "imgtest-uid", "--json",
               "--base-image", UID1000_BASE, "--workspace", str(workspace))  # fmt: skip
    assert done.returncode == 0, done.stderr
    who = ssh(short_home, "gpudesk-imgtest-uid", "id -un; id -u; touch /workspace/mine; echo ok")
    assert who.stdout.split() == ["dev", "1000", "ok"], who.stderr
    assert (workspace / "mine").stat().st_uid == 1000


def test_jupyterlab_is_pinned_and_leaves_the_bases_torch_alone(
    testbed: Any, docker_client: Any
) -> None:
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    from gpudesk.core.containers import Containers
    from gpudesk.core.flavours import Flavour
    from tests.integration.test_runs import ensure_torch_image

    base = ensure_torch_image(docker_client, testbed.base_image)
    image = Containers(docker_client).ensure_image(Flavour.JUPYTER, base)

    def versions(tag: str, *dists: str) -> list[str]:
        code = f"import importlib.metadata as m; print(*[m.version(d) for d in {list(dists)!r}])"
        out = docker_client.containers.run(tag, ["-c", code], entrypoint=["python3"], remove=True)
        return str(out.decode()).split()

    (torch_before,) = versions(base, "torch")
    torch_after, jupyterlab = versions(image, "torch", "jupyterlab")
    assert torch_after == torch_before
    dockerfile = (Path(__file__).parents[2] / "gpudesk/images/Dockerfile").read_text()
    spec = dockerfile.split('ARG JUPYTERLAB_SPEC="jupyterlab', 1)[1].split('"', 1)[0]
    assert Version(jupyterlab) in SpecifierSet(spec)
