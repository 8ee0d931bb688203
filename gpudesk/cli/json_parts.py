"""The building blocks of the ``--json`` contract (gpudesk/cli/json_schema.py): JSON Schema
fields, objects and lists, and the run states. Plain data; importing this costs nothing."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

RUN_STATES = (
    "starting",
    "running",
    "succeeded",
    "failed",
    "stopped",
    "lost",
    "abandoned",
    "degraded",
)


def field(kind: str, doc: str, *, null: bool = False, **extra: Any) -> Schema:
    """A field of JSON type ``kind`` (or null: then never an empty string)."""
    if null and kind == "string":
        extra.setdefault("minLength", 1)
    return {"type": [kind, "null"] if null else kind, "description": doc, **extra}


def ref(name: str, doc: str, *, null: bool = False) -> Schema:
    target: Schema = {"$ref": f"#/$defs/{name}"}
    if null:
        return {"anyOf": [target, {"type": "null"}], "description": doc}
    return {**target, "description": doc}


def list_of(items: Schema, doc: str) -> Schema:
    return {"type": "array", "items": items, "description": doc}


def obj(doc: str, fields: dict[str, Schema]) -> Schema:
    # Every field is required and no other field is allowed: a field added to an output without
    # being documented here fails the contract test.
    return {
        "type": "object",
        "description": doc,
        "properties": fields,
        "required": list(fields),
        "additionalProperties": False,
    }
