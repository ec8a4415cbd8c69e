"""Files: atomic writes, checkpoints, and weights files with the networks they rebuild.

Every output file is written to a temporary file beside it and renamed into place, so a crash or
kill mid-write leaves the previous version intact. Checkpoints and weights hold only tensors and
plain Python types, so `torch.load(..., weights_only=True)` reads them and a crafted file cannot
run code.

model.pt is a dict of plain types and tensors:

    architecture        "resnet" | "se_resnet" | "resnext"
    width_multiplier    1.0 for the report's network, 0.5 half-width, 0.25 quarter-width
    blocks              blocks per stage, [4, 4, 3] for the report's network
    params              the float network's trainable parameters
    quantization        absent (float, half precision), or how the int8 network was made
                        (format "int8", route, engine, calibration_images, calibration_data)
    test_time_augmentation  the views its accuracy was measured with ({"flip", "translate"})
    model               the state_dict

Files from before a key existed hold its default; other keys (a later version's) are ignored.
checkpoint.pt and best.pt hold "model" too, and the run's "config", which gives their network.
"""
from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import tempfile
from typing import Any, Callable, Dict, Optional, Tuple

import torch
from torch import nn

from .env import ExplainedError, quiet_deprecations
from .model import NetworkShape, count_parameters
from .recipes import TestTimeAugmentation

CHECKPOINT_FORMAT = 1


class CheckpointError(ExplainedError, RuntimeError):
    """A checkpoint or weights file is missing, unreadable, or from another configuration."""


class DiskFullError(ExplainedError, OSError):
    """An output could not be written for lack of space (a full disk, or a quota)."""

    def __str__(self) -> str:
        return self.strerror  # the explanation, without OSError's "[Errno 28]"


# --- atomic writes --------------------------------------------------------------------------

def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


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
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _no_space(path, len(content)) from None
        raise


def atomic_write_text(path: str, text: str) -> None:
    atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def atomic_write_json(path: str, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2) + "\n")


# --- reading safely -------------------------------------------------------------------------

def read_file(path: str, what: str) -> Any:
    """torch.load(path, weights_only=True), or a CheckpointError saying what the file is: a
    missing file, a damaged one, or a whole pickled model, whose loading would run code."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{what}: no such file")
    try:
        with quiet_deprecations():  # an int8 file holds quantized tensors, deprecated dtypes
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        text = str(error)
        pickled = re.search(r"GLOBAL ([\w.]+)", text)
        if pickled:
            raise CheckpointError(
                f"{what} holds pickled Python objects ({pickled[1]}), not only tensors: loading "
                "it would run code named in the file, which this project never does. If it is a "
                "whole saved model, save its weights where it was made: "
                "torch.save(model.state_dict(), 'weights.pt')") from None
        # torch's own text advises weights_only=False, which would run any code in the file:
        # only the reason its safe loader stopped is kept.
        reason = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n|$)", text)
        said = reason[1] if reason else f"{type(error).__name__}: {text.splitlines()[0][:200]}" \
            if text else type(error).__name__
        raise CheckpointError(f"{what} is not a readable weights file: damaged (corrupt), or "
                              f"not made by torch.save ({said})") from None


def load_checkpoint(path: str) -> Dict[str, Any]:
    """A checkpoint.pt or best.pt, read with weights_only=True."""
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path!r}")
    state = read_file(path, f"checkpoint {path!r}")
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"checkpoint {path!r} has no 'model' entry; it is not a "
                              "checkpoint of this project")
    return state


def save_checkpoint(path: str, state: Dict[str, Any]) -> None:
    """Write a checkpoint dict (tensors and plain types only) atomically."""
    atomic_write(path, lambda file: torch.save({"format": CHECKPOINT_FORMAT, **state}, file))


# --- weights files --------------------------------------------------------------------------

def save_weights(path: str, network: nn.Module,
                 test_time_augmentation: Optional[TestTimeAugmentation] = None) -> int:
    """Write model.pt (atomically) for a float network, in half precision on the CPU (about
    9.4 MB for the reference network), or an int8 one as it is (scales and zero points must
    keep float32), with its shape and the test-time augmentation its accuracy was measured
    with, so that it rebuilds, evaluates and predicts the same way; returns its size in bytes."""
    shape = getattr(network, "shape", None) or NetworkShape()
    content = {"architecture": shape.architecture, **shape.to_record(),
               "params": count_parameters(network)}
    int8_state = getattr(network, "int8_state", None)  # helpers/options/quantization.py
    if int8_state is not None:
        content.update(int8_state())
    else:
        content["model"] = {name: (value.half() if value.is_floating_point() else value).detach().cpu()
                            for name, value in network.state_dict().items()}
    if test_time_augmentation is not None:
        content["test_time_augmentation"] = test_time_augmentation.to_dict()
    atomic_write(path, lambda file: torch.save(content, file))
    return os.path.getsize(path)


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


def _state_dict(content: Any, what: str) -> Tuple[Dict[str, torch.Tensor], str]:
    """(state_dict, where in the file): a bare state_dict, or one under STATE_DICT_KEYS."""
    if _is_state_dict(content):
        return _unprefixed(content), "the file"
    for key in STATE_DICT_KEYS if isinstance(content, dict) else ():
        if _is_state_dict(content.get(key)):
            return _unprefixed(content[key]), f"its {key!r} entry"
    held = (f"a dict with keys {sorted(map(str, content))[:8]}" if isinstance(content, dict)
            else f"a {type(content).__name__}")
    raise CheckpointError(f"{what} holds {held}, and no network weights (a dict of tensors, bare "
                          f"or under one of {', '.join(map(repr, STATE_DICT_KEYS))})")


def mismatch(state: Dict[str, torch.Tensor], network: nn.Module) -> Optional[str]:
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


def read_weights(path: str, architecture: Optional[str] = None, name: str = "model_weights"
                 ) -> Tuple[nn.Module, Optional[TestTimeAugmentation]]:
    """(network in eval mode, the test-time augmentation its run measured it with) of a weights
    file: this project's model.pt (float or int8), best.pt or checkpoint.pt, a bare state_dict,
    or one saved by other code under one of STATE_DICT_KEYS, with wrapper prefixes taken off.
    The network is rebuilt at the size the file records (files that record nothing hold the
    reference network); `architecture` (None: the file's) must match the file's. The views are
    None where neither the file nor the metrics.json beside it records them. The one reader of
    weights files: a missing, damaged or mismatched file says so in a line or two."""
    what = f"{name}={path!r}"
    content = read_file(path, what)
    record = content if isinstance(content, dict) else {}
    # checkpoint.pt and best.pt record their network in the run's config.
    described = record if "architecture" in record else record.get("config") or {}
    recorded = described.get("architecture")
    if architecture is not None and recorded not in (None, architecture):
        raise CheckpointError(f"{what} holds a {recorded!r} network, but architecture="
                              f"{architecture!r}: set architecture={recorded!r}")
    shape = NetworkShape.from_record(described, architecture or "resnet")
    tta = record.get("test_time_augmentation")
    tta = TestTimeAugmentation.from_dict(tta) if isinstance(tta, dict) else recorded_tta(path)
    if (record.get("quantization") or {}).get("format") == "int8":
        from .options.quantization import rebuild

        try:
            network = rebuild(shape, record["model"], int(record.get("params", 0)), record["quantization"])
        except (KeyError, RuntimeError) as error:
            raise CheckpointError(f"{what} does not fit the int8 network {shape} that it records "
                                  f"({type(error).__name__}: {str(error).splitlines()[0][:200]})") from None
        return network, tta
    state, where = _state_dict(content, what)
    network = shape.build()
    problem = mismatch(state, network)
    if problem:
        raise CheckpointError(f"{what} does not fit this network ({where}: {problem}). Weights "
                              "load only into the architecture that made them: check "
                              "architecture, or train this network here")
    network.load_state_dict(state)  # values are cast to the network's precision
    return network.eval(), tta


def run_record(weights: str) -> Optional[dict]:
    """The metrics.json of the training run whose folder holds `weights`, if any. It describes
    that run's model.pt: its test accuracy is model.pt's, not a best.pt's beside it."""
    path = os.path.join(os.path.dirname(os.path.abspath(weights)), "metrics.json")
    if not os.path.isfile(path):
        return None
    with open(path) as file:
        metrics = json.load(file)
    return None if "evaluated_weights" in metrics else metrics


def recorded_tta(weights: str) -> Optional[TestTimeAugmentation]:
    """The test-time augmentation of a file that does not record its own (older model.pt
    files): that of the recipe of the run beside it, as its metrics.json says; None where none
    is recorded."""
    run = run_record(weights)
    if run is None or "recipe_settings" not in run:
        return None
    settings = run["recipe_settings"]
    return TestTimeAugmentation(bool(settings["tta_flip"]), int(settings.get("tta_translate", 0)))
