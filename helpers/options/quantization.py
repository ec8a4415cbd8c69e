"""Post-training static int8 quantization of a trained network, for inference on the CPU.

What it does: the float network (eval mode) is traced; every convolution is folded with its
BatchNorm (and fused with the ReLU after it), every residual addition with its ReLU; observers
record the range of each activation while `calibration_images` class-balanced *training* images
pass through (never test images), and of each weight per output channel; then every layer is
replaced by an int8 kernel: weights int8 per output channel, activations uint8 per tensor, with
the scales and zero points the observers chose. Nothing is trained. The default settings of the
platform's quantized engine are used as they are ('x86': fbgemm and oneDNN kernels; 'qnnpack'
on ARM), so nothing was tuned on any image.

The route, and why (results/int8-cpu/routes.txt: benchmarks/int8_routes.py on this project's
2-core development CPU, torch 2.14.1; docs/method.md): `torch.ao.quantization`'s FX graph mode
(prepare_fx / convert_fx). PyTorch has deprecated it in favour of torchao's PT2E flow
(torch.export, prepare_pt2e, convert_pt2e), which is the maintained route. But PT2E's int8
network only runs int8 kernels once `torch.compile` has lowered it, which needs a C++ compiler
at run time and a compile of each new network; uncompiled it simulates int8 with float kernels
and ran slower than the float network itself (64 against 109 images/s for the reference network;
compiled 1,056, FX 1,134). It also needs the torchao package, whose releases each fit a narrow
range of torch versions (this project supports torch >= 2.4), and saves a graph program, not a
state_dict. The FX route runs real int8 kernels in eager PyTorch on any CPU, with no compiler
and no new dependency, and its int8 state_dict loads with `torch.load(weights_only=True)`, so an
int8 model.pt is a weights file like any other. When PyTorch removes `torch.ao.quantization`
(its warning names a release that has passed; quantized tensor dtypes are deprecated as well),
`quantize` stops with a message saying so, and this module is what moves to PT2E.

Quantized kernels exist for the CPU only: an Int8Network computes on the CPU whatever device
its inputs are on, and `.to(device)` leaves it there.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..augment import normalize, to_nchw
from ..env import ExplainedError, quiet_deprecations
from ..model import NetworkShape, count_parameters
from ..settings import ConfigError

INT8 = "int8"
ROUTE = "torch.ao.quantization FX graph mode, post-training static"


class QuantizationError(ExplainedError, RuntimeError):
    """The network cannot be quantized here; the message says why and what to do."""


def engine() -> str:
    """The quantized engine this PyTorch uses on this CPU ('x86' on Intel and AMD, 'qnnpack'
    on ARM); it chooses the kernels and the observers' defaults."""
    return torch.backends.quantized.engine


def check_available() -> None:
    """Stop now, not after training, where this PyTorch cannot quantize on this CPU."""
    try:
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx  # noqa: F401
    except ImportError as error:
        raise QuantizationError(f"this PyTorch ({torch.__version__}) has no "
                                f"torch.ao.quantization FX graph mode ({error}); quantize='int8' "
                                "needs a PyTorch from 2.4 up to the release that removes it") from None
    if engine() == "none":
        raise QuantizationError(f"this PyTorch build has no quantized engine for this CPU "
                                f"(supported: {torch.backends.quantized.supported_engines}); "
                                "quantize='int8' cannot run here")


def _int8_graph(network: nn.Module, calibrate=None) -> nn.Module:
    """The network folded, observed (`calibrate(prepared)` runs images through it) and
    converted to int8 kernels; without `calibrate`, an int8 network of the same shape whose
    scales a saved state_dict then fills in."""
    check_available()
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    float_network = copy.deepcopy(network).float().cpu().eval()
    with quiet_deprecations():
        prepared = prepare_fx(float_network, get_default_qconfig_mapping(engine()),
                              example_inputs=(torch.zeros(1, 3, 32, 32),))
        if calibrate is not None:
            calibrate(prepared)
        return convert_fx(prepared)


class Int8Network(nn.Module):
    """An int8 network (a converted torch.fx graph) and what it was made from: its shape, the
    parameter count of its float network, and how it was quantized (`record`, as model.pt
    keeps it). Computes on the CPU; inputs and outputs stay on the caller's device."""

    def __init__(self, graph: nn.Module, shape: NetworkShape, float_parameters: int,
                 record: Dict[str, Any], float_network: Optional[nn.Module] = None):
        super().__init__()
        self.graph, self.shape, self.record = graph, shape, record
        self.float_parameters = float_parameters  # what count_parameters() reports
        # Beside the int8 network, not part of it (no submodule): a training run saves it as
        # model.pt. None where the int8 network was loaded from a file.
        object.__setattr__(self, "float_network", float_network)

    def int8_state(self) -> Dict[str, Any]:
        """What its model.pt holds beside the shape (helpers/files.py's save_weights): how it was
        quantized, and the int8 state_dict as it is (scales and zero points keep float32)."""
        return {"quantization": dict(self.record), "model": self.graph.state_dict()}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", enabled=False), quiet_deprecations():
            return self.graph(images.to("cpu", torch.float32)).to(images.device)

    def _apply(self, fn, recurse: bool = True):
        return self  # .to(device), .half(), channels_last: int8 kernels stay on the CPU as they are


def quantize(network: nn.Module, images: torch.Tensor, batch_size: int = 1024,
             calibration_data: str = "") -> Int8Network:
    """The int8 version of `network`, its activation ranges observed on `images` (uint8
    (N, 3, 32, 32) training images, normalized as for testing, never augmented)."""

    def calibrate(prepared: nn.Module) -> None:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                prepared(normalize(images[start:start + batch_size].cpu().float() / 255))

    shape = getattr(network, "shape", NetworkShape())
    graph = _int8_graph(network, calibrate)
    record = {"format": INT8, "route": ROUTE, "engine": engine(),
              "calibration_images": len(images), "calibration_data": calibration_data}
    return Int8Network(graph.eval(), shape, count_parameters(network), record, network)


def rebuild(shape: NetworkShape, state: Dict[str, Any], params: int,
            record: Dict[str, Any]) -> Int8Network:
    """An Int8Network of `shape` with a saved int8 state_dict (RuntimeError if it does not fit)."""
    graph = _int8_graph(shape.build())
    # Quantized layers take any weights they are given, whatever their shape: check first.
    expected, saved = _shapes(graph.state_dict()), _shapes(state)
    if expected != saved:
        differing = sorted(set(expected) ^ set(saved)) or \
            [key for key in expected if expected[key] != saved[key]]
        key = differing[0]
        raise RuntimeError(f"{len(differing)} entries differ, e.g. {key!r}: "
                           f"{saved.get(key, 'missing')} in the file, {expected.get(key, 'missing')} here")
    with quiet_deprecations():
        graph.load_state_dict(state)
    return Int8Network(graph.eval(), shape, params, record)


def _shapes(state: Dict[str, Any]) -> Dict[str, Any]:
    """Each state_dict entry's shape (an int8 linear layer's entry is a (weight, bias) pair)."""
    def shape(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return list(value.shape)
        if isinstance(value, (tuple, list)):
            return [shape(item) for item in value]
        return repr(value)
    return {key: shape(value) for key, value in state.items()}


# --- what a run with quantize='int8' adds to the pipeline (helpers/stages.py) -----------------

def check_quantizable(members: Sequence[nn.Module], paths: Sequence[str]) -> None:
    """Stop at the start, not after training, where quantize='int8' cannot be done: on this
    PyTorch and CPU, for several networks (`members`, read from `paths`), or for one already int8."""
    check_available()
    if len(members) > 1:
        raise ConfigError(f"quantize='int8' quantizes one network, and model_weights lists "
                          f"{len(members)}: quantize each model.pt in a run of its own, then "
                          "list their model-int8.pt files in model_weights as an ensemble")
    if members and isinstance(members[0], Int8Network):
        raise ConfigError(f"model_weights={paths[0]!r} is already int8: set "
                          "quantize='off' to evaluate it as it is")


def quantize_calibrated(network: nn.Module, images: np.ndarray, described: str,
                        batch_size: int) -> Int8Network:
    """`network` quantized with its activation ranges observed on `images` ((N, 32, 32, 3)
    uint8 training images from calibration_set, described in words by `described`)."""
    int8 = quantize(network, to_nchw(images), batch_size, described)
    print(f"quantized to int8 ({ROUTE}, engine {engine()!r}), activation ranges from "
          f"{described}; the int8 network computes on the CPU")
    return int8
