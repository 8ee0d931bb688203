"""Dev containers on the real test bed engine: build, launch, reach over real OpenSSH, remove."""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from gpudesk.core import sshconfig
from gpudesk.core.containers import (
    ContainerEvent,
    ContainerNotFoundError,
    Containers,
    ContainerStartError,
    LaunchSpec,
    LaunchTimeoutError,
    NameInUseError,
    NoGpuRuntime,
    ReadyResult,
    probe_jupyter,
)
from gpudesk.core.containers.workspace import prepare_workspace
from gpudesk.core.flavours import Flavour, image_tag
from gpudesk.core.local import LocalConnection

FAILING_IMAGE = "gpudesk-test/failing-entrypoint:1"


@pytest.fixture
def containers(docker_client: Any) -> Containers:
    return Containers(docker_client)


@pytest.fixture
def make_name(docker_client: Any) -> Iterator[Callable[[], str]]:
    """Fresh container names; whatever carries them is force-removed afterwards."""
    names: list[str] = []

    def make() -> str:
        names.append(f"gdt-{uuid.uuid4().hex[:10]}")
        return names[-1]

    yield make
    for name in names:
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.containers.get(name).remove(force=True)


def mkdir(path: str) -> None:
    # As gpudesk makes a workspace on a host: owned by the container user from the start.
    prepare_workspace(LocalConnection().exec, path)


def keypair(where: Path) -> tuple[Path, str]:
    key = where / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gpudesk-test", "-f", str(key)],
        check=True,
    )
    return key, key.with_suffix(".pub").read_text().strip()


def exists(docker_client: Any, name: str) -> bool:
    try:
        docker_client.containers.get(name)
    except docker.errors.NotFound:
        return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize("flavour", list(Flavour))
def test_build_once_then_reuse(
    containers: Containers, docker_client: Any, testbed: Any, flavour: Flavour
) -> None:
    tag = image_tag(flavour, testbed.base_image)
    try:
        # The layers stay cached; dropping the tag makes ensure_image build again.
        docker_client.images.remove(tag, noprune=True)
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError:
        pytest.skip(f"{tag} is in use by a container left from elsewhere")
    first: list[str] = []
    assert containers.ensure_image(flavour, testbed.base_image, first.append) == tag
    assert any(line.startswith("Step ") for line in first)
    image_id = docker_client.images.get(tag).id
    second: list[str] = []
    assert containers.ensure_image(flavour, testbed.base_image, second.append) == tag
    assert second == []
    assert docker_client.images.get(tag).id == image_id
    labels = docker_client.images.get(tag).labels
    assert labels["io.gpudesk.image.flavour"] == flavour.value
    assert "io.gpudesk.flavour" not in labels


def ssh(config: Path, alias: str, command: str, *options: str) -> subprocess.CompletedProcess[str]:
    base = ["ssh", "-F", str(config), "-o", "BatchMode=yes", "-o", "ConnectTimeout=20"]
    return subprocess.run(
        [*base, *options, alias, command],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_ssh_container_end_to_end(  # noqa: PLR0917 - fixtures
    containers: Containers,
    docker_client: Any,
    testbed: Any,
    isolated_home: Path,
    known_hosts_file: Path,
    make_name: Callable[[], str],
    tmp_path: Path,
) -> None:
    name = make_name()
    key, public_key = keypair(tmp_path)
    workspace = tmp_path / "hostfs" / "gpudesk" / name
    progress: list[str] = []
    result = containers.launch(
        LaunchSpec(
            flavour=Flavour.SSH,
            name=name,
            workspace=str(workspace),
            public_key=public_key,
            base_image=testbed.base_image,
        ),
        mkdir,
        on_progress=progress.append,
    )
    assert workspace.is_dir()
    assert result.info.is_gpudesk and result.info.flavour is Flavour.SSH
    assert result.info.state == "running"
    assert result.host_key and result.host_key.startswith("ssh-ed25519 ")
    assert progress[-1] == f"{name} is ready"

    attrs = containers.inspect(name)
    bindings = attrs["NetworkSettings"]["Ports"]["22/tcp"]
    assert bindings and {b["HostIp"] for b in bindings} == {"127.0.0.1"}
    assert int(bindings[0]["HostPort"]) == result.host_port
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert attrs["HostConfig"]["ShmSize"] == 16 * 1024**3
    assert attrs["HostConfig"]["Init"] is True
    assert attrs["Config"]["Labels"]["io.gpudesk.workspace"] == str(workspace)
    listed = {i.name: i for i in containers.list()}
    assert listed[name].host_port("22/tcp") == result.host_port
    assert listed[name].uptime is not None

    # The operator's ssh: gpudesk's config, included from ~/.ssh/config, jumping through the
    # test bed's sshd as the GPU host.
    gpudesk_home = isolated_home / ".config" / "gpudesk"
    user_config = isolated_home / ".ssh" / "config"
    user_config.write_text(
        "Host testbed-gpu\n"
        "    HostName 127.0.0.1\n"
        f"    Port {testbed.ssh_port}\n"
        "    User root\n"
        f"    IdentityFile {testbed.ssh_client_key}\n"
        "    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {known_hosts_file}\n"
        "    StrictHostKeyChecking yes\n"
        # A catch-all that would send the wrong user if our blocks did not come first.
        "Host *\n"
        "    User nobody-here\n"
    )
    assert sshconfig.ensure_include(user_config, sshconfig.config_path(gpudesk_home))
    entry = sshconfig.ContainerEntry(
        name=name,
        port=result.host_port,
        user=result.user,
        identity_file=str(key),
        host_key=result.host_key,
        jump="testbed-gpu",
    )
    sshconfig.add_entry(gpudesk_home, entry)

    done = ssh(user_config, entry.alias, "whoami")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "dev"
    env = ssh(user_config, entry.alias, "bash -lc 'echo $PYTHONUNBUFFERED; pwd; id -u'")
    assert env.stdout.split() == ["1", "/home/dev", "1000"], env.stderr
    sudo = ssh(user_config, entry.alias, "sudo -n true")
    assert sudo.returncode != 0

    root = ssh(user_config, entry.alias, "true", "-o", "User=root")
    assert root.returncode == 255 and "Permission denied" in root.stderr
    password = ssh(
        user_config,
        entry.alias,
        "true",
        "-o",
        "PreferredAuthentications=password,keyboard-interactive",
        "-o",
        "PubkeyAuthentication=no",
    )
    assert password.returncode == 255 and "Permission denied" in password.stderr

    # The host key is pinned: another key under the alias is refused, not learned.
    (tmp_path / "other").mkdir()
    other_key = keypair(tmp_path / "other")[1].split()
    spoof = sshconfig.ContainerEntry(
        name=name,
        port=result.host_port,
        user=result.user,
        identity_file=str(key),
        host_key=f"{other_key[0]} {other_key[1]}",
        jump="testbed-gpu",
    )
    sshconfig.add_entry(gpudesk_home, spoof)
    spoofed = ssh(user_config, entry.alias, "true")
    assert spoofed.returncode == 255 and "Host key verification failed" in spoofed.stderr
    sshconfig.add_entry(gpudesk_home, entry)

    # Keys are made once per container, so the pinned key survives a restart; the published
    # port may not, which is why callers rewrite the entry from the restarted container.
    restarted = containers.restart(name)
    assert restarted.state == "running"
    assert containers.host_public_key(name) == result.host_key
    assert restarted.host_port("22/tcp") is not None

    (workspace / "notes.txt").write_text("keep me")
    removed = containers.remove(name)
    assert removed.name == name and removed.kept_workspace == str(workspace)
    assert sshconfig.remove_entry(gpudesk_home, name)
    assert not exists(docker_client, name)
    assert (workspace / "notes.txt").read_text() == "keep me"
    assert sshconfig.entries(gpudesk_home) == []
    assert f"gpudesk-{name}" not in sshconfig.config_path(gpudesk_home).read_text()
    with pytest.raises(ContainerNotFoundError, match="no container named"):
        containers.remove(name)


@pytest.mark.slow
def test_jupyter_container_needs_the_token(
    containers: Containers,
    docker_client: Any,
    testbed: Any,
    make_name: Callable[[], str],
    tmp_path: Path,
) -> None:
    name = make_name()
    workspace = tmp_path / "ws"
    workspace.mkdir()
    # The login user takes the uid of the workspace's owner on the host.
    os.chown(workspace, 1234, 1234)
    result = containers.launch(
        LaunchSpec(
            flavour=Flavour.JUPYTER,
            name=name,
            workspace=str(workspace),
            base_image=testbed.base_image,
        ),
        mkdir,
    )
    token = result.token
    assert token and len(token) >= 32
    assert probe_jupyter("127.0.0.1", result.host_port, token).ready

    conn = http.client.HTTPConnection("127.0.0.1", result.host_port, timeout=10)
    conn.request("GET", "/api/status")
    assert conn.getresponse().status == 403
    conn.close()
    assert not probe_jupyter("127.0.0.1", result.host_port, "wrong-token").ready

    attrs = containers.inspect(name)
    assert {b["HostIp"] for b in attrs["NetworkSettings"]["Ports"]["8888/tcp"]} == {"127.0.0.1"}
    container = docker_client.containers.get(name)
    code, ps = container.exec_run(["ps", "-eo", "uid,args"])
    assert code == 0
    assert token not in ps.decode()
    jupyter_lines = [ln for ln in ps.decode().splitlines() if "jupyterlab" in ln]
    assert any(ln.split()[0] == "1234" for ln in jupyter_lines), ps.decode()
    assert "JUPYTER_TOKEN=" + token in attrs["Config"]["Env"]
    code, _ = container.exec_run(["runuser", "-u", "dev", "--", "touch", "/workspace/made-inside"])
    assert code == 0
    assert (workspace / "made-inside").stat().st_uid == 1234


def test_gpus_without_nvidia_runtime_create_nothing(
    containers: Containers,
    docker_client: Any,
    testbed: Any,
    make_name: Callable[[], str],
    tmp_path: Path,
) -> None:
    assert not containers.nvidia_runtime_available()
    name = make_name()
    made: list[str] = []
    with pytest.raises(NoGpuRuntime, match="CPU-only"):
        containers.launch(
            LaunchSpec(
                flavour=Flavour.SSH,
                name=name,
                workspace=str(tmp_path / "ws"),
                public_key="ssh-ed25519 AAAA",
                gpus="all",
                base_image=testbed.base_image,
            ),
            made.append,
        )
    assert made == []
    assert not exists(docker_client, name)


def test_a_name_in_use_is_refused(
    containers: Containers,
    docker_client: Any,
    testbed: Any,
    make_name: Callable[[], str],
    tmp_path: Path,
) -> None:
    name = make_name()
    docker_client.containers.create(testbed.base_image, ["true"], name=name)
    made: list[str] = []
    with pytest.raises(NameInUseError, match="already exists"):
        containers.launch(
            LaunchSpec(
                flavour=Flavour.JUPYTER,
                name=name,
                workspace=str(tmp_path / "ws"),
                base_image=testbed.base_image,
            ),
            made.append,
        )
    assert made == []
    # A container gpudesk did not make shows up only when asked for.
    assert name not in {i.name for i in containers.list()}
    foreign = {i.name: i for i in containers.list(all_containers=True)}[name]
    assert not foreign.is_gpudesk and foreign.flavour is None and foreign.state == "created"


@pytest.fixture(scope="module")
def failing_image(docker_client: Any, testbed: Any) -> str:
    dockerfile = (
        f"FROM {testbed.base_image}\n"
        'ENTRYPOINT ["sh", "-c", "echo preparing; echo boom-marker: cannot start >&2; exit 3"]\n'
    )
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=FAILING_IMAGE, rm=True)
    return FAILING_IMAGE


def test_a_failing_entrypoint_is_cleaned_up(
    containers: Containers,
    docker_client: Any,
    failing_image: str,
    make_name: Callable[[], str],
    tmp_path: Path,
) -> None:
    name = make_name()
    with pytest.raises(ContainerStartError) as caught:
        containers.launch(
            LaunchSpec(
                flavour=Flavour.SSH,
                name=name,
                workspace=str(tmp_path / "ws"),
                public_key="ssh-ed25519 AAAA",
                image=failing_image,
            ),
            mkdir,
            timeout=60,
        )
    assert "boom-marker: cannot start" in str(caught.value)
    assert any("boom-marker" in line for line in caught.value.last_lines)
    assert not exists(docker_client, name)
    assert (tmp_path / "ws").is_dir()


def test_a_launch_that_never_gets_ready_is_cleaned_up(
    containers: Containers,
    docker_client: Any,
    testbed: Any,
    make_name: Callable[[], str],
    tmp_path: Path,
) -> None:
    image = containers.ensure_image(Flavour.SSH, testbed.base_image)
    name = make_name()
    with pytest.raises(LaunchTimeoutError, match="did not answer within 1 s"):
        containers.launch(
            LaunchSpec(
                flavour=Flavour.SSH,
                name=name,
                workspace=str(tmp_path / "ws"),
                public_key="ssh-ed25519 AAAA",
                image=image,
            ),
            mkdir,
            probe=lambda port: ReadyResult(False, "never"),
            timeout=1,
        )
    assert not exists(docker_client, name)


def test_events_stream_stops_when_asked(
    containers: Containers, docker_client: Any, testbed: Any, make_name: Callable[[], str]
) -> None:
    name = make_name()
    stream = containers.events()
    seen: list[ContainerEvent] = []
    started = threading.Event()

    def watch() -> None:
        for event in stream:
            seen.append(event)
            if event.name == name and event.action == "start":
                started.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    # Events only flow once the stream is open; creating after a short wait is not enough
    # proof, so keep starting until the watcher sees one (bounded).
    container = docker_client.containers.create(
        testbed.base_image, ["sleep", "30"], name=name, labels={"io.gpudesk.flavour": "ssh"}
    )
    for _ in range(20):
        container.start()
        if started.wait(0.5):
            break
        container.stop(timeout=0)
    assert started.is_set()
    event = next(e for e in seen if e.name == name and e.action == "start")
    assert event.is_gpudesk and event.id == container.id
    stream.close()
    container.stop(timeout=0)  # one more event wakes the stream if close() raced
    watcher.join(10)
    assert not watcher.is_alive()
