"""Training runs in gpudesk containers, one module per concern.

- :mod:`.model`: a run, its state and metrics, rebuilt from its folder (parsing on the one
  metrics schema, ``payload/train/metrics_schema.py``);
- :mod:`.table`: the runs table shared by the CLI and the TUI;
- :mod:`.submit`: upload the bundled scripts and start a run detached;
- :mod:`.discovery`: list runs from their folders (read on the host by
  ``payload/run_reader.py``) and find one by name;
- :mod:`.control`: stop or rerun a run;
- :mod:`.multinode`: one run over several hosts (one torchrun per node), one row per run;
- :mod:`.container`: the Docker calls they share.

The names below are the package's public interface.
"""

from gpudesk.core.containers.model import WORKSPACE
from gpudesk.core.runs.control import StopResult, default_grace, rerun, stop_run
from gpudesk.core.runs.discovery import (
    build_run,
    get_run,
    list_runs,
    read_run_folders,
    runs_named,
)
from gpudesk.core.runs.model import (
    BUNDLED_SCRIPTS,
    RUNS_DIR,
    SCRIPTS_DIR,
    Metrics,
    Run,
    RunError,
    RunSpec,
    RunState,
    default_run_name,
    derive_state,
    eta_seconds,
    parse_metrics,
    script_label,
    validate_run_name,
)
from gpudesk.core.runs.submit import (
    CHECK_ARGS_ENV,
    START_SCRIPT,
    SubmitProgress,
    SubmitStage,
    bundled_files,
    check_script_args,
    run_command,
    scripts_hash,
    submit,
    wrapper_script,
)
from gpudesk.core.runs.table import RUN_COLUMNS, format_duration, format_number, run_cells

__all__ = [
    "BUNDLED_SCRIPTS",
    "CHECK_ARGS_ENV",
    "RUNS_DIR",
    "RUN_COLUMNS",
    "SCRIPTS_DIR",
    "START_SCRIPT",
    "WORKSPACE",
    "Metrics",
    "Run",
    "RunError",
    "RunSpec",
    "RunState",
    "StopResult",
    "SubmitProgress",
    "SubmitStage",
    "build_run",
    "bundled_files",
    "check_script_args",
    "default_grace",
    "default_run_name",
    "derive_state",
    "eta_seconds",
    "format_duration",
    "format_number",
    "get_run",
    "list_runs",
    "parse_metrics",
    "read_run_folders",
    "rerun",
    "run_cells",
    "run_command",
    "runs_named",
    "script_label",
    "scripts_hash",
    "stop_run",
    "submit",
    "validate_run_name",
    "wrapper_script",
]
