"""Validate a command's ``--json`` output against the documented contract (docs/json.md)."""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator

from gpudesk.cli.json_schema import command_schema


def validate(command: str, document: Any) -> Any:
    """Raise jsonschema's ValidationError unless ``document`` follows ``command``'s schema."""
    Draft202012Validator(command_schema(command)).validate(document)
    return document


def validate_text(command: str, stdout: str) -> Any:
    """One JSON document (or, for stats, one per line), validated; returns what it parsed."""
    if command == "stats":
        return [validate(command, json.loads(line)) for line in stdout.splitlines() if line]
    return validate(command, json.loads(stdout))
