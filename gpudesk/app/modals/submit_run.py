"""`R` on a container: submit a training run; the submission happens in a worker."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from textual import work
from textual.app import ComposeResult
from textual.widgets import Button, Input, Label, Select

from gpudesk.app.desk import Desk, desk_of
from gpudesk.app.messages import Submitted
from gpudesk.app.modals.form import FormModal
from gpudesk.app.modals.placement_hint import PlacementHint
from gpudesk.core import shell
from gpudesk.core.placement import HostFree
from gpudesk.core.runs import BUNDLED_SCRIPTS, Run, RunError, RunSpec, submit, validate_run_name

CUSTOM = "path"
Submitter = Callable[[str, str, RunSpec], Run]


class SubmitRunModal(FormModal[str]):
    DEFAULT_CSS = """
    SubmitRunModal #submit-dialog { width: 80; height: auto; }
    SubmitRunModal #submit-path { display: none; }
    SubmitRunModal #submit-path.shown { display: block; }
    """
    DIALOG_ID = "submit-dialog"
    ERROR_ID = "submit-error"
    SUBMIT_ID = "submit"
    SUBMIT_LABEL = "Submit"

    def __init__(
        self,
        host: str,
        container: str,
        *,
        submitter: Submitter | None = None,
        placement: Sequence[HostFree] = (),
    ) -> None:
        super().__init__()
        self.placement = placement
        self.host = host
        self.container = container
        self.submitter = submitter
        self.busy = False

    @property
    def desk(self) -> Desk:
        return desk_of(self)

    def form_title(self) -> str:
        return f"Submit a training run in {self.container} on {self.host}"

    def fields(self) -> ComposeResult:
        options = [(name, name) for name in BUNDLED_SCRIPTS]
        options.append(("a script path in the container…", CUSTOM))
        yield Label("Script")
        yield Select(options, value=BUNDLED_SCRIPTS[0], allow_blank=False, id="submit-script")
        yield Input(placeholder="/workspace/train.py", id="submit-path")
        yield Label("Arguments (as in a shell)")
        yield Input(placeholder="--steps 300 --precision bf16", id="submit-args")
        yield Label("Processes (GPUs); more than 1 runs torchrun")
        yield Input("1", type="integer", id="submit-nproc")
        yield PlacementHint(self.placement, 1, id="submit-placement")
        yield Label("Run name (empty: <script>-<time>)")
        yield Input(placeholder="cls-try1", id="submit-name")

    def on_mount(self) -> None:
        self.query_one("#submit-script", Select).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "submit-nproc":
            text = event.value.strip()
            self.query_one(PlacementHint).show(int(text) if text.isdigit() else 1)

    def on_select_changed(self, event: Select.Changed) -> None:
        self.query_one("#submit-path", Input).set_class(event.value == CUSTOM, "shown")

    def spec(self) -> RunSpec:
        choice = self.query_one("#submit-script", Select).value
        script = self.value("submit-path") if choice == CUSTOM else str(choice)
        if not script:
            raise RunError("Give the path of the script inside the container.")
        try:
            args = tuple(shell.split(self.value("submit-args")))
        except ValueError as exc:
            raise RunError(f"The arguments do not parse ({exc}); check the quotes.") from exc
        nproc_text = self.value("submit-nproc") or "1"
        if not nproc_text.isdigit() or not 1 <= int(nproc_text) <= 64:
            raise RunError("Processes must be a number from 1 to 64.")
        name = self.value("submit-name") or None
        if name:
            validate_run_name(name)
        return RunSpec(script, args, nproc=int(nproc_text), name=name)

    def submit(self) -> None:
        if self.busy:
            return
        try:
            spec = self.spec()
        except RunError as exc:
            self.show_error(str(exc))
            return
        self.busy = True
        self.query_one("#submit", Button).disabled = True
        self.show_error("Submitting…")
        self.perform(spec)

    @work(thread=True, exit_on_error=False, group="submit-run")
    def perform(self, spec: RunSpec) -> None:
        try:
            if self.submitter is not None:
                run = self.submitter(self.host, self.container, spec)
            else:
                run = submit(self.desk.state.service(self.host), self.container, spec)
        except Exception as exc:
            self.post_message(Submitted(None, str(exc) or type(exc).__name__))
            return
        self.post_message(Submitted(run, None))

    def on_submitted(self, message: Submitted) -> None:
        self.busy = False
        self.query_one("#submit", Button).disabled = False
        if message.run is None:
            self.show_error(message.error or "failed")
            return
        self.notify(f"Started {message.run.name} in {self.container}.")
        self.dismiss(message.run.name)
