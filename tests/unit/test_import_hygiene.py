"""The core loads without the TUI, and the TUI starts without torch."""

import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def test_remote_does_not_import_textual() -> None:
    mods = _modules_after(
        "import gpudesk.core, gpudesk.core.fleet, gpudesk.core.ssh, gpudesk.core.engine, "
        "gpudesk.core.config, gpudesk.cli.main"
    )
    assert "gpudesk.core.fleet" in mods
    assert not {m for m in mods if m == "textual" or m.startswith("textual.")}


def test_starting_the_tui_does_not_import_torch() -> None:
    mods = _modules_after("import gpudesk.app.app")
    assert "gpudesk.app.app" in mods
    assert "textual" in mods
    assert not {m for m in mods if m == "torch" or m.startswith("torch.")}
