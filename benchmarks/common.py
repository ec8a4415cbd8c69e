"""What every benchmark records beside its numbers, and how its output ends."""
from __future__ import annotations

import json
import os
import platform
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from helpers.report import git_commit  # noqa: E402


def environment(device: torch.device) -> dict:
    """The machine and code a measurement ran on."""
    return {"device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                            else platform.processor() or platform.machine()),
            "cpu_cores": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "commit": git_commit()}


def finish(result: dict, as_json: bool) -> None:
    """With --json, the last line of the output is the whole result as one JSON object."""
    if as_json:
        print(json.dumps(result))
