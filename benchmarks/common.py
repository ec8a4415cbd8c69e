"""What every benchmark records beside its numbers, and how its output ends."""
from __future__ import annotations

import json
import os
import platform
import shlex
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from helpers.env import cpu_record  # noqa: E402
from helpers.report import git_commit  # noqa: E402
from helpers.training import cpu_computes_bf16  # noqa: E402


def environment(device: torch.device) -> dict:
    """The machine and code a measurement ran on."""
    return {"device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                            else platform.processor() or platform.machine()),
            # The CPU by model and speed flags (both kinds of machine say "AMD EPYC").
            **cpu_record(), "cpu_computes_bf16": cpu_computes_bf16(),
            "cpu_cores": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "commit": git_commit()}


def finish(result: dict, as_json: bool) -> None:
    """With --json, the last line of the output is the whole result as one JSON object."""
    if as_json:
        print(json.dumps(result))


class Tee:
    """Everything printed goes to the terminal and to a log file."""

    def __init__(self, path: str):
        self.file, self.stream = open(path, "w"), sys.stdout

    def write(self, text: str) -> None:
        self.stream.write(text)
        self.file.write(text)

    def flush(self) -> None:
        self.stream.flush()
        self.file.flush()


def start_log(folder: str) -> str:
    """Print from now on into folder/log.txt as well, starting with the command that ran;
    returns that command."""
    os.makedirs(folder, exist_ok=True)
    sys.stdout = Tee(os.path.join(folder, "log.txt"))
    command = "python3 " + " ".join(map(shlex.quote, sys.argv))
    print(f"$ {command}")
    return command
