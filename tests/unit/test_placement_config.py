"""What placement reads besides samples: the per-host GPU simulation spec, the agent's busy
GPUs, and launch templates in hosts.toml (which `hosts add/rm` keep with their comments)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gpudesk.cli.main import main
from gpudesk.core.config import ConfigError, Host, Inventory, Paths
from gpudesk.core.flavours import DEFAULT_BASE_IMAGE, Flavour
from gpudesk.core.gpu.sample import free_gpu_indices, parse_sample
from gpudesk.core.gpu.simulate import SimSpec, parse_simulation
from gpudesk.core.gpu.stream import agent_command, agent_source
from gpudesk.core.templates import Template, load_template, parse_templates
from gpudesk.payload import gpu_agent as agent


def test_simulation_spec() -> None:
    sim = parse_simulation("8;gpu1=8,busy=0-7;gpu2=4,busy=")
    assert sim.for_host("other") == SimSpec(8)
    assert sim.for_host("gpu1") == SimSpec(8, "0-7")
    assert sim.for_host("gpu2") == SimSpec(4, "")
    assert sim.most == 8
    only = parse_simulation(";gpu2=4")
    assert only.for_host("gpu1") is None and only.for_host("gpu2") == SimSpec(4) and only.most == 4
    assert parse_simulation("").most is None
    for bad in ("x", "8,idle=1", "8;=4", "8;gpu1", "8,busy=a-b", "8;gpu1=x"):
        with pytest.raises(ConfigError, match="GPUDESK_SIMULATE_GPUS"):
            parse_simulation(bad)


def test_agent_command_carries_the_busy_set() -> None:
    assert agent_command(1.0, SimSpec(8, "0-5")).endswith("--simulate 8 --simulate-busy 0-5")
    assert agent_command(1.0, 8).endswith("--simulate 8")


def test_agent_busy_ranges() -> None:
    assert agent.parse_ranges("0-2,5") == {0, 1, 2, 5}
    assert agent.parse_ranges("") == set()
    assert agent.parse_ranges(None) is None
    with pytest.raises(ValueError):
        agent.parse_ranges("3-1")


def one_sample(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-", "--once", *args],
        input=agent_source(),
        capture_output=True,
        check=True,
        env={**os.environ, "PYTHONPATH": ""},
    )
    return out.stdout.decode().strip().splitlines()[-1]


def test_simulated_agent_makes_exactly_the_busy_gpus_busy() -> None:
    sample = parse_sample(one_sample("--simulate", "8", "--simulate-busy", "0-5"))
    assert sample.simulated
    assert free_gpu_indices(sample) == [6, 7]
    assert sorted({p.gpu for p in sample.processes}) == [0, 1, 2, 3, 4, 5]
    demo = parse_sample(one_sample("--simulate", "8"))  # the demo pattern is unchanged
    assert free_gpu_indices(demo) == [0, 7]


TEMPLATES = """\
# my fleet
[hosts.gpu1]
hostname = "10.0.0.5"  # the box under the desk

# containers placement launches
[templates.train]
flavour = "jupyter"
base_image = "nvcr.io/nvidia/pytorch:25.01-py3"  # NGC
memory = "64g"
workspace = "~/gpudesk/{name}"
sudo = true
"""


def test_templates_parse_with_a_built_in_default() -> None:
    found = parse_templates(TEMPLATES, Path("hosts.toml"))
    assert found["default"] == Template("default", Flavour.SSH, DEFAULT_BASE_IMAGE)
    train = found["train"]
    assert (train.flavour, train.memory, train.sudo) == (Flavour.JUPYTER, "64g", True)
    assert train.container_name((2, 3)) == "train-gpu2-3"
    assert train.workspace_for("train-gpu2-3") == "~/gpudesk/train-gpu2-3"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('[templates.t]\nflavor = "ssh"\n', "unknown key(s) flavor"),
        ('[templates.t]\nflavour = "vnc"\n', "flavour must be ssh or jupyter"),
        ("[templates.t]\nsudo = 1\n", "sudo must be true or false"),
        ("[templates.t]\nmemory = 64\n", "memory must be a string"),
        ('templates = "x"\n', "must be a table"),
    ],
)
def test_bad_templates_are_one_sentence(body: str, words: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(words)):
        parse_templates(body, Path("hosts.toml"))


def test_hosts_add_and_rm_keep_templates_and_comments() -> None:
    paths = Paths.from_env()
    paths.home.mkdir(parents=True, exist_ok=True)
    paths.hosts_file.write_text(TEMPLATES)
    inventory = Inventory.load()
    inventory.add(Host(name="gpu2", hostname="10.0.0.6", user="bob"))
    inventory.remove("gpu1")
    text = paths.hosts_file.read_text()
    assert "# containers placement launches\n[templates.train]" in text
    assert 'base_image = "nvcr.io/nvidia/pytorch:25.01-py3"  # NGC' in text
    assert load_template("train").memory == "64g"
    with pytest.raises(ConfigError, match="No template named 'nope'"):
        load_template("nope")


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["submit", "textcls"], "Pass --host H --container C, or --gpus N"),
        (["submit", "--host", "gpu1", "textcls"], "Pass --host H --container C, or --gpus N"),
        (["submit", "--gpus", "0", "textcls"], "--gpus must be a number of GPUs from 1 to 64."),
        (["submit", "--gpus", "1", "--template", "nope", "textcls"], "No template named 'nope'"),
        (["submit", "--host", "h", "--container", "c", "--template", "t", "x"], "only applies"),
    ],
)
def test_submit_refusals_need_no_host(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1


def test_a_comment_under_a_hosts_keys_stays_with_that_host() -> None:
    paths = Paths.from_env()
    paths.home.mkdir(parents=True, exist_ok=True)
    paths.hosts_file.write_text(
        '[hosts.gpu1]\nhostname = "a"\n# proxy_command = "x"\n\n# templates\n[templates.t]\n'
    )
    Inventory.load().add(Host(name="gpu2", hostname="b", user="bob"))
    assert paths.hosts_file.read_text() == (
        '[hosts.gpu1]\nhostname = "a"\n# proxy_command = "x"\n\n[hosts.gpu2]\nhostname = "b"\n'
        'user = "bob"\n\n# templates\n[templates.t]\n'
    )


def test_first_samples_reads_one_sample_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """The built-in localhost, simulated by its own part of the spec: one sample, then done."""
    from gpudesk.core.fleet import Fleet
    from gpudesk.core.runs.placement import first_samples

    monkeypatch.setenv("GPUDESK_SIMULATE_GPUS", ";localhost=4,busy=0,2")
    fleet = Fleet.build(Inventory.load())
    try:
        samples, problems = first_samples(fleet, ["localhost"], timeout=60)
    finally:
        fleet.close()
    assert problems == {}
    ((name, sample),) = samples
    assert name == "localhost" and sample is not None and sample.simulated
    assert free_gpu_indices(sample) == [1, 3]
