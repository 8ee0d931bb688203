from __future__ import annotations

import io
import string
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime

import docker.errors
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpudesk.core import flavours
from gpudesk.core.containers import (
    BaseImageMissingError,
    ContainerError,
    Containers,
    ImageBuildError,
    InvalidGpuSpecError,
    NoSpaceLeftError,
    PortBinding,
    info_from_attrs,
    parse_gpus,
    split_image_ref,
)
from gpudesk.core.devcontainers import LaunchRequest
from gpudesk.core.flavours import (
    CONTEXT_FILES,
    LABEL_PREFIX,
    Flavour,
    GpudeskLabels,
    InvalidNameError,
    context_files,
    context_tarball,
    generate_token,
    image_tag,
    validate_name,
    validate_user,
)

VALID_FIRST = string.ascii_lowercase + string.digits
VALID_REST = VALID_FIRST + "_.-"
valid_names = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(VALID_FIRST),
    st.text(alphabet=VALID_REST, max_size=62),
)


@given(valid_names)
def test_valid_names_pass(name: str) -> None:
    assert validate_name(name) == name


@given(st.text(max_size=80))
def test_name_validation_matches_the_rule(name: str) -> None:
    ok = 1 <= len(name) <= 63 and name[0] in VALID_FIRST and all(c in VALID_REST for c in name[1:])
    if ok:
        validate_name(name)
    else:
        with pytest.raises(InvalidNameError, match="cannot name a container"):
            validate_name(name)


@pytest.mark.parametrize("name", ["", "-x", ".x", "_x", "Upper", "a b", "a/b", "x" * 64, "ä"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidNameError):
        validate_name(name)


@pytest.mark.parametrize("user", ["root", "", "Dev", "1dev", "a b", "d" * 33])
def test_bad_users_are_refused(user: str) -> None:
    with pytest.raises(InvalidNameError):
        validate_user(user)


def test_ports() -> None:
    assert Flavour.SSH.container_port == 22
    assert Flavour.JUPYTER.container_port == 8888
    assert Flavour.JUPYTER.port_key == "8888/tcp"


def test_context_has_the_image_files() -> None:
    files = context_files()
    assert set(files) == set(CONTEXT_FILES)
    assert b"AS ssh" in files["Dockerfile"]
    assert b"AS jupyter" in files["Dockerfile"]
    with tarfile.open(fileobj=io.BytesIO(context_tarball())) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == set(CONTEXT_FILES)
    assert members["entrypoint-ssh.sh"].mode == 0o755
    assert context_tarball() == context_tarball()


def test_image_tag_is_stable_and_covers_its_inputs() -> None:
    files = context_files()
    tag = image_tag(Flavour.SSH, "base:1", files)
    assert tag.startswith("gpudesk/ssh:")
    assert tag == image_tag(Flavour.SSH, "base:1", dict(files))
    assert tag != image_tag(Flavour.JUPYTER, "base:1", files)
    assert tag != image_tag(Flavour.SSH, "base:2", files)
    changed = {**files, "Dockerfile": files["Dockerfile"] + b"\n# changed\n"}
    assert tag != image_tag(Flavour.SSH, "base:1", changed)
    assert image_tag(Flavour.SSH, "base:1") == tag


def test_tokens_are_long_and_fresh() -> None:
    tokens = {generate_token() for _ in range(50)}
    assert len(tokens) == 50
    assert all(len(t) >= 32 for t in tokens)  # 256 bits in urlsafe base64 is 43 chars


@given(
    flavour=st.sampled_from(Flavour),
    owner=st.text(max_size=20),
    workspace=st.text(max_size=40),
    gpus=st.sampled_from(["", "all", "2", "0,2"]),
    ports=st.lists(st.integers(1, 65535), max_size=3).map(tuple),
)
def test_labels_round_trip(
    flavour: Flavour, owner: str, workspace: str, gpus: str, ports: tuple[int, ...]
) -> None:
    labels = GpudeskLabels(
        flavour=flavour,
        owner=owner,
        workspace=workspace,
        user="dev",
        gpus=gpus,
        ports=ports,
        created=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    raw = labels.to_labels()
    assert all(k.startswith(LABEL_PREFIX) for k in raw)
    assert raw[LABEL_PREFIX + "created-by"].startswith("gpudesk ")
    assert GpudeskLabels.from_labels(raw) == labels
    assert flavours.is_gpudesk(raw)


def test_foreign_labels_are_not_gpudesk() -> None:
    assert GpudeskLabels.from_labels({"maintainer": "x"}) is None
    assert GpudeskLabels.from_labels({LABEL_PREFIX + "flavour": "vnc"}) is None
    assert not flavours.is_gpudesk(None)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, []),
        ("", []),
        ("none", []),
        ("all", [{"Count": -1}]),
        ("2", [{"Count": 2}]),
        ("0,2", [{"DeviceIDs": ["0", "2"]}]),
        ("1,", [{"DeviceIDs": ["1"]}]),
        ("device=3", [{"DeviceIDs": ["3"]}]),
        (
            "GPU-0123abcd-1111-2222-3333-444455556666,1",
            [{"DeviceIDs": ["GPU-0123abcd-1111-2222-3333-444455556666", "1"]}],
        ),
    ],
)
def test_parse_gpus(spec: str | None, expected: list[dict[str, object]]) -> None:
    requests = parse_gpus(spec)
    assert len(requests) == len(expected)
    for request, want in zip(requests, expected, strict=True):
        assert request["Capabilities"] == [["gpu"]]
        for key, value in want.items():
            assert request[key] == value


@pytest.mark.parametrize("spec", ["0", "abc", "0,,2", "-1", "1,1", "device=", "2.5", "all,0"])
def test_bad_gpu_specs(spec: str) -> None:
    with pytest.raises(InvalidGpuSpecError, match="GPU"):
        parse_gpus(spec)


# ------------------------------------------------ container helpers that need no Docker engine


class _FakeImages:
    def __init__(self, present: set[str]) -> None:
        self.present = present

    def get(self, name: str) -> object:
        if name not in self.present:
            raise docker.errors.ImageNotFound(name)
        return object()


class _FakeApi:
    def __init__(self, chunks: list[dict[str, str]]) -> None:
        self.chunks = chunks
        self.kwargs: dict[str, object] = {}

    def build(self, **kwargs: object) -> Iterator[dict[str, str]]:
        self.kwargs = kwargs
        return iter(self.chunks)


class _FakeClient:
    def __init__(self, present: set[str], chunks: list[dict[str, str]]) -> None:
        self.images = _FakeImages(present)
        self.api = _FakeApi(chunks)


def test_missing_base_image_says_pull_it() -> None:
    client = _FakeClient(set(), [])
    with pytest.raises(BaseImageMissingError, match=r"--pull.*docker pull nope:1"):
        Containers(client).ensure_image(Flavour.SSH, "nope:1")
    assert client.api.kwargs == {}


def test_failing_build_step_reports_its_last_lines() -> None:
    chunks = [
        {"stream": "Step 3/9 : RUN apt-get install foo\n"},
        {"stream": "E: Unable to locate package foo\n"},
        {"error": "The command '/bin/sh -c apt-get install foo' returned a non-zero code: 100"},
    ]
    client = _FakeClient({"base:1"}, chunks)
    seen: list[str] = []
    with pytest.raises(ImageBuildError, match="non-zero code: 100") as caught:
        Containers(client).ensure_image(Flavour.JUPYTER, "base:1", seen.append)
    assert "E: Unable to locate package foo" in str(caught.value)
    assert caught.value.last_lines[-1] == "E: Unable to locate package foo"
    assert client.api.kwargs["target"] == "jupyter"
    assert client.api.kwargs["buildargs"] == {"BASE_IMAGE": "base:1"}
    assert client.api.kwargs["tag"] == image_tag(Flavour.JUPYTER, "base:1")
    assert "Step 3/9 : RUN apt-get install foo" in seen


def test_full_disk_is_named() -> None:
    chunks = [{"error": "write /var/lib/docker/tmp/x: no space left on device"}]
    with pytest.raises(NoSpaceLeftError, match="out of disk space"):
        Containers(_FakeClient({"base:1"}, chunks)).ensure_image(Flavour.SSH, "base:1")


def test_info_from_inspect_output() -> None:
    attrs = {
        "Id": "abc",
        "Name": "/box",
        "Created": "2026-11-24T10:00:00.123456789Z",
        "Config": {"Image": "gpudesk/ssh:1", "Labels": {"io.gpudesk.flavour": "ssh"}},
        "State": {"Status": "exited", "ExitCode": 137, "StartedAt": "0001-01-01T00:00:00Z"},
        "NetworkSettings": {"Ports": {"22/tcp": [{"HostIp": "127.0.0.1", "HostPort": "4022"}]}},
        "HostConfig": {"DeviceRequests": [{"Count": -1}]},
        "Mounts": [{"Destination": "/workspace", "Source": "/srv/box"}],
    }
    info = info_from_attrs(attrs)
    assert info.name == "box" and info.flavour is Flavour.SSH and info.is_gpudesk
    assert info.status == "exited (137)" and info.started_at is None and info.uptime is None
    assert info.created == datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=UTC)
    assert info.ports == [PortBinding("127.0.0.1", 4022, "22/tcp")]
    assert info.gpus == "all" and info.workspace == "/srv/box"


def test_the_build_context_holds_only_what_the_dockerfile_copies() -> None:
    dockerfile = context_files()["Dockerfile"].decode()
    copied = {
        source
        for line in dockerfile.splitlines()
        if line.split()[:1] in (["COPY"], ["ADD"])
        for source in line.split()[1:-1]
        if not source.startswith("--")
    }
    assert set(CONTEXT_FILES) == copied | {"Dockerfile"}
    with tarfile.open(fileobj=io.BytesIO(context_tarball())) as tar:
        assert set(tar.getnames()) == set(CONTEXT_FILES)


def test_a_launch_request_becomes_the_engine_spec_field_for_field() -> None:
    request = LaunchRequest(
        flavour=Flavour.JUPYTER,
        name="nb",
        gpus="0,",
        workspace="~/ws",  # resolved by the caller: the spec gets the absolute path
        image="img:1",
        base_image="base:2",
        memory="8g",
        key="/k",
    )
    spec = request.spec(workspace="/home/a/ws", public_key="ssh-ed25519 AAA", jupyter_token="t")
    assert (spec.flavour, spec.name, spec.gpus, spec.image, spec.base_image, spec.memory) == (
        Flavour.JUPYTER, "nb", "0,", "img:1", "base:2", "8g",
    )  # fmt: skip
    assert (spec.workspace, spec.public_key, spec.jupyter_token) == (
        "/home/a/ws",
        "ssh-ed25519 AAA",
        "t",
    )
    # What LaunchSpec has and the request does not keep their defaults.
    assert (spec.user, spec.sudo) == (flavours.DEFAULT_USER, False)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (
            "pytorch/pytorch:2.9.1-cuda12.8-cudnn9-devel",
            ("pytorch/pytorch", "2.9.1-cuda12.8-cudnn9-devel"),
        ),
        ("ubuntu", ("ubuntu", "latest")),
        ("registry:5000/team/img", ("registry:5000/team/img", "latest")),
        ("registry:5000/team/img:v1", ("registry:5000/team/img", "v1")),
        ("img@sha256:abc", ("img", "sha256:abc")),
    ],
)
def test_split_image_ref(ref: str, expected: tuple[str, str]) -> None:
    assert split_image_ref(ref) == expected


class _PullApi:
    def __init__(self, chunks: list[dict[str, object]], images: _FakeImages) -> None:
        self.chunks = chunks
        self.images = images
        self.asked: tuple[str, str] | None = None

    def pull(self, repository: str, tag: str, **_: object) -> Iterator[dict[str, object]]:
        self.asked = (repository, tag)
        yield from self.chunks
        self.images.present.add(f"{repository}:{tag}")


def test_pull_reports_overall_progress_in_few_lines() -> None:
    layer_size = 1_000_000_000
    chunks: list[dict[str, object]] = [{"status": "Pulling from pytorch/pytorch", "id": "2.9"}]
    for layer in ("a", "b"):
        chunks.append({"status": "Pulling fs layer", "id": layer})
    for step in range(1, 101):
        for layer in ("a", "b"):
            chunks.append({"status": "Downloading", "id": layer,
                           "progressDetail": {"current": step * layer_size // 100,
                                              "total": layer_size}})  # fmt: skip
    for layer in ("a", "b"):
        chunks.append({"status": "Pull complete", "id": layer})
    client = _FakeClient(set(), [])
    client.api = _PullApi(chunks, client.images)  # type: ignore[assignment]
    seen: list[str] = []
    Containers(client).pull_image("pytorch/pytorch:2.9.1", seen.append)
    assert client.api.asked == ("pytorch/pytorch", "2.9.1")  # type: ignore[attr-defined]
    assert seen[0] == "Pulling pytorch/pytorch:2.9.1" and seen[-1] == "Pulled pytorch/pytorch:2.9.1"
    progress = seen[1:-1]
    assert 10 <= len(progress) <= 30  # hundreds of messages, tens of lines
    assert progress[-1].startswith("downloaded 2.00 of 2.00 GB (100%), 2 layer(s) done")


def test_a_failed_pull_is_one_sentence() -> None:
    client = _FakeClient(set(), [])
    client.api = _PullApi([{"error": "manifest unknown"}], client.images)  # type: ignore[assignment]
    with pytest.raises(ContainerError, match=r"^Pulling nope:1 failed: manifest unknown\.$"):
        Containers(client).pull_image("nope:1")
