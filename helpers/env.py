"""Where and how a run runs, and nothing of the method: the project's error base, how the run
was started (so that a message names a setting as the reader types it), the installed torch
and torchvision, the CPUs this process may use, and the progress display.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shlex
import sys
import traceback
import warnings
from importlib import metadata
from typing import Any, Iterable, Optional


class ExplainedError(Exception):
    """An error whose message says what went wrong and what to do.

    A traceback through the helpers adds 70 lines and hides that sentence at the bottom, so in a
    notebook (and in papermill's report) these errors show as their message and the line that
    raised them."""

    def _render_traceback_(self) -> list:
        # IPython calls this instead of formatting a traceback; papermill shows the same lines.
        lines = [f"{type(self).__name__}: {self}"]
        # The function that raised, not the small helpers that check and raise for it.
        frames = [f for f in traceback.extract_tb(self.__traceback__)
                  if not f.name.startswith("_require")]
        if frames:
            where = frames[-1]
            place = os.path.join(os.path.basename(os.path.dirname(where.filename)),
                                 os.path.basename(where.filename))
            lines.append(f"(raised in {place}, line {where.lineno}, in {where.name})")
        return lines


# --- how the run was started ----------------------------------------------------------------
# The same parameter is typed four ways: `resume = True` in the notebook's parameters cell,
# `-p resume True` for papermill, `--resume True` on the command line, `resume=True` in Python.

NOTEBOOK, PAPERMILL, COMMAND_LINE, PYTHON = "notebook", "papermill", "command line", "python"
PAPERMILL_HEADER = "# Parameters"  # the first line of the cell papermill injects for -p


def _run_as_command_line() -> bool:
    """Whether this process was started as `python -m helpers.cli` (torchrun starts it so too)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == "helpers.cli"


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


# --- installed packages ---------------------------------------------------------------------
# Each torchvision release is built against one torch release (torch 2.N with torchvision
# 0.(N+15)). A mismatched pair, common after `pip install torch==...` alone, fails at import
# with "operator torchvision::nms does not exist", which names neither version nor the fix.

class PackageError(ExplainedError, ImportError):
    """An installed package cannot be used as it is; the message names the fix."""


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "(not installed)"


def matching_torchvision(torch_version: str) -> str:
    """"0.29.*" for torch "2.14.1+cu130": the torchvision release series built for it."""
    minor = re.match(r"2\.(\d+)", torch_version)
    return f"0.{int(minor[1]) + 15}.*" if minor else "(the release built for it)"


def require_matching_torchvision() -> None:
    """Import torchvision, or raise a PackageError naming both versions and the pair to install."""
    try:
        import torchvision  # noqa: F401
    except ModuleNotFoundError:
        raise PackageError("torchvision is not installed: pip install -r requirements.txt") from None
    except (RuntimeError, ImportError, OSError) as error:
        torch_version = _version("torch")
        raise PackageError(
            f"torchvision {_version('torchvision')} does not work with torch {torch_version} "
            f"({str(error).splitlines()[0][:120]}): install a pair built together, e.g. "
            f"{pair_command(torch_version)}") from None


def pair_command(torch_version: str) -> str:
    """The pip command that reinstalls torch with the torchvision built for it. Versions can
    match by number and still not work together (PyPI's torchvision needs its CUDA torch, not a
    CPU-only build of the same release), and pip answers "Requirement already satisfied" to
    what is installed, so the command reinstalls. A CPU-only torch ("2.13.0+cpu") needs the
    CPU torchvision, which PyPI does not have."""
    release, _, build = torch_version.partition("+")
    command = (f"pip install --force-reinstall 'torch=={release}' "
               f"'torchvision=={matching_torchvision(torch_version)}'")
    if build == "cpu":
        command += " --index-url https://download.pytorch.org/whl/cpu"
    return command


# --- CPUs -----------------------------------------------------------------------------------

def cgroup_cpu_quota(root: str = "/sys/fs/cgroup") -> Optional[float]:
    """The CPUs a container's quota allows (docker --cpus 1.5: 1.5), from cgroup v2's cpu.max or
    v1's cfs files; None where there is no quota or no cgroup file system."""
    try:
        with open(os.path.join(root, "cpu.max")) as file:
            quota, period = file.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as file:
            quota = int(file.read())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as file:
            period = int(file.read())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cpus() -> int:
    """The CPUs this process may use: those it may run on (taskset, a batch scheduler), or
    fewer where a container's quota allows fewer. os.cpu_count() counts the host's cores, so a
    1-CPU container on a 64-core host would start 64 workers."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


# The x86 flags that decide how fast a CPU trains: fp32 needs avx2; bf16 is native with
# avx512_bf16 (AMD Zen 4, Intel Cooper Lake) or amx_bf16 (Intel Sapphire Rapids) and emulated,
# several times slower, without them.
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_record(cpuinfo: str = "/proc/cpuinfo") -> dict:
    """The CPU a record was measured on: {"cpu_model": its name as the kernel gives it, or
    platform.processor() without /proc/cpuinfo, "cpu_flags": those of SPEED_FLAGS it has}.
    Machines of one cloud kind may share a model name ("AMD EPYC") and differ in flags."""
    import platform

    try:
        with open(cpuinfo) as file:
            text = file.read()
    except OSError:
        return {"cpu_model": platform.processor() or platform.machine(), "cpu_flags": []}
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    flags = set(text.split())
    return {"cpu_model": model.group(1).strip() if model else platform.machine(),
            "cpu_flags": [flag for flag in SPEED_FLAGS if flag in flags]}


def keep_freed_memory() -> bool:
    """Keep memory that PyTorch frees in this process for its next tensors (glibc's mallopt).
    By default glibc hands every block above a few MB back to the kernel when it is freed and
    maps fresh pages for the next one: in an fp32 training step on a CPU the page faults cost
    a quarter to a third of the time, as system time (benchmarks/cpu_training.py measures it).
    Training's peak memory stays the same. Linux with glibc only; elsewhere nothing changes."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
        # No block from mmap (so none is unmapped when freed), and no trimming of the heap.
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**30))
    except (OSError, AttributeError):  # not glibc: macOS, Windows, musl
        return False


@contextlib.contextmanager
def quiet_deprecations():
    """torch.ao.quantization warns, once per layer, that it is deprecated (helpers/options/
    quantization.py says why it is used anyway) and that reduce_range will be, and loading an
    int8 file warns of its deprecated dtypes; nothing to act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings(
            "ignore", message=".*(deprecated|reduce_range|quant_min|must run observer).*")
        yield


# --- progress -------------------------------------------------------------------------------

def progress_mode(requested: str) -> str:
    """'bar' in an interactive notebook or terminal; 'lines' under papermill or in logs."""
    if requested != "auto":
        return requested
    if launched_by("papermill") or os.environ.get("CI"):
        return "lines"
    if in_notebook() or sys.stderr.isatty():
        return "bar"
    return "lines"


class DisplayedText:
    """Where the progress bar writes in a Jupyter kernel: one output, updated in place.

    Jupyter saves an updated display (update_display_data) as it was last updated, and so do
    nbconvert and papermill, which execute without a browser; a widget bar (tqdm.notebook)
    is saved as it was first drawn, "0%|          | 0/7", however far it got."""

    encoding = "utf-8"  # tqdm draws its bar in block characters, not '#'
    handle = None  # the display, once the first text is shown

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if not text:  # tqdm clearing its line, or ending it
            return
        from IPython.display import display

        if self.handle is None:
            self.handle = display({"text/plain": text}, raw=True, display_id=True)
        else:
            self.handle.update({"text/plain": text}, raw=True)

    def flush(self) -> None:
        pass


def progress_bar(items: Iterable, total: int, description: str,
                 output: Optional[DisplayedText] = None) -> Iterable:
    """`items` with a tqdm bar: in a Jupyter kernel one line updated in place (`output`),
    kept at its last state; in a terminal on stderr, cleared when done."""
    from tqdm import tqdm

    in_kernel = isinstance(output, DisplayedText)
    # miniters=1: tqdm's monitor thread never redraws the bar from outside this loop.
    return tqdm(items, total=total, desc=description, file=output or sys.stderr,
                leave=in_kernel, miniters=1, mininterval=0.5 if in_kernel else 0.1)
