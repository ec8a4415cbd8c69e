"""How this run was started, so that a message names a setting the way the reader types it.

The same parameter is typed four ways: `resume = True` in the notebook's parameters cell,
`-p resume True` for papermill, `--resume True` on the command line (`python -m helpers.cli`),
and `resume=True` where Python code calls the helpers. A message that says "set resume=True" to
somebody running papermill makes them guess the rest, so messages call `setting()`.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
from typing import Any

NOTEBOOK, PAPERMILL, COMMAND_LINE, PYTHON = "notebook", "papermill", "command line", "python"
PAPERMILL_HEADER = "# Parameters"  # the first line of the cell papermill injects for -p

CLI_MODULE = "helpers.cli"


def _run_as_command_line() -> bool:
    """Whether this process was started as `python -m helpers.cli` (torchrun starts it so too)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == CLI_MODULE


def runs_program(arguments: list, program: str) -> bool:
    """Whether a process's arguments start `program`: its executable or script (`papermill`,
    `/usr/bin/papermill`, `python /x/bin/papermill`), or `python -m program`; not merely a
    command that mentions it (`bash -c '... papermill ...'`)."""
    names = [os.path.basename(argument) for argument in arguments[:2]]
    return program in names or arguments[1:3] == ["-m", program]


def launched_by(program: str) -> bool:
    """Whether a parent process of this one (up to three levels) runs `program`."""
    pid = os.getpid()
    for _ in range(3):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                pid = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                arguments = [part.decode(errors="replace") for part in cmdline.read().split(b"\0")]
            if runs_program(arguments, program):
                return True
        except (OSError, ValueError, IndexError):  # not Linux, or the parent is gone
            return False
    return False


def _kernel_shell():
    """The IPython shell of the Jupyter kernel this runs in (Jupyter, Colab, papermill), or None
    (plain Python, a terminal IPython, or ipykernel merely imported, as some test tools do)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell if getattr(shell, "kernel", None) is not None else None


def in_notebook() -> bool:
    return _kernel_shell() is not None


def launcher() -> str:
    """NOTEBOOK, PAPERMILL, COMMAND_LINE or PYTHON: how the running pipeline was started.
    papermill is recognised by its process, or by the parameters cell it injected."""
    if _run_as_command_line():
        return COMMAND_LINE
    shell = _kernel_shell()
    if shell is None:
        return PYTHON
    if launched_by("papermill") or any(cell.lstrip().startswith(PAPERMILL_HEADER)
                                       for cell in shell.user_ns.get("In", [])):
        return PAPERMILL
    return NOTEBOOK


def setting(name: str, value: Any, started: str = "") -> str:
    """`name` set to `value`, written as it is typed where this run was started:
    "`-p resume True`", "`--resume True`", "`resume = True` in the parameters cell" or
    "`resume=True`"."""
    started = started or launcher()
    if started in (PAPERMILL, COMMAND_LINE):
        text = value if isinstance(value, str) else json.dumps(value) if isinstance(
            value, dict) else str(list(value) if isinstance(value, tuple) else value)
        option = f"-p {name}" if started == PAPERMILL else f"--{name}"
        return f"`{option} {shlex.quote(text)}`"
    if started == NOTEBOOK:
        return f"`{name} = {value!r}` in the parameters cell"
    return f"`{name}={value!r}`"


def rerun_hint(started: str = "") -> str:
    """How to start the run again where it was started, after a setting() ("set `resume =
    True` in the parameters cell and run the notebook again from there")."""
    started = started or launcher()
    return {NOTEBOOK: "run the notebook again from there",
            PAPERMILL: "run papermill again", COMMAND_LINE: "run the command again",
            PYTHON: "start the run again"}[started]
