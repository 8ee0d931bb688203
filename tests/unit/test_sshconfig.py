from __future__ import annotations

import stat
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpudesk.core import sshconfig
from gpudesk.core.sshconfig import (
    ContainerEntry,
    SshConfigError,
    add_entry,
    ensure_include,
    entries,
    include_present,
    remove_entry,
)

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIxG8yfxFn0BGKhpBKPtKm3IRHp2NILtaqzoaZZUVg1j"


def entry(name: str = "box", **kw: object) -> ContainerEntry:
    values: dict[str, object] = {
        "name": name,
        "port": 40022,
        "user": "dev",
        "identity_file": "/home/me/.ssh/id_ed25519",
        "host_key": KEY,
        "jump": "me@gpu1.example:2222",
    }
    values.update(kw)
    return ContainerEntry(**values)  # type: ignore[arg-type]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_block_content(tmp_path: Path) -> None:
    add_entry(tmp_path, entry())
    text = (tmp_path / "ssh_config").read_text()
    assert "Host gpudesk-box\n" in text
    for line in (
        "HostName 127.0.0.1",
        "Port 40022",
        "User dev",
        "IdentityFile /home/me/.ssh/id_ed25519",
        "HostKeyAlias gpudesk-box",
        f"UserKnownHostsFile {tmp_path / 'known_hosts_containers'}",
        "StrictHostKeyChecking yes",
        "ProxyJump me@gpu1.example:2222",
    ):
        assert f"    {line}\n" in text
    assert "accept-new" not in text
    known = (tmp_path / "known_hosts_containers").read_text()
    assert known == f"gpudesk-box {KEY}\n"
    assert mode(tmp_path / "ssh_config") == 0o600
    assert mode(tmp_path / "known_hosts_containers") == 0o600


def test_local_host_has_no_jump(tmp_path: Path) -> None:
    add_entry(tmp_path, entry(jump=None))
    assert "ProxyJump" not in (tmp_path / "ssh_config").read_text()
    assert entries(tmp_path) == [entry(jump=None)]


def test_add_replace_remove(tmp_path: Path) -> None:
    add_entry(tmp_path, entry("a"))
    add_entry(tmp_path, entry("b", port=1))
    add_entry(tmp_path, entry("a", port=2))
    assert [(e.name, e.port) for e in entries(tmp_path)] == [("a", 2), ("b", 1)]
    assert remove_entry(tmp_path, "a")
    assert not remove_entry(tmp_path, "a")
    assert [e.name for e in entries(tmp_path)] == ["b"]
    assert "gpudesk-a" not in (tmp_path / "known_hosts_containers").read_text()
    assert entries(tmp_path / "nowhere") == []


def test_update_ports(tmp_path: Path) -> None:
    add_entry(tmp_path, entry("a", port=1))
    add_entry(tmp_path, entry("b", port=2))
    assert sshconfig.update_ports(tmp_path, {"a": 1, "b": 5, "gone": 9}) == ["b"]
    assert [(e.name, e.port) for e in entries(tmp_path)] == [("a", 1), ("b", 5)]
    assert sshconfig.update_ports(tmp_path, {"b": 5}) == []


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    home = tmp_path / "gd"
    for i in range(3):
        add_entry(home, entry(f"c{i}"))
    names = {p.name for p in home.iterdir()}
    assert names == {"ssh_config", "known_hosts_containers", ".ssh_config.lock", "cm"}


@pytest.mark.parametrize(
    "bad",
    [
        {"jump": "-oProxyCommand=evil"},
        {"jump": "me@host\n    ProxyCommand evil"},
        {"jump": "a b"},
        {"identity_file": 'x"y'},
        {"identity_file": "x\ny"},
        {"host_key": "not a key"},
        {"port": 0},
        {"user": "root"},
        {"name": "Bad Name"},
    ],
)
def test_unsafe_values_are_refused(tmp_path: Path, bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        add_entry(tmp_path, entry(**bad))
    assert not (tmp_path / "ssh_config").exists()


def test_paths_with_spaces_and_percent(tmp_path: Path) -> None:
    home = tmp_path / "my home%d"
    e = entry(identity_file="/keys/my key%h")
    add_entry(home, e)
    text = (home / "ssh_config").read_text()
    assert 'IdentityFile "/keys/my key%%h"' in text
    assert entries(home) == [e]


names = st.builds(
    lambda a, b: a + b,
    st.sampled_from(string.ascii_lowercase + string.digits),
    st.text(alphabet=string.ascii_lowercase + string.digits + "_.-", max_size=20),
)
entry_strategy = st.builds(
    ContainerEntry,
    name=names,
    port=st.integers(1, 65535),
    user=st.from_regex(r"[a-z_][a-z0-9_-]{0,10}", fullmatch=True).filter(lambda u: u != "root"),
    identity_file=st.text(
        alphabet=st.characters(blacklist_categories=["Cc", "Cs"], blacklist_characters='"'),
        min_size=1,
        max_size=30,
    ).filter(lambda s: s.strip() == s),
    host_key=st.sampled_from([KEY, "ecdsa-sha2-nistp256 AAAAE2VjZHNh+/="]),
    jump=st.one_of(
        st.none(),
        st.from_regex(r"[a-z][a-z0-9]{0,8}@[a-z0-9.]{1,12}(:[0-9]{1,5})?", fullmatch=True),
    ),
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(st.lists(entry_strategy, max_size=5, unique_by=lambda e: e.name))
def test_round_trip(tmp_path: Path, items: list[ContainerEntry]) -> None:
    home = tmp_path / "rt"
    for old in entries(home):
        remove_entry(home, old.name)
    for item in items:
        add_entry(home, item)
    assert entries(home) == sorted(items, key=lambda e: e.name)
    known = "".join(f"{e.alias} {e.host_key}\n" for e in items)
    assert sshconfig.parse(sshconfig.render(items, home), known) == sorted(
        items, key=lambda e: e.name
    )


def test_include_created_with_mode_0600(tmp_path: Path) -> None:
    user_config = tmp_path / "dotssh" / "config"
    ours = tmp_path / "gd" / "ssh_config"
    assert not include_present(user_config, ours)
    assert ensure_include(user_config, ours)
    assert user_config.read_text() == f"Include {ours}\n"
    assert mode(user_config) == 0o600
    assert include_present(user_config, ours)


def test_include_is_idempotent_and_keeps_the_rest(tmp_path: Path) -> None:
    user_config = tmp_path / "config"
    rest = "Host *\n    User someone\n\nHost work\n    HostName w.example\n"
    user_config.write_text(rest)
    user_config.chmod(0o644)
    ours = tmp_path / "gpudesk home" / "ssh_config"
    assert ensure_include(user_config, ours)
    first = user_config.read_text()
    assert first == f'Include "{ours}"\n\n' + rest
    assert mode(user_config) == 0o644
    for _ in range(3):
        assert not ensure_include(user_config, ours)
    assert user_config.read_text() == first


def test_include_moved_to_top_when_misplaced(tmp_path: Path) -> None:
    user_config = tmp_path / "config"
    ours = tmp_path / "ssh_config"
    user_config.write_text(f"Host work\n    HostName w\nInclude {ours}\n")
    assert not include_present(user_config, ours)
    assert ensure_include(user_config, ours)
    text = user_config.read_text()
    assert text.startswith(f"Include {ours}\n")
    assert text.count("Include") == 1
    assert "Host work\n    HostName w\n" in text


def test_include_through_a_symlink_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "ssh_config"
    real.parent.mkdir()
    real.write_text("Host a\n")
    link = tmp_path / "config"
    link.symlink_to(real)
    ours = tmp_path / "ours"
    assert ensure_include(link, ours)
    assert link.is_symlink()
    assert real.read_text() == f"Include {ours}\n\nHost a\n"


def test_include_quote_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SshConfigError):
        ensure_include(tmp_path / "config", tmp_path / 'a"b')


def test_blocks_share_connections_through_a_private_short_control_path() -> None:
    # A home as short as a user's ~/.config/gpudesk: pytest's tmp_path, longer still in
    # pytest-xdist's per-worker folders, can leave no room for a socket path.
    with tempfile.TemporaryDirectory(prefix="gd-") as short:
        home = Path(short) / "gd"
        add_entry(home, entry("box"))
        text = sshconfig.config_path(home).read_text()
        assert "ControlMaster auto" in text and "ControlPersist" in text
        path = Path(text.split("ControlPath ", 1)[1].split("\n", 1)[0])
        assert path.parent == home / "cm"
        assert mode(home / "cm") == 0o700
        # Room for OpenSSH's temporary 17-character suffix inside a 108-byte sun_path.
        assert len(str(path)) + 17 < 108
        # A new port (the container restarted) means a new socket, never the old master's.
        add_entry(home, entry("box", port=40023))
        moved = sshconfig.config_path(home).read_text()
        assert str(path) not in moved and "ControlPath" in moved


def test_no_connection_sharing_when_the_home_is_too_deep_for_a_socket(tmp_path: Path) -> None:
    home = tmp_path / ("d" * 90)
    add_entry(home, entry("box"))
    text = sshconfig.config_path(home).read_text()
    assert "Control" not in text


def test_a_gpu_host_reached_by_proxy_command_keeps_it_in_its_alias(tmp_path: Path) -> None:
    alias = sshconfig.HostAlias(
        name="gpu1", hostname="gpu1.internal", port=22, user="me", identity=None, jump=None,
        known_hosts=(), proxy_command="ssh -W %h:%p bastion",
    )  # fmt: skip
    block = sshconfig.render_host_block(alias, tmp_path)
    assert "    ProxyCommand ssh -W %h:%p bastion\n" in block
    assert "ProxyJump" not in block
    with pytest.raises(SshConfigError, match="spans lines"):
        sshconfig.render_host_block(
            sshconfig.HostAlias("x", "h", 22, None, None, None, (), "a\nHost *"), tmp_path
        )
