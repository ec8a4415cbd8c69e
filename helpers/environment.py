"""The installed packages: a torch and a torchvision that belong together.

Each torchvision release is built against one torch release (torch 2.N with torchvision
0.(N+15)). A mismatched pair, common after `pip install torch==...` alone, fails at import with
"operator torchvision::nms does not exist", which names neither package's version nor the fix.
"""
from __future__ import annotations

import re
from importlib import metadata

from .errors import ExplainedError


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
    """The pip command that installs the torchvision built for this torch. A CPU-only torch
    ("2.13.0+cpu") needs the CPU torchvision, which PyPI does not have: PyPI's needs CUDA."""
    release, _, build = torch_version.partition("+")
    command = f"pip install 'torch=={release}' 'torchvision=={matching_torchvision(torch_version)}'"
    if build == "cpu":
        command += " --index-url https://download.pytorch.org/whl/cpu"
    return command
