import os
import shutil
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpudesk.core.config import (
    LOCALHOST,
    ConfigError,
    Host,
    Inventory,
    Paths,
    validate_name,
)
from gpudesk.core.destinations import host_from_destination, parse_destination
from gpudesk.core.ssh import expand_proxy_command


def test_gpudesk_home_moves_every_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUDESK_HOME", str(tmp_path / "gd"))
    paths = Paths.from_env()
    for p in (paths.hosts_file, paths.known_hosts, paths.ssh_config, paths.state_dir):
        assert tmp_path / "gd" in p.parents


def test_default_home_is_xdg_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GPUDESK_HOME")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert Paths.from_env().home == tmp_path / "xdg" / "gpudesk"


def test_empty_inventory_has_only_builtin_localhost() -> None:
    inv = Inventory.load()
    assert inv.names() == [LOCALHOST]
    assert inv.get(LOCALHOST).builtin


def test_add_writes_atomically_with_mode_0600_and_reloads() -> None:
    inv = Inventory.load()
    inv.add(Host(name="gpu1", hostname="10.0.0.5", user="alice", port=2222, identity="~/.ssh/k"))
    path = inv.paths.hosts_file
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = Inventory.load()
    assert again.get("gpu1") == Host(
        name="gpu1", hostname="10.0.0.5", user="alice", port=2222, identity="~/.ssh/k"
    )
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_duplicate_and_invalid_names_are_refused() -> None:
    inv = Inventory.load()
    inv.add(Host(name="gpu1", hostname="a"))
    with pytest.raises(ConfigError, match="already exists"):
        inv.add(Host(name="gpu1", hostname="b"))
    with pytest.raises(ConfigError, match="already exists"):
        inv.add(Host(name=LOCALHOST, hostname="b"))
    with pytest.raises(ConfigError, match="not valid"):
        inv.add(Host(name="bad name", hostname="b"))
    with pytest.raises(ConfigError, match="built in"):
        inv.remove(LOCALHOST)


@given(st.text(max_size=70))
def test_name_rule(name: str) -> None:
    ok = 1 <= len(name) <= 63 and all(c.isascii() and (c.isalnum() or c in "._-") for c in name)
    if ok:
        assert validate_name(name) == name
    else:
        with pytest.raises(ConfigError):
            validate_name(name)


def test_malformed_file_names_file_and_line_and_is_left_alone() -> None:
    paths = Paths.from_env()
    paths.home.mkdir(parents=True)
    text = '[hosts.gpu1]\nhostname = "a"\n\n[hosts.gpu2]\nhostname = \n'
    paths.hosts_file.write_text(text)
    with pytest.raises(ConfigError) as err:
        Inventory.load()
    assert str(paths.hosts_file) in str(err.value)
    assert "line 5" in str(err.value)
    assert paths.hosts_file.read_text() == text


def test_schema_errors_name_the_section_line() -> None:
    paths = Paths.from_env()
    paths.home.mkdir(parents=True)
    paths.hosts_file.write_text(
        '[hosts.ok]\nhostname = "a"\n\n[hosts.gpu2]\nhostname = "b"\nport = 0\n'
    )
    with pytest.raises(ConfigError, match=r"line 4: \[hosts.gpu2\] port"):
        Inventory.load()
    paths.hosts_file.write_text('[hosts.x]\nhostname = "a"\ncolour = "red"\n')
    with pytest.raises(ConfigError, match="unknown key"):
        Inventory.load()


@pytest.mark.parametrize(
    ("dest", "expected"),
    [
        ("ssh://alice@gpu.example:2222", ("alice", "gpu.example", 2222)),
        ("alice@10.1.2.3", ("alice", "10.1.2.3", 22)),
        ("ssh://[::1]:2200", (None, "::1", 2200)),
    ],
)
def test_parse_destination(dest: str, expected: tuple[str | None, str, int]) -> None:
    assert parse_destination(dest) == expected


@pytest.mark.parametrize("dest", ["ssh://", "http://x", "ssh://a:notaport", "ssh://h/path"])
def test_bad_destinations_are_refused(dest: str) -> None:
    with pytest.raises(ConfigError):
        parse_destination(dest)


def test_alias_from_ssh_config(isolated_home: Path) -> None:
    (isolated_home / ".ssh" / "config").write_text(
        "Host trainer\n  HostName 10.9.8.7\n  User bob\n  Port 2201\n"
        "  IdentityFile ~/.ssh/id_trainer\n  ProxyJump bastion\n\n"
        "Host bastion\n  HostName bastion.example\n"
    )
    host = host_from_destination("t1", "trainer")
    assert (host.hostname, host.user, host.port, host.jump) == ("10.9.8.7", "bob", 2201, "bastion")
    assert host.identity == str(isolated_home / ".ssh" / "id_trainer")
    override = host_from_destination("t2", "trainer", identity="/k", jump="other")
    assert (override.identity, override.jump) == ("/k", "other")


def test_unknown_alias_without_scheme_is_treated_as_a_hostname() -> None:
    host = host_from_destination("x", "gpu-box")
    assert (host.hostname, host.port, host.user) == ("gpu-box", 22, None)


def test_saving_keeps_the_users_comments_and_order() -> None:
    inv = Inventory.load()
    text = (
        "# my GPU boxes\n\n"
        "[hosts.zeta]  # the big one\n"
        'hostname = "10.0.0.9"  # behind the VPN\n'
        'user = "ana"\n\n'
        "# spare\n"
        "[hosts.alpha]\n"
        'hostname = "10.0.0.1"\n'
    )
    inv.paths.hosts_file.parent.mkdir(parents=True, exist_ok=True)
    inv.paths.hosts_file.write_text(text)
    inv = Inventory.load()
    inv.add(Host(name="new", hostname="10.0.0.5", port=2222))
    saved = inv.paths.hosts_file.read_text()
    # Everything the user wrote is still there, byte for byte, in their order.
    assert saved.startswith(text)
    assert saved.index("[hosts.zeta]") < saved.index("[hosts.alpha]") < saved.index("[hosts.new]")
    inv.remove("alpha")
    saved = inv.paths.hosts_file.read_text()
    assert "# my GPU boxes" in saved and "# behind the VPN" in saved and "the big one" in saved
    assert "alpha" not in saved
    assert Inventory.load().names() == [LOCALHOST, "zeta", "new"]
    assert Inventory.load().get("new").port == 2222


@pytest.mark.skipif(not shutil.which("ssh"), reason="needs the OpenSSH client")
def test_alias_from_an_included_file_and_a_wildcard_block(isolated_home: Path) -> None:
    ssh_dir = isolated_home / ".ssh"
    (ssh_dir / "conf.d").mkdir()
    (ssh_dir / "conf.d" / "work.conf").write_text(
        "Host trainer\n  HostName 10.9.8.7\n  Port 2201\n"
    )
    (ssh_dir / "config").write_text(
        f"Include {ssh_dir}/conf.d/*.conf\n\n"
        "Host gpu-*\n  User carol\n  ProxyCommand nc -w 5 %h %p\n\n"
        "Host *\n  IdentityFile ~/.ssh/id_work\n"
    )
    included = host_from_destination("t", "trainer")
    assert (included.hostname, included.port, included.user) == ("10.9.8.7", 2201, None)
    assert included.identity == str(ssh_dir / "id_work")
    assert included.source is not None and "'trainer'" in included.source
    wild = host_from_destination("g", "gpu-17")
    assert (wild.hostname, wild.user, wild.port) == ("gpu-17", "carol", 22)
    assert wild.proxy_command == "nc -w 5 %h %p"
    assert expand_proxy_command(wild) == "nc -w 5 gpu-17 22"
    # What was resolved from where is written next to the host, and the file still parses.
    inv = Inventory.load()
    inv.add(wild)
    saved = inv.paths.hosts_file.read_text()
    assert "from ~/.ssh/config alias 'gpu-17' (ssh -G)" in saved
    assert Inventory.load().get("g").proxy_command == "nc -w 5 %h %p"


def test_proxy_command_tokens() -> None:
    host = Host(name="h", hostname="box", port=2200, user="u", proxy_command="x %h:%p %r %% %z")
    assert expand_proxy_command(host) == "x box:2200 u % %z"


def test_without_openssh_aliases_fall_back_to_paramikos_reader(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (isolated_home / ".ssh" / "config").write_text(
        "Host trainer\n  HostName 10.9.8.7\n  User bob\n  Port 2201\n"
    )
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    host = host_from_destination("t1", "trainer")
    assert (host.hostname, host.user, host.port) == ("10.9.8.7", "bob", 2201)
    assert host.source is not None and "(paramiko)" in host.source


def test_gpudesk_home_and_its_folders_are_made_private_whatever_the_umask(
    tmp_path: Path,
) -> None:
    from gpudesk.core.config import atomic_write

    home = tmp_path / "a" / "gpudesk"
    old = os.umask(0o002)
    try:
        atomic_write(home / "state" / "forwards.json", "{}")
    finally:
        os.umask(old)
    for folder in (tmp_path / "a", home, home / "state"):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
    assert (home / "state" / "forwards.json").stat().st_mode & 0o777 == 0o600
