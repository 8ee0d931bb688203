#!/usr/bin/env python3
"""gpudesk's integration test bed: a real OpenSSH sshd and a real Docker engine on loopback.

    scripts/testbed.py up       install what is missing, start dockerd and sshd, build base images
    scripts/testbed.py status   print the running test bed as JSON
    scripts/testbed.py down     stop what `up` started

Needs root on a Debian-like machine (it runs apt-get, dockerd and sshd). Runtime files live in
``$GPUDESK_TESTBED_RUN`` (default /tmp/gpudesk-testbed); the Docker data root and the base image
live in ``$GPUDESK_TESTBED_CACHE`` (default ~/.cache/gpudesk-testbed) so repeat runs are fast.
The pytest fixtures in tests/integration import this module and use the same functions.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

BED_LOCK = "/tmp/gpudesk-bed.lock"
RUN_DIR = Path(os.environ.get("GPUDESK_TESTBED_RUN", "/tmp/gpudesk-testbed"))
CACHE_DIR = Path(
    os.environ.get("GPUDESK_TESTBED_CACHE", Path.home() / ".cache" / "gpudesk-testbed")
)
BASE_IMAGE = "gpudesk-testbase:bookworm"
# The CPU build of torch, for the operator-side venv (the scripts' tests) and the training-run
# tests' container image. A bare `torch` from PyPI is the multi-GB CUDA build.
TORCH_SPEC = "torch==2.13.0+cpu"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PACKAGES = {
    "/usr/sbin/sshd": "openssh-server",
    "/usr/sbin/dockerd": "docker.io",
    "/usr/sbin/debootstrap": "debootstrap",
    "/usr/bin/ssh": "openssh-client",
    # The shells whose completion scripts tests/unit/test_completion.py runs (bash is there).
    "/usr/bin/zsh": "zsh",
    "/usr/bin/fish": "fish",
    # The dev-image tests copy with the real rsync, both ways.
    "/usr/bin/rsync": "rsync",
    # The exporter's test scrapes `gpudesk exporter` with a real Prometheus server.
    "/usr/bin/prometheus": "prometheus",
}
BASE_DEBS = (
    "python3,python3-venv,python3-pip,openssh-server,ca-certificates,procps,sudo,iproute2,curl"
)


class TestbedError(RuntimeError):
    """The test bed could not be started; the message says why."""


def log(msg: str) -> None:
    print(f"testbed: {msg}", file=sys.stderr, flush=True)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1) -> None:
    # Polling is the only way to notice a daemon's socket appear; bounded by `timeout`.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TestbedError(f"{what} did not come up within {timeout:.0f}s")


def can_run() -> str | None:
    """Why the test bed cannot run here, or None if it can."""
    if sys.platform != "linux":
        return "the test bed needs Linux"
    if os.geteuid() != 0:
        return "the test bed needs root (it starts dockerd and sshd); run the tests as root"
    if not Path("/usr/bin/apt-get").exists() and not all(Path(p).exists() for p in PACKAGES):
        return "the test bed needs apt-get or preinstalled openssh-server, docker.io, debootstrap"
    return None


def ensure_packages() -> None:
    missing = sorted({pkg for path, pkg in PACKAGES.items() if not Path(path).exists()})
    if not missing:
        return
    log(f"installing {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


def pip_cpu_torch(python: str, verb: str, *extra: str) -> None:
    """``pip install`` (or ``download``) the CPU build of torch.

    First from the indexes pip is configured with (this project's machines keep the CPU wheel
    on disk), else with PyTorch's CPU wheel index added.
    """
    cmd = [python, "-m", "pip", verb, "-q", "--disable-pip-version-check", TORCH_SPEC, *extra]
    if subprocess.run(cmd, capture_output=True, text=True).returncode == 0:
        return
    log(f"{TORCH_SPEC} is not on the configured indexes; trying {TORCH_CPU_INDEX}")
    subprocess.run([*cmd, "--extra-index-url", TORCH_CPU_INDEX], check=True)


def cache_size() -> str:
    """The test bed cache's size on disk, as du prints it."""
    done = subprocess.run(["du", "-sh", str(CACHE_DIR)], capture_output=True, text=True)
    return done.stdout.split("\t")[0] if done.returncode == 0 else "0"


# ---------------------------------------------------------------------------------- docker


@dataclass
class Docker:
    sock: Path
    pid: int

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    def cli(self, *args: str, **kw) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "-H", self.host, *args], text=True, capture_output=True, **kw
        )


def _docker_alive(sock: Path) -> bool:
    if not sock.exists():
        return False
    r = subprocess.run(
        ["docker", "-H", f"unix://{sock}", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return r.returncode == 0


def start_docker() -> Docker:
    run = RUN_DIR / "docker"
    run.mkdir(parents=True, exist_ok=True)
    sock, pidfile = run / "docker.sock", run / "docker.pid"
    if _docker_alive(sock):
        return Docker(sock, int(pidfile.read_text()) if pidfile.exists() else 0)
    # A daemon that died with its session (the previous run's) leaves its pid file and socket;
    # one that hangs is stopped first.
    stale = _read_pid(pidfile)
    if stale and _pid_alive(stale) and "dockerd" in _cmdline(stale):
        _kill(stale)
    pidfile.unlink(missing_ok=True)
    sock.unlink(missing_ok=True)
    data = CACHE_DIR / "docker-data"
    data.mkdir(parents=True, exist_ok=True)
    logf = open(run / "dockerd.log", "ab")  # noqa: SIM115 - handed to the daemon
    proc = subprocess.Popen(
        [
            "dockerd",
            "--data-root", str(data),
            "--exec-root", str(run / "exec"),
            "-H", f"unix://{sock}",
            "--pidfile", str(pidfile),
            "--storage-driver=overlay2",
        ],
        stdout=logf,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip

    def up() -> bool:
        if proc.poll() is not None:
            tail = (run / "dockerd.log").read_text(errors="replace")[-2000:]
            raise TestbedError(f"dockerd exited with {proc.returncode}:\n{tail}")
        return _docker_alive(sock)

    wait_for(up, 60, "dockerd")
    return Docker(sock, proc.pid)


def _debootstrap(rootfs: Path) -> None:
    mirror = os.environ.get("GPUDESK_TESTBED_MIRROR", "http://deb.debian.org/debian")
    tmp = rootfs.with_suffix(".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"debootstrap bookworm into {tmp} (about a minute)")
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={BASE_DEBS}",
            "bookworm",
            str(tmp),
            mirror,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    # Containers reach package registries only when they trust this machine's CA bundle.
    if CA_BUNDLE.exists():
        shutil.copy(CA_BUNDLE, tmp / "usr/local/share/gpudesk-ca.crt")
    (tmp / "var/cache/apt/archives").mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["rm", "-rf", str(tmp / "var/cache/apt/archives"), str(tmp / "var/lib/apt/lists")]
    )
    tmp.rename(rootfs)


def ensure_base_image(docker: Docker) -> str:
    if docker.cli("image", "inspect", BASE_IMAGE).returncode == 0:
        return BASE_IMAGE
    rootfs = CACHE_DIR / "rootfs-bookworm"
    if not (rootfs / "usr/bin/python3").exists():
        shutil.rmtree(rootfs, ignore_errors=True)
        _debootstrap(rootfs)
    log(f"importing {BASE_IMAGE}")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    changes = [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV PIP_CERT=/usr/local/share/gpudesk-ca.crt",
        "ENV REQUESTS_CA_BUNDLE=/usr/local/share/gpudesk-ca.crt",
        "ENV PIP_BREAK_SYSTEM_PACKAGES=1",
        'CMD ["/bin/bash"]',
    ]
    args = ["docker", "-H", docker.host, "import"]
    for change in changes:
        args += ["--change", change]
    r = subprocess.run([*args, "-", BASE_IMAGE], stdin=tar.stdout, capture_output=True, text=True)
    tar.wait()
    if r.returncode != 0:
        raise TestbedError(f"docker import failed: {r.stderr.strip()}")
    return BASE_IMAGE


# ---------------------------------------------------------------------------------- sshd


@dataclass
class Sshd:
    """One OpenSSH server on a loopback address (127.0.0.1 unless told) with key-only auth for
    root; another address (127.0.0.2) makes a second "host" in front of the same dockerd."""

    dir: Path
    port: int
    docker_host: str
    pid: int = 0
    address: str = "127.0.0.1"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def client_key(self) -> Path:
        return self.dir / "client_ed25519"

    @property
    def config(self) -> Path:
        return self.dir / "sshd_config"

    def prepare(self, regenerate_host_key: bool = False) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        if regenerate_host_key or not self.host_key.exists():
            for p in (self.host_key, self.host_key.with_suffix(".pub")):
                p.unlink(missing_ok=True)
            _keygen(self.host_key)
        if not self.client_key.exists():
            _keygen(self.client_key)
        authorized = self.dir / "authorized_keys"
        authorized.write_text(self.client_key.with_suffix(".pub").read_text())
        os.chmod(authorized, 0o600)
        Path("/run/sshd").mkdir(exist_ok=True)
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    f"ListenAddress {self.address}",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "StrictModes no",
                    "AllowTcpForwarding yes",
                    "AllowStreamLocalForwarding yes",
                    "PermitTunnel no",
                    "X11Forwarding no",
                    "PrintMotd no",
                    "MaxSessions 10",
                    "MaxStartups 100:30:200",
                    f"SetEnv DOCKER_HOST={self.docker_host}",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )

    def start(self) -> None:
        logf = self.dir / "sshd.log"
        proc = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(self.config)],
            stdout=open(logf, "ab"),  # noqa: SIM115 - handed to the daemon
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid = proc.pid

        def listening() -> bool:
            if proc.poll() is not None:
                raise TestbedError(f"sshd exited: {logf.read_text(errors='replace')[-1500:]}")
            try:
                with socket.create_connection((self.address, self.port), timeout=1) as s:
                    return s.recv(4).startswith(b"SSH-")
            except OSError:
                return False

        wait_for(listening, 20, f"sshd on port {self.port}")
        (self.dir / "sshd.pid.live").write_text(str(self.pid))

    def stop(self) -> None:
        """Stop sshd and drop every session it serves, as a host going down would."""
        pid = self.pid or _read_pid(self.dir / "sshd.pid.live")
        if pid:
            subprocess.run(["pkill", "-KILL", "-P", str(pid)], check=False)
            _kill(pid)
        self.pid = 0

    def host_public_key(self) -> str:
        return self.host_key.with_suffix(".pub").read_text().strip()

    def known_hosts_line(self) -> str:
        keytype, key = self.host_public_key().split()[:2]
        return f"[{self.address}]:{self.port} {keytype} {key}"


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gpudesk-testbed", "-f", str(path)],
        check=True,
    )


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return 0


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        wait_for(lambda: not _pid_alive(pid), 10, f"process {pid} to exit")
    except TestbedError:
        os.kill(pid, signal.SIGKILL)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _pid_alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and ") Z" not in stat.read_text()


def new_sshd(
    name: str, docker_host: str, port: int | None = None, address: str = "127.0.0.1"
) -> Sshd:
    """A fresh, started sshd in its own folder under the run dir, listening on ``address``."""
    sshd = Sshd(RUN_DIR / "sshd" / name, port or free_port(address), docker_host, address=address)
    sshd.prepare()
    sshd.start()
    return sshd


# ---------------------------------------------------------------------------------- up/down


@dataclass
class Testbed:
    docker_host: str
    docker_sock: str
    base_image: str
    ssh_port: int
    ssh_user: str
    ssh_client_key: str
    ssh_known_hosts_line: str
    run_dir: str

    @classmethod
    def load(cls) -> Testbed | None:
        try:
            return cls(**json.loads((RUN_DIR / "testbed.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None


def up() -> Testbed:
    why = can_run()
    if why:
        raise TestbedError(why)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    ensure_packages()
    docker = start_docker()
    base = ensure_base_image(docker)
    main_dir = RUN_DIR / "sshd" / "main"
    port = _read_pid(main_dir / "port")
    sshd = Sshd(main_dir, port or free_port(), docker.host)
    if not (port and _sshd_alive(sshd)):
        sshd.stop()
        sshd.port = free_port()
        sshd.prepare()
        sshd.start()
        (main_dir / "port").write_text(str(sshd.port))
    bed = Testbed(
        docker_host=docker.host,
        docker_sock=str(docker.sock),
        base_image=base,
        ssh_port=sshd.port,
        ssh_user="root",
        ssh_client_key=str(sshd.client_key),
        ssh_known_hosts_line=sshd.known_hosts_line(),
        run_dir=str(RUN_DIR),
    )
    (RUN_DIR / "testbed.json").write_text(json.dumps(asdict(bed), indent=2))
    return bed


def _sshd_alive(sshd: Sshd) -> bool:
    pid = _read_pid(sshd.dir / "sshd.pid.live")
    if not pid or not _pid_alive(pid):
        return False
    try:
        with socket.create_connection(("127.0.0.1", sshd.port), timeout=1) as s:
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def down() -> None:
    for live in (RUN_DIR / "sshd").glob("*/sshd.pid.live"):
        _kill(_read_pid(live))
        live.unlink(missing_ok=True)
    pid = _read_pid(RUN_DIR / "docker" / "docker.pid")
    if pid:
        _kill(pid)
    (RUN_DIR / "testbed.json").unlink(missing_ok=True)


@contextlib.contextmanager
def bed_lock() -> Iterator[None]:
    """The shared bed's lock, which a test session (tests/integration/conftest.py) and the
    benches hold while they use it: `up` must not start a second dockerd while a test has
    stopped the first one to restart it, and `down` must not stop it under a test."""
    with open(BED_LOCK, "a") as lock:
        if not _try_lock(lock.fileno()):
            log(f"waiting for {BED_LOCK}: another session is using the test bed")
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        yield


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "status", "torch", "cache-size"])
    args = parser.parse_args(argv)
    try:
        if args.action == "up":
            started = time.monotonic()
            with bed_lock():
                bed = up()
            log(f"ready in {time.monotonic() - started:.1f}s")
            print(json.dumps(asdict(bed), indent=2))
        elif args.action == "down":
            with bed_lock():
                down()
        elif args.action == "torch":
            pip_cpu_torch(sys.executable, "install")
        elif args.action == "cache-size":
            print(f"{cache_size()} in {CACHE_DIR}")
        else:
            bed = Testbed.load()
            if bed is None:
                print("test bed is not running", file=sys.stderr)
                return 1
            print(json.dumps(asdict(bed), indent=2))
    except (TestbedError, subprocess.CalledProcessError) as exc:
        print(f"testbed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
