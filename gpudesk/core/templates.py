"""Launch templates: named container settings in hosts.toml, for containers placement launches.

```toml
[templates.train]
flavour = "ssh"                          # ssh (default) or jupyter
base_image = "pytorch/pytorch:2.9.1-cuda12.8-cudnn9-devel"  # optional
image = "myorg/train:1"                  # optional: use this image instead of building one
memory = "64g"                           # optional memory limit
workspace = "~/gpudesk/{name}"           # optional; {name} is the container's name
sudo = false                             # optional
key = "~/.ssh/id_ed25519"                # optional: the key the SSH flavour lets in
```

``default`` is built in (an SSH container on the default base image) and a
``[templates.default]`` table replaces it. Templates are read with tomllib like the hosts;
``gpudesk hosts add/rm`` edit the file in place, so templates and their comments stay.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpudesk.core.config import ConfigError, Paths, check_table, validate_name
from gpudesk.core.flavours import DEFAULT_BASE_IMAGE, Flavour

DEFAULT_TEMPLATE = "default"
_KEYS = {"flavour", "base_image", "image", "memory", "workspace", "sudo", "key"}


@dataclass(frozen=True)
class Template:
    name: str
    flavour: Flavour = Flavour.SSH
    base_image: str = DEFAULT_BASE_IMAGE
    image: str | None = None
    memory: str | None = None
    workspace: str | None = None  # may hold {name}
    sudo: bool = False
    key: str | None = None

    def container_name(self, gpus: tuple[int, ...]) -> str:
        """``<template>-gpu<indices>``, e.g. ``train-gpu2-3``."""
        return validate_name(f"{self.name}-gpu{'-'.join(str(i) for i in gpus)}")

    def workspace_for(self, container: str) -> str | None:
        return self.workspace.replace("{name}", container) if self.workspace else None


def _template(name: str, table: Any, where: str) -> Template:
    table = check_table(f"templates.{name}", table, _KEYS, where)
    for key in _KEYS - {"sudo"}:
        if key in table and not isinstance(table[key], str):
            raise ConfigError(f"{where}: [templates.{name}] {key} must be a string.")
    if "sudo" in table and not isinstance(table["sudo"], bool):
        raise ConfigError(f"{where}: [templates.{name}] sudo must be true or false.")
    try:
        flavour = Flavour(table.get("flavour", Flavour.SSH.value))
    except ValueError:
        raise ConfigError(f"{where}: [templates.{name}] flavour must be ssh or jupyter.") from None
    return Template(
        name=name,
        flavour=flavour,
        base_image=table.get("base_image", DEFAULT_BASE_IMAGE),
        image=table.get("image"),
        memory=table.get("memory"),
        workspace=table.get("workspace"),
        sudo=bool(table.get("sudo", False)),
        key=table.get("key"),
    )


def parse_templates(text: str, source: Path) -> dict[str, Template]:
    """The templates in a hosts.toml's text, the built-in ``default`` included."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: {exc}. Fix the file; gpudesk left it unchanged.") from exc
    table = doc.get("templates", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: 'templates' must be a table of [templates.NAME] sections.")
    found = {DEFAULT_TEMPLATE: Template(DEFAULT_TEMPLATE)}
    for name, entry in table.items():
        try:
            validate_name(name)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
        found[name] = _template(name, entry, str(source))
    return found


def load_template(name: str, paths: Paths | None = None) -> Template:
    paths = paths or Paths.from_env()
    path = paths.hosts_file
    text = path.read_text() if path.exists() else ""
    templates = parse_templates(text, path)
    if name not in templates:
        known = ", ".join(sorted(templates))
        raise ConfigError(f"No template named {name!r} in {path}; known templates are: {known}.")
    return templates[name]
