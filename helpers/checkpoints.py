"""Atomic file writes and safe checkpoint loading.

Every output file is written to a temporary file beside it and renamed into place, so a crash or
kill mid-write leaves the previous version intact. Checkpoints hold only tensors and plain Python
types, so `torch.load(..., weights_only=True)` reads them and a crafted file cannot run code.
"""
from __future__ import annotations

import errno
import io
import json
import os
import random
import re
import shutil
import tempfile
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch

from .errors import ExplainedError
from .launch import setting

CHECKPOINT_FORMAT = 1


class CheckpointError(ExplainedError, RuntimeError):
    """A checkpoint or weights file is missing, unreadable, or from another configuration."""


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


class DiskFullError(ExplainedError, OSError):
    """An output could not be written for lack of space (a full disk, or a quota)."""

    def __str__(self) -> str:
        return self.strerror  # the explanation, without OSError's "[Errno 28]"


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _no_space(path: str, size: int, free: Optional[int] = None) -> DiskFullError:
    folder = os.path.dirname(os.path.abspath(path))
    room = f", {free / 1e6:,.1f} MB free there" if free is not None else ""
    kept = f"; the previous {os.path.basename(path)} is intact" if os.path.exists(path) else ""
    return DiskFullError(errno.ENOSPC, f"not enough space to write {os.path.basename(path)} into "
                         f"{folder!r} (it needs {size / 1e6:,.1f} MB{room}){kept}: free some "
                         "space there, or write to a folder on another disk")


def atomic_write(path: str, write: Callable[[io.BytesIO], None]) -> None:
    """Call write(buffer) to serialise in memory, check that path's folder has room for it,
    then write it to a temporary file beside path, fsync it and rename it to path. A crash, a
    kill or a full disk leaves the previous file intact and no partial one (a write that runs
    out of space raises DiskFullError, naming the folder and the size)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    buffer = io.BytesIO()
    write(buffer)
    content = buffer.getbuffer()
    free = shutil.disk_usage(folder).free
    if len(content) > free:
        raise _no_space(path, len(content), free)
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.",
                                             suffix=".tmp")
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it private; outputs are not
        with os.fdopen(handle, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())  # a quota or a network disk may report no space only here
        os.replace(temporary, path)  # atomic on POSIX and Windows
    except BaseException as error:
        if temporary is not None and os.path.exists(temporary):
            os.remove(temporary)
        if isinstance(error, OSError) and error.errno in NO_SPACE:
            raise _no_space(path, len(content)) from None
        raise


def atomic_write_text(path: str, text: str) -> None:
    atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def atomic_write_json(path: str, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2) + "\n")


def save_checkpoint(path: str, state: Dict[str, Any]) -> None:
    """Write a checkpoint dict (tensors and plain types only) atomically."""
    atomic_write(path, lambda file: torch.save({"format": CHECKPOINT_FORMAT, **state}, file))


def _load(path: str, what: str) -> Any:
    """torch.load(path, weights_only=True), or a CheckpointError saying what the file is: a
    missing file, a damaged one, or a whole pickled model, whose loading would run code."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{what}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        pickled = re.search(r"GLOBAL ([\w.]+)", str(error))
        if pickled:
            raise CheckpointError(
                f"{what} holds pickled Python objects ({pickled[1]}), not only tensors: loading "
                "it would run code named in the file, which this project never does. If it is a "
                "whole saved model, save its weights where it was made: "
                "torch.save(model.state_dict(), 'weights.pt')") from None
        raise CheckpointError(f"{what} is not a readable weights file: damaged (corrupt), or "
                              f"not made by torch.save ({type(error).__name__}: "
                              f"{str(error).splitlines()[0][:200]})") from None


def load_checkpoint(path: str) -> Dict[str, Any]:
    """Read a checkpoint with weights_only=True; a missing or damaged file says so plainly."""
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path!r}: nothing to resume (train it first, "
                              f"with {setting('resume', False)}, or point output_dir at the "
                              "earlier run)")
    state = _load(path, f"checkpoint {path!r}")
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"checkpoint {path!r} has no 'model' entry; it is not a "
                              "checkpoint of this project")
    return state


def save_weights(path: str, network: torch.nn.Module, architecture: str,
                 test_time_augmentation: Optional[dict] = None,
                 record: Optional[Dict[str, Any]] = None) -> None:
    """model.pt: the network's state_dict in half precision on the CPU (about 9.4 MB for the
    reference network), the name of its architecture, so that it cannot be loaded into another
    one by mistake, the test-time augmentation its accuracy was measured with, so that it
    is evaluated and predicts the same way, and `record`'s keys (its size: helpers/weights.py).
    Loadable with weights_only=True."""
    state = {name: (value.half() if value.is_floating_point() else value).detach().cpu()
             for name, value in network.state_dict().items()}
    content = {"architecture": architecture, **(record or {}), "model": state}
    if test_time_augmentation is not None:
        content["test_time_augmentation"] = test_time_augmentation
    atomic_write(path, lambda file: torch.save(content, file))


def weights_record(path: str, name: str = "model_weights") -> Dict[str, Any]:
    """What a weights file records beside its tensors (architecture, test-time augmentation);
    {} for a bare state_dict or a file of other code."""
    content = read_file(path, name)
    return {key: value for key, value in content.items() if key not in STATE_DICT_KEYS} \
        if isinstance(content, dict) and not _is_state_dict(content) else {}


def read_file(path: str, name: str = "model_weights") -> Any:
    """A weights file's whole content (weights_only), or a CheckpointError saying what it is."""
    return _load(path, f"{name}={path!r}")


# Where other code keeps a state_dict inside a saved dict (pytorch-cifar's {"net": ...}, a
# Lightning or timm checkpoint's "state_dict", ...), and the prefixes that wrappers add to
# every key: DataParallel and DistributedDataParallel "module.", torch.compile "_orig_mod.".
STATE_DICT_KEYS = ("model", "state_dict", "model_state_dict", "net", "network", "weights")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def _unprefixed(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The state_dict without the prefixes wrappers put before every key."""
    for prefix in WRAPPER_PREFIXES:
        if all(key.startswith(prefix) for key in state):
            return _unprefixed({key[len(prefix):]: value for key, value in state.items()})
    return state


def read_weights(path: str, name: str = "model_weights", content: Any = None
                 ) -> Tuple[Dict[str, torch.Tensor], Optional[str], str]:
    """(state_dict, architecture, where in the file) of a weights file: this project's model.pt,
    best.pt or checkpoint.pt, a bare state_dict, or one saved by other code under one of
    STATE_DICT_KEYS, with wrapper prefixes taken off. The architecture is None where the file
    does not record it (this project's files from before it did hold the reference "resnet").
    `content`: the file as read_file() gave it, where it has been read already."""
    if content is None:
        content = read_file(path, name)
    if _is_state_dict(content):
        return _unprefixed(content), None, "the file"
    if isinstance(content, dict):
        for key in STATE_DICT_KEYS:
            if _is_state_dict(content.get(key)):
                architecture = content.get("architecture") or (content.get("config") or {}).get("architecture")
                return _unprefixed(content[key]), architecture, f"its {key!r} entry"
    held = (f"a dict with keys {sorted(map(str, content))[:8]}" if isinstance(content, dict)
            else f"a {type(content).__name__}")
    raise CheckpointError(f"{name}={path!r} holds {held}, and no network weights (a dict of "
                          f"tensors, bare or under one of {', '.join(map(repr, STATE_DICT_KEYS))})")


def mismatch(state: Dict[str, torch.Tensor], network: torch.nn.Module) -> Optional[str]:
    """How a state_dict fails to fit `network`, in one sentence with an example of each kind of
    difference; None where it fits."""
    expected = network.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    reshaped = [key for key in expected if key in state and state[key].shape != expected[key].shape]
    if not (missing or unexpected or reshaped):
        return None
    fitting = len(expected) - len(missing) - len(reshaped)
    parts = [f"{fitting} of the network's {len(expected)} tensors match the file's {len(state)} "
             "by name and shape"]
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]!r})")
    if unexpected:
        parts.append(f"{len(unexpected)} not in the network (e.g. {unexpected[0]!r})")
    if reshaped:
        key = reshaped[0]
        parts.append(f"{len(reshaped)} of another shape (e.g. {key!r}: {list(state[key].shape)} in "
                     f"the file, {list(expected[key].shape)} here)")
    return "; ".join(parts)


def load_weights(path: str, network: torch.nn.Module, architecture: Optional[str] = None,
                 name: str = "model_weights", content: Any = None) -> torch.nn.Module:
    """Load a weights file into `network` (of `architecture`); values are cast to the network's
    precision. A missing, damaged or mismatched file says so plainly, in a line or two.
    `content`: the file as read_file() gave it, where it has been read already."""
    state, recorded, where = read_weights(path, name, content)
    if architecture is not None and recorded is not None and recorded != architecture:
        raise CheckpointError(f"{name}={path!r} holds a {recorded!r} network, but "
                              f"architecture={architecture!r}: set architecture={recorded!r}")
    problem = mismatch(state, network)
    if problem:
        raise CheckpointError(f"{name}={path!r} does not fit this network ({where}: {problem}). "
                              "Weights load only into the architecture that made them: check "
                              "architecture, or train this network here")
    network.load_state_dict(state)
    return network


def load_resumable(path: str, config) -> Dict[str, Any]:
    """The checkpoint at `path`, after checking it continues the run `config` describes."""
    from .config import config_differences

    state = load_checkpoint(path)
    differences = config_differences(state.get("config", {}), config)
    if differences:
        raise CheckpointError(f"checkpoint {path!r} comes from another configuration, so "
                              f"resuming would not continue that run ({'; '.join(differences)}): "
                              "set those as the checkpoint has them to continue it, or start a "
                              f"new run in another folder ({setting('resume', False)} and another "
                              "output_dir)")
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
    if torch.cuda.is_available():
        # Saved on a machine with more GPUs, or fewer: the GPUs both machines have get theirs
        # back, the others keep their own (a run uses the first GPUs, or one per rank).
        for index, state in enumerate(states["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, index)
    np.random.set_state(("MT19937", states["numpy"].numpy().astype(np.uint32),
                         states["numpy_pos"], 0, 0.0))
    random.setstate(ast.literal_eval(states["python"]))
