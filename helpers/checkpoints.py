"""Atomic file writes and safe checkpoint loading.

Every output file is written to a temporary file beside it and renamed into place, so a crash or
kill mid-write leaves the previous version intact. Checkpoints hold only tensors and plain Python
types, so `torch.load(..., weights_only=True)` reads them and a crafted file cannot run code.
"""
from __future__ import annotations

import io
import json
import os
import random
import tempfile
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch

from .errors import ExplainedError

CHECKPOINT_FORMAT = 1


class CheckpointError(ExplainedError, RuntimeError):
    """A checkpoint or weights file is missing, unreadable, or from another configuration."""


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def atomic_write(path: str, write: Callable[[io.BufferedWriter], None]) -> None:
    """Call write(file) on a temporary file in path's folder, fsync it, then rename it to path."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it private; outputs are not

        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)  # atomic on POSIX and Windows
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def atomic_write_text(path: str, text: str) -> None:
    atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def atomic_write_json(path: str, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2) + "\n")


def save_checkpoint(path: str, state: Dict[str, Any]) -> None:
    """Write a checkpoint dict (tensors and plain types only) atomically."""
    atomic_write(path, lambda file: torch.save({"format": CHECKPOINT_FORMAT, **state}, file))


def load_checkpoint(path: str) -> Dict[str, Any]:
    """Read a checkpoint with weights_only=True; a missing or damaged file says so plainly."""
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path!r}: nothing to resume (run once with "
                              "resume=False, or point output_dir at the earlier run)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"checkpoint {path!r} is corrupt or not a checkpoint of this "
                              f"project ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"checkpoint {path!r} has no 'model' entry; it is not a "
                              "checkpoint of this project")
    return state


def save_weights(path: str, network: torch.nn.Module, architecture: str) -> None:
    """model.pt: the network's state_dict in half precision on the CPU (about 9.4 MB for the
    reference network) and the name of its architecture, so that it cannot be loaded into
    another one by mistake. Enough to evaluate and predict; loadable with weights_only=True."""
    state = {name: (value.half() if value.is_floating_point() else value).detach().cpu()
             for name, value in network.state_dict().items()}
    atomic_write(path, lambda file: torch.save({"architecture": architecture, "model": state}, file))


def read_weights(path: str, name: str = "model_weights") -> Tuple[Dict[str, torch.Tensor], Optional[str]]:
    """(state_dict, architecture) of a model.pt, best.pt or checkpoint.pt. The architecture is
    None for files from before it was recorded (all of them hold the reference "resnet")."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{name}={path!r}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{name}={path!r} is not a readable weights file "
                              f"({type(error).__name__}: {error})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{name}={path!r} holds a {type(state).__name__}, not weights")
    architecture = None
    if isinstance(state.get("model"), dict):  # model.pt, best.pt, checkpoint.pt
        architecture = state.get("architecture") or (state.get("config") or {}).get("architecture")
        state = state["model"]
    return state, architecture


def load_weights(path: str, network: torch.nn.Module, architecture: Optional[str] = None,
                 name: str = "model_weights") -> torch.nn.Module:
    """Load a weights file into `network` (of `architecture`); values are cast to the network's
    precision. A missing, damaged or mismatched file says so plainly."""
    state, recorded = read_weights(path, name)
    if architecture is not None and recorded is not None and recorded != architecture:
        raise CheckpointError(f"{name}={path!r} holds a {recorded!r} network, but "
                              f"architecture={architecture!r}: set architecture={recorded!r}")
    try:
        network.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as error:
        summary = str(error).split("\n")[0:3]
        raise CheckpointError(f"{name}={path!r} does not fit this network: "
                              + " ".join(line.strip() for line in summary)) from None
    return network


def load_resumable(path: str, config) -> Dict[str, Any]:
    """The checkpoint at `path`, after checking it continues the run `config` describes."""
    from .config import config_differences

    state = load_checkpoint(path)
    differences = config_differences(state.get("config", {}), config)
    if differences:
        raise CheckpointError(f"checkpoint {path!r} comes from another configuration; resuming "
                              "would not continue that run:\n  " + "\n  ".join(differences))
    return state


def rng_states() -> Dict[str, Any]:
    """Every global random generator the run may draw from, as tensors and plain types."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
        "numpy_pos": int(np.random.get_state()[2]),
        "python": repr(random.getstate()),
    }


def restore_rng_states(states: Dict[str, Any]) -> None:
    """Put the global generators back as `rng_states()` found them."""
    import ast

    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    np.random.set_state(("MT19937", states["numpy"].numpy().astype(np.uint32),
                         states["numpy_pos"], 0, 0.0))
    random.setstate(ast.literal_eval(states["python"]))
