"""The networks: the reference ResNet (3x3 stem, BasicBlocks [4, 4, 3] at 64/128/256 channels,
4,697,162 parameters) and the report's future-work variants on the same body, all under the
assignment's budget of 5,000,000 trainable parameters.

    resnet      the report's network
    se_resnet   the same with squeeze-and-excitation in every block (Hu et al. 2018)
    resnext     grouped-convolution bottleneck blocks (Xie et al. 2017) in the same stages

Smaller students for distillation keep the body and shrink it: a width multiplier scales every
layer's channels (the term of MobileNets, Howard et al. 2017; parameters fall with its square),
and `blocks` takes fewer blocks per stage. A NetworkShape names all three choices; model.pt
records it, so that a file rebuilds its own network.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Sequence, Tuple

import torch
from torch import nn
import torch.nn.functional as F

REFERENCE_PARAMETER_COUNT = 4_697_162
PARAMETER_BUDGET = 5_000_000  # the assignment: strictly fewer trainable parameters than this


def projection(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """The shortcut: identity, or a 1x1 convolution + BatchNorm where the shape changes."""
    if stride == 1 and in_channels == out_channels:
        return nn.Sequential()
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                         nn.BatchNorm2d(out_channels))


class SqueezeExcitation(nn.Module):
    """Rescale each channel by a gate computed from all channels' global averages."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.squeeze = nn.Linear(channels, channels // reduction)
        self.excite = nn.Linear(channels // reduction, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.excite(F.relu(self.squeeze(x.mean((2, 3))))))
        return x * gate[:, :, None, None]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (He et al., 2016), optionally with
    squeeze-and-excitation on the residual branch."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 squeeze_excitation: bool = False):
        super().__init__()
        # No conv bias: the BatchNorm that follows has its own shift.
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.excitation = SqueezeExcitation(out_channels) if squeeze_excitation else nn.Identity()
        # A 1x1 projection only where the shape changes, as in the reference report.
        self.shortcut = projection(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.excitation(self.bn2(self.conv2(out)))
        return F.relu(out + self.shortcut(x))


class ResNeXtBlock(nn.Module):
    """1x1 convolution to `expansion` times the width, a 3x3 convolution in `cardinality` groups,
    1x1 back to the width, with a residual connection. Expansion 4 with 16 groups gives the
    [4, 4, 3] body 4,644,938 parameters: the reference network's budget, spent on 16 parallel
    paths instead of one."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 cardinality: int = 16, expansion: int = 4):
        super().__init__()
        inner = out_channels * expansion
        self.reduce = nn.Conv2d(in_channels, inner, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.grouped = nn.Conv2d(inner, inner, 3, stride=stride, padding=1, groups=cardinality,
                                 bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.expand = nn.Conv2d(inner, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = projection(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.reduce(x)))
        out = F.relu(self.bn2(self.grouped(out)))
        out = self.bn3(self.expand(out))
        return F.relu(out + self.shortcut(x))


Block = Callable[[int, int, int], nn.Module]  # (in_channels, out_channels, stride) -> block


class ResNet(nn.Module):
    """CIFAR-style ResNet: stem, one stage of blocks per entry of `blocks`, pool, linear. The
    defaults are the reference project's 4,697,162-parameter network."""

    def __init__(self, blocks: Sequence[int] = (4, 4, 3), widths: Sequence[int] = (64, 128, 256),
                 strides: Sequence[int] = (1, 2, 2), stem_width: int = 64, num_classes: int = 10,
                 block: Block = BasicBlock):
        super().__init__()
        if not len(blocks) == len(widths) == len(strides):
            raise ValueError(f"blocks {list(blocks)}, widths {list(widths)} and strides "
                             f"{list(strides)} must have the same length")
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem_width, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
        )
        stages, in_channels = [], stem_width
        for count, width, stride in zip(blocks, widths, strides):
            # Only the first block of a stage changes resolution or width.
            layers = [block(in_channels, width, stride)]
            layers += [block(width, width, 1) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            in_channels = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.classifier(torch.flatten(self.pool(x), 1))


STAGE_WIDTHS = (64, 128, 256)  # the reference network's channels per stage (the stem has 64)
REFERENCE_BLOCKS = (4, 4, 3)


def scaled_width(channels: int, width_multiplier: float) -> int:
    """channels x width_multiplier, rounded to a multiple of 8 (MobileNet's `make_divisible`:
    vector units and ResNeXt's 16 groups need round channel counts), at least 8."""
    return max(8, round(channels * width_multiplier / 8) * 8)


BLOCKS = {
    "resnet": BasicBlock,
    "se_resnet": lambda i, o, s: BasicBlock(i, o, s, squeeze_excitation=True),
    "resnext": ResNeXtBlock,
}
ARCHITECTURES = tuple(BLOCKS)


@dataclass(frozen=True)
class NetworkShape:
    """Which network: the block (architecture), the width multiplier and the blocks per stage.
    The defaults are the report's network."""

    architecture: str = "resnet"
    width_multiplier: float = 1.0
    blocks: Tuple[int, ...] = REFERENCE_BLOCKS

    @property
    def widths(self) -> Tuple[int, ...]:
        return tuple(scaled_width(channels, self.width_multiplier) for channels in STAGE_WIDTHS)

    @property
    def is_full_size(self) -> bool:
        return self.width_multiplier == 1.0 and tuple(self.blocks) == REFERENCE_BLOCKS

    def build(self) -> ResNet:
        """The network, the one way the project builds one (ValueError for an unknown
        architecture). It keeps its shape, which model.pt records."""
        if self.architecture not in BLOCKS:
            raise ValueError(f"architecture={self.architecture!r} is not one of "
                             f"{', '.join(map(repr, ARCHITECTURES))}")
        network = ResNet(self.blocks, self.widths, (1, 2, 2), self.widths[0], 10,
                         BLOCKS[self.architecture])
        network.shape = self
        return network

    def to_record(self) -> dict:
        """The model.pt keys that rebuild this network."""
        return {"architecture": self.architecture, "width_multiplier": self.width_multiplier,
                "blocks": list(self.blocks)}

    @classmethod
    def from_record(cls, record: dict, architecture: str = "resnet") -> "NetworkShape":
        """The shape a model.pt records; files from before a key existed hold its default."""
        return cls(record.get("architecture") or architecture,
                   float(record.get("width_multiplier", 1.0)),
                   tuple(record.get("blocks", REFERENCE_BLOCKS)))

    def __str__(self) -> str:
        """"'resnet'", or "'resnet', width_multiplier=0.25, blocks=[2, 2, 2]"."""
        text = repr(self.architecture)
        if self.width_multiplier != 1.0:
            text += f", width_multiplier={self.width_multiplier:g}"
        if tuple(self.blocks) != REFERENCE_BLOCKS:
            text += f", blocks={list(self.blocks)}"
        return text


def device_of(network: nn.Module) -> torch.device:
    """Where a network computes: its first parameter's or buffer's device (an int8 network
    has no parameters, only buffers and packed weights), the CPU if it has neither."""
    tensors = [*network.parameters(), *network.buffers()]
    return tensors[0].device if tensors else torch.device("cpu")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters: every nn.Parameter (BatchNorm's running statistics are
    buffers, not parameters), counted whether or not gradients are on, so the frozen EMA copy of
    a network counts as the network. An int8 network counts as the float network it was made
    from, whose count it keeps (`float_parameters`)."""
    recorded = getattr(model, "float_parameters", None)
    return recorded if recorded is not None else sum(p.numel() for p in model.parameters())


def layer_table(model: ResNet) -> List[dict]:
    """Stage, output shape and parameters of the stem, every block, the pool and the classifier,
    for one 32x32 image; the last row is the total."""
    rows, hooks = [], []
    named = [("stem", model.stem)]
    named += [(f"stage {s + 1} block {b + 1}", block)
              for s, stage in enumerate(model.stages) for b, block in enumerate(stage)]
    named += [("pool", model.pool), ("classifier", model.classifier)]
    for name, module in named:
        def record(module, inputs, output, name=name):
            rows.append({"layer": name, "kind": type(module).__name__,
                         "output": tuple(output.shape[1:]), "params": count_parameters(module)})
        hooks.append(module.register_forward_hook(record))
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, 32, 32, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    rows.append({"layer": "total", "kind": "", "output": rows[-1]["output"],
                 "params": count_parameters(model)})
    return rows


def format_layer_table(rows: List[dict]) -> str:
    """The layer table as aligned text."""
    lines = [f"{'layer':<20} {'kind':<18} {'output shape':<16} {'parameters':>12}"]
    for row in rows:
        shape = " x ".join(map(str, row["output"]))
        lines.append(f"{row['layer']:<20} {row['kind']:<18} {shape:<16} {row['params']:>12,}")
    return "\n".join(lines)
