"""Weights files and the networks they rebuild: float or int8, of any width and depth.

model.pt is a dict of plain types and tensors (`torch.load(weights_only=True)` reads it):

    architecture        "resnet" | "se_resnet" | "resnext"
    width_multiplier    1.0 for the report's network, 0.5 half-width, 0.25 quarter-width
    blocks              blocks per stage, [4, 4, 3] for the report's network
    params              the float network's trainable parameters
    quantization        absent (float, half precision), or how the int8 network was made
                        (format "int8", route, engine, calibration_images, calibration_data)
    test_time_augmentation  the views its accuracy was measured with ({"flip", "translate"})
    model               the state_dict

Files from before a key existed hold its default; other keys (a later version's) are ignored.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

import torch
from torch import nn

from .checkpoints import CheckpointError, atomic_write, load_weights, read_file, read_weights, save_weights
from .model import NetworkShape, count_parameters
from .quantization import INT8, Int8Network, quiet_deprecations, rebuild


def parameter_count(network: nn.Module) -> int:
    """Trainable parameters of the network, or of the float network an int8 one was made from."""
    return network.params if isinstance(network, Int8Network) else count_parameters(network)


def shape_of(network: nn.Module, architecture: str = "resnet") -> NetworkShape:
    return getattr(network, "shape", None) or NetworkShape(architecture)


def network_record(network: nn.Module) -> Dict[str, Any]:
    """What metrics.json records of the tested network beside `architecture` and `params`."""
    shape = shape_of(network)
    return {"width_multiplier": shape.width_multiplier, "blocks": list(shape.blocks),
            "quantization": dict(network.record) if isinstance(network, Int8Network) else None}


def float_network(network: nn.Module) -> nn.Module:
    """The float network: itself, or the one an int8 network was quantized from in this run."""
    return getattr(network, "float_network", None) or network


def save_network(path: str, network: nn.Module, architecture: str = "resnet",
                 test_time_augmentation: Optional[dict] = None) -> int:
    """Write model.pt (atomically) for a float or an int8 network, with the test-time
    augmentation it is evaluated with; returns its size in bytes."""
    shape = shape_of(network, architecture)
    record = {**shape.to_record(), "params": parameter_count(network)}
    if isinstance(network, Int8Network):
        # The int8 state_dict as it is: scales and zero points must keep float32.
        content = {**record, "quantization": dict(network.record), "model": network.graph.state_dict()}
        if test_time_augmentation is not None:
            content["test_time_augmentation"] = test_time_augmentation
        atomic_write(path, lambda file: torch.save(content, file))
    else:
        save_weights(path, network, shape.architecture, test_time_augmentation, record)
    return os.path.getsize(path)


def load_network(path: str, architecture: Optional[str] = None,
                 name: str = "model_weights") -> nn.Module:
    """The network a weights file holds, rebuilt at the size the file records, in eval mode:
    an Int8Network for an int8 file. `architecture` (None: the file's) must match the file's."""
    with quiet_deprecations():  # an int8 file holds quantized tensors, whose dtypes PyTorch deprecates
        content = read_file(path, name)
    record = content if isinstance(content, dict) else {}
    if architecture is not None and record.get("architecture") not in (None, architecture):
        raise CheckpointError(f"{name}={path!r} holds a {record['architecture']!r} network, but "
                              f"architecture={architecture!r}: set architecture="
                              f"{record['architecture']!r}")
    shape = NetworkShape.from_record(record, architecture or "resnet")
    if (record.get("quantization") or {}).get("format") == INT8:
        try:
            return rebuild(shape, record["model"], int(record.get("params", 0)), record["quantization"])
        except (KeyError, RuntimeError) as error:
            raise CheckpointError(f"{name}={path!r} does not fit the int8 network {shape} that it "
                                  f"records ({type(error).__name__}: "
                                  f"{str(error).splitlines()[0][:200]})") from None
    recorded = read_weights(path, name, content)[1]
    shape = NetworkShape.from_record(record, architecture or recorded or "resnet")
    return load_weights(path, shape.build(), architecture, name, content).eval()
