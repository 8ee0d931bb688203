"""The ``--json`` contract: one JSON Schema per command, defined once, rendered to docs/json.md.

The rules every document follows are :data:`RULES`.

Plain data and the Markdown renderer only: importing this costs nothing, so the CLI's
``--help`` stays light. ``tests/unit/test_json_contract.py`` checks docs/json.md against
:func:`render_markdown` and validates each command's real output against :data:`COMMANDS`.
"""

from __future__ import annotations

from gpudesk.cli.json_parts import RUN_STATES, Schema
from gpudesk.cli.json_parts import field as _t
from gpudesk.cli.json_parts import list_of as _list
from gpudesk.cli.json_parts import obj as _obj
from gpudesk.cli.json_parts import ref as _ref

SCHEMA_VERSION = 1

RULES = """\
- Every document (and every line of `stats --json`) carries `"schema": 1`, this contract's
  version; a change that removes or retypes a field raises it.
- Times are Unix epoch seconds (UTC) as numbers; durations are seconds; sizes are bytes.
- Every field is always present: an unknown value is `null`, an empty collection `[]`, never
  `""`.
- A command that asks several hosts lists the hosts that could not answer in `errors` (for
  `stats`, an error line), next to what the other hosts said, and exits 1.
"""

_NODE_STATES = [*RUN_STATES[:-1], "unknown"]

_SCHEMA_FIELD = {"schema": _t("integer", "version of this contract", const=SCHEMA_VERSION)}
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}

CONTAINER_FIELDS: dict[str, Schema] = {
    "host": _t("string", "gpudesk host name"),
    "id": _t("string", "Docker container id"),
    "name": _t("string", "container name"),
    "flavour": _t(
        "string", "`ssh` or `jupyter`; null for containers gpudesk did not make", null=True
    ),
    "image": _t("string", "image reference"),
    "state": _t("string", "Docker's state: created, running, paused, restarting, exited, dead"),
    "status": _t("string", "the state for people, e.g. `exited (1)`"),
    "created": _t("number", "creation time, epoch seconds", null=True),
    "started_at": _t("number", "last start, epoch seconds", null=True),
    "uptime_s": _t("number", "seconds since the last start; null unless running", null=True),
    "gpus": _t(
        "string", "GPU request: `all`, a count or indices like `0,2`; null: none", null=True
    ),
    "ports": _list(_ref("Port", "a published port"), "published ports"),
    "workspace": _t("string", "host folder mounted at /workspace", null=True),
    "labels": {**_STRINGS, "description": "the container's Docker labels"},
    "is_gpudesk": _t("boolean", "made by gpudesk (has io.gpudesk.* labels)"),
    "user": _t("string", "the container's login user", null=True),
    "sudo": _t("boolean", "gpudesk gave the login user passwordless sudo (`--sudo`)"),
    "network": _t("string", "host: on the host's network (`launch --network host`)", null=True),
}

DEFS: dict[str, Schema] = {
    "HostError": _obj(
        "a host that could not answer",
        {
            "host": _t("string", "gpudesk host name"),
            "error": _t("string", "one sentence: what went wrong and what to do"),
        },
    ),
    "Port": _obj(
        "a port published on the host",
        {
            "host_ip": _t("string", "host address it listens on (gpudesk: 127.0.0.1)"),
            "host_port": _t("integer", "port on the host"),
            "container_port": _t("string", "as Docker names it, e.g. `22/tcp`"),
        },
    ),
    "Container": _obj("a container", CONTAINER_FIELDS),
    "IdleContainer": _obj(
        "a container whose GPUs stayed idle while watched (any container, gpudesk's or not)",
        {
            "host": _t("string", "gpudesk host name"),
            "name": _t("string", "container name (its id when the name is unknown)"),
            "id": _t("string", "container id", null=True),
            "gpus": _list({"type": "integer"}, "GPU indices its processes run on"),
            "gpu_memory": _t("integer", "bytes of GPU memory its processes hold", null=True),
            "idle_s": _t("number", "seconds its GPUs were seen under `below` % (at least)"),
        },
    ),
    "Reach": _obj(
        "how to get into a launched container",
        {
            "name": _t("string", "container name"),
            "flavour": _t("string", "`ssh` or `jupyter`"),
            "ssh_alias": _t("string", "`ssh` this alias (SSH flavour)", null=True),
            "ssh_config": _t("string", "the ssh config file that defines it", null=True),
            "url": _t("string", "the same as url_here (kept for older scripts)", null=True),
            "url_here": _t(
                "string",
                "Jupyter URL with its token on this machine's forwarded local port (answers while "
                "forward_command runs, or the TUI forwards it)",
                null=True,
            ),
            "url_on_host": _t(
                "string",
                "the same URL on the GPU host's loopback (reachable only there)",
                null=True,
            ),
            "forward_command": _t(
                "string", "the command that forwards url_here from a remote host", null=True
            ),
        },
    ),
    "Run": _obj(
        "a training run, rebuilt from its folder",
        {
            "name": _t("string", "run name"),
            "host": _t("string", "gpudesk host name"),
            "container": _t("string", "container it runs in"),
            "script": _t("string", "bundled script name or path in the container"),
            "state": _t(
                "string",
                "starting, running, succeeded, failed, stopped, lost, abandoned (its submit"
                " was cut off before it started) or degraded (a multi-node run with a node lost"
                " or failed while others run)",
                enum=list(RUN_STATES),
            ),
            "exit_code": _t("integer", "exit status once ended", null=True),
            "step": _t("integer", "last logged optimizer step", null=True),
            "total_steps": _t("integer", "steps the run will take", null=True),
            "loss": _t("number", "last training loss", null=True),
            "tokens_per_s": _t("number", "last training throughput, tokens per second", null=True),
            "elapsed_s": _t("number", "seconds since start (until the end once ended)", null=True),
            "eta_s": _t("number", "estimated seconds left; null once ended", null=True),
            "started": _t("number", "start time, epoch seconds", null=True),
            "ended": _t("number", "end time, epoch seconds", null=True),
            "command": _list({"type": "string"}, "argv of the training process"),
            "args": _list({"type": "string"}, "the script's arguments as submitted"),
            "nproc": _t("integer", "processes (torchrun when > 1)"),
            "pid": _t("integer", "process group of the run inside the container", null=True),
            "dir": _t("string", "run folder on the host"),
            "last_train": _t("object", "last `train` record of metrics.jsonl", null=True),
            "last_eval": _t("object", "last `eval` record of metrics.jsonl", null=True),
            "error": _t(
                "string", "the script's error, why it was abandoned, or its broken node", null=True
            ),
            "nnodes": _t("integer", "nodes (hosts) the run spans; 1 for a one-host run"),
            "nodes": _list(
                _ref("Node", "a node"), "a multi-node run's nodes by rank; [] for one host"
            ),
        },
    ),
    "Node": _obj(
        "one node (host) of a multi-node run",
        {
            "node_rank": _t("integer", "the node's --node-rank: its place in --host"),
            "host": _t("string", "gpudesk host name"),
            "container": _t("string", "container it runs in"),
            "state": _t("string", "its run state; unknown: host not asked", enum=_NODE_STATES),
            "exit_code": _t("integer", "the node's exit status once ended", null=True),
            "pid": _t("integer", "process group of the node's torchrun", null=True),
            "dir": _t("string", "the node's run folder on its host", null=True),
            "reason": _t("string", "why the node is lost or failed", null=True),
        },
    ),
    "Host": _obj(
        "a host in hosts.toml (or the built-in localhost)",
        {
            "name": _t("string", "gpudesk host name"),
            "kind": _t("string", "`ssh` or `local`", enum=["ssh", "local"]),
            "hostname": _t(
                "string", "address or name to connect to; null for localhost", null=True
            ),
            "user": _t("string", "login user", null=True),
            "port": _t("integer", "SSH port; null for localhost", null=True),
            "identity": _t("string", "private key file", null=True),
            "jump": _t("string", "ProxyJump host", null=True),
            "builtin": _t("boolean", "the built-in localhost"),
        },
    ),
    "HostCheck": _obj(
        "one host after a connection attempt",
        {
            "name": _t("string", "gpudesk host name"),
            "destination": _t("string", "user@host:port, or `local`"),
            "state": _t(
                "string",
                "connection state: connected, auth-failed, unreachable, host-key-unknown, "
                "host-key-changed, ...",
            ),
            "latency_ms": _t("number", "SSH round trip in milliseconds", null=True),
            "docker": _t("string", "Docker engine version", null=True),
            "gpu_runtime": _t("boolean", "Docker has the NVIDIA runtime", null=True),
            "error": _t("string", "why the connection failed", null=True),
            "docker_error": _t("string", "why Docker could not be asked", null=True),
            "checks": {
                "type": ["array", "null"],
                "items": {"$ref": "#/$defs/HostCheckItem"},
                "description": "what a GPU host needs, item by item; null if not connected",
            },
            "checks_error": _t("string", "why the checklist could not be run", null=True),
        },
    ),
    "HostCheckItem": _obj(
        "one item of a GPU host's checklist",
        {
            "key": _t(
                "string", "driver, nvidia_runtime, python3, disk or docker_access (the item)"
            ),
            "ok": _t("boolean", "whether the host has it"),
            "detail": _t("string", "what was found"),
            "fix": _t("string", "how to fix it when missing", null=True),
        },
    ),
    "Gpu": _obj(
        "one GPU; fields it does not support are null",
        {
            "index": _t("integer", "NVML index"),
            "uuid": _t("string", "GPU UUID", null=True),
            "name": _t("string", "model name", null=True),
            "util_gpu": _t("number", "GPU utilisation, percent", null=True),
            "util_mem": _t("number", "memory controller utilisation, percent", null=True),
            "mem_used": _t("integer", "memory used, bytes", null=True),
            "mem_total": _t("integer", "memory total, bytes", null=True),
            "temperature": _t("number", "degrees Celsius", null=True),
            "power_draw": _t("number", "watts", null=True),
            "power_limit": _t("number", "watts", null=True),
            "fan": _t("number", "fan speed, percent", null=True),
            "clock_sm": _t("integer", "SM clock, MHz", null=True),
            "clock_mem": _t("integer", "memory clock, MHz", null=True),
            "pstate": _t("string", "performance state, e.g. P0", null=True),
            "ecc_errors": _t("integer", "volatile uncorrected ECC errors", null=True),
            "mig_enabled": _t("boolean", "MIG mode on", null=True),
        },
    ),
    "GpuProcess": _obj(
        "a process using a GPU",
        {
            "gpu": _t("integer", "index of the GPU"),
            "pid": _t("integer", "pid on the host"),
            "used_memory": _t("integer", "GPU memory used, bytes", null=True),
            "command": _t("string", "command line", null=True),
            "user": _t("string", "user name on the host", null=True),
            "container_id": _t("string", "Docker container id, if in one", null=True),
            "container_name": _t("string", "container name, if in one", null=True),
            "ns_pid": _t(
                "integer", "pid inside its own PID namespace (its container's)", null=True
            ),
            "ns_pgid": _t(
                "integer", "process group inside that namespace (a run's pid)", null=True
            ),
        },
    ),
    "HostStats": _obj(
        "the host's own CPU and memory",
        {
            "cpu_percent": _t("number", "CPU busy, percent of all cores", null=True),
            "mem_used": _t("integer", "memory used, bytes", null=True),
            "mem_total": _t("integer", "memory total, bytes", null=True),
            "load": {
                "type": ["array", "null"],
                "items": {"type": "number"},
                "minItems": 3,
                "maxItems": 3,
                "description": "1, 5 and 15 minute load averages",
            },
        },
    ),
}

_SAMPLE_FIELDS: dict[str, Schema] = {
    **_SCHEMA_FIELD,
    "host_name": _t("string", "gpudesk host name"),
    "seq": _t("integer", "sample number since the agent started"),
    "ts": _t("number", "sample time on the GPU host, epoch seconds"),
    "hostname": _t("string", "the GPU host's own hostname", null=True),
    "driver_state": _t(
        "string",
        "ok, nvml_not_found, driver_not_loaded, version_mismatch, no_gpus or error",
        enum=["ok", "nvml_not_found", "driver_not_loaded", "version_mismatch", "no_gpus", "error"],
    ),
    "message": _t("string", "why the driver state is not ok", null=True),
    "driver_version": _t("string", "NVIDIA driver version", null=True),
    "cuda_version": _t("string", "CUDA version the driver supports", null=True),
    "nvml_version": _t("string", "NVML version", null=True),
    "simulated": _t("boolean", "GPUs simulated (GPUDESK_SIMULATE_GPUS)"),
    "source": _t("string", "nvml, nvidia-smi, simulated or none", null=True),
    "gpus": _list(_ref("Gpu", "a GPU"), "GPUs by index"),
    "processes": _list(_ref("GpuProcess", "a process"), "processes using GPUs"),
    "host": _ref("HostStats", "CPU and memory of the host", null=True),
}

_ERRORS = _list(_ref("HostError", "a failed host"), "hosts that could not answer")

COMMANDS: dict[str, Schema] = {
    "ps": _obj(
        "`gpudesk ps --json`: one document",
        {
            **_SCHEMA_FIELD,
            "containers": _list(_ref("Container", "a container"), "containers on every host"),
            "errors": _ERRORS,
        },
    ),
    "ps --idle": _obj(
        "`gpudesk ps --idle [--for 10s] [--below 5] --json`: one document",
        {
            **_SCHEMA_FIELD,
            "observed_s": _t("number", "seconds each host was watched (`--for`)"),
            "below": _t("number", "GPU utilisation % under which a GPU counts as idle"),
            "simulated": _t("boolean", "some host's GPUs were simulated (GPUDESK_SIMULATE_GPUS)"),
            "containers": _list(
                _ref("IdleContainer", "an idle container"),
                "containers whose GPUs were all under `below` % in every sample, without a gap",
            ),
            "errors": _ERRORS,
        },
    ),
    "launch": _obj(
        "`gpudesk launch --json`: one document, the launched container",
        {
            **_SCHEMA_FIELD,
            **CONTAINER_FIELDS,
            "reach": _ref("Reach", "how to get in"),
            "host_port": _t("integer", "host port of its SSH or Jupyter server"),
        },
    ),
    "runs": _obj(
        "`gpudesk runs --json`: one document",
        {
            **_SCHEMA_FIELD,
            "runs": _list(_ref("Run", "a run"), "runs on every host"),
            "errors": _ERRORS,
        },
    ),
    "stats": {
        "description": "`gpudesk stats --json`: one JSON document per line, a sample or an error",
        "oneOf": [
            _obj("a GPU sample from one host's agent", _SAMPLE_FIELDS),
            _obj(
                "a host whose stats could not be read",
                {
                    **_SCHEMA_FIELD,
                    "host_name": _t("string", "gpudesk host name"),
                    "error": _t("string", "one sentence: what went wrong"),
                },
            ),
        ],
    },
    "hosts ls": _obj(
        "`gpudesk hosts ls --json`: one document",
        {**_SCHEMA_FIELD, "hosts": _list(_ref("Host", "a host"), "hosts, localhost first")},
    ),
    "hosts check": _obj(
        "`gpudesk hosts check --json`: one document; a failed host has its `state` and `error`",
        {**_SCHEMA_FIELD, "hosts": _list(_ref("HostCheck", "a host"), "the checked hosts")},
    ),
}


def command_schema(command: str) -> Schema:
    """A standalone JSON Schema (draft 2020-12) for one command's output."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **COMMANDS[command],
        "$defs": DEFS,
    }


# --------------------------------------------------------------------------- docs/json.md


def _type_text(schema: Schema) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in schema:
        return " \\| ".join(_type_text(s) for s in schema["anyOf"])
    kinds = schema.get("type", "any")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    parts = []
    for kind in kinds:
        if kind == "array":
            parts.append(f"array of {_type_text(schema.get('items', {}))}")
        elif kind == "object" and isinstance(schema.get("additionalProperties"), dict):
            parts.append(f"object of {_type_text(schema['additionalProperties'])}")
        else:
            parts.append(kind)
    text = " \\| ".join(parts)
    if "const" in schema:
        text += f" (always {schema['const']})"
    return text


def _table(schema: Schema) -> list[str]:
    lines = ["| field | type | meaning |", "| --- | --- | --- |"]
    for name, field in schema["properties"].items():
        lines.append(f"| `{name}` | {_type_text(field)} | {field.get('description', '')} |")
    return lines


def render_markdown() -> str:
    """docs/json.md, generated: `python -m gpudesk.cli.json_schema > docs/json.md`."""
    out = [
        "# The `--json` contract",
        "",
        "<!-- Generated from gpudesk/cli/json_schema.py by "
        "`python -m gpudesk.cli.json_schema > docs/json.md`; a test keeps them equal. -->",
        "",
        f"Contract version {SCHEMA_VERSION}.",
        "",
        RULES.rstrip(),
        "",
        "Each command's JSON Schema (draft 2020-12) is "
        "`gpudesk.cli.json_schema.command_schema(COMMAND)`.",
        "",
        "## Commands",
    ]
    for command, schema in COMMANDS.items():
        out += ["", f"### {command}", "", schema["description"] + "."]
        for part in schema.get("oneOf", [schema]):
            if "oneOf" in schema:
                out += ["", f"Either {part['description']}:"]
            out += ["", *_table(part)]
    out += ["", "## Objects"]
    for name, schema in DEFS.items():
        out += ["", f"### {name}", "", schema["description"][0].upper() + schema["description"][1:]]
        out += ["", *_table(schema)]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
