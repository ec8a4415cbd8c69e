"""The reference ResNet: 3x3 stem, BasicBlocks [4, 4, 3] at 64/128/256 channels, 4,697,162 parameters."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

REFERENCE_PARAMETER_COUNT = 4_697_162


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (He et al., 2016)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        # No conv bias: the BatchNorm that follows has its own shift.
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            # A 1x1 projection only where the shape changes, as in the reference report.
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet: stem, one stage of BasicBlocks per entry of `blocks`, pool, linear."""

    def __init__(self, blocks: Sequence[int], widths: Sequence[int], strides: Sequence[int],
                 stem_width: int, num_classes: int):
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
            stages.append(self._make_stage(in_channels, width, count, stride))
            in_channels = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(in_channels, num_classes)

    @staticmethod
    def _make_stage(in_channels: int, width: int, count: int, stride: int) -> nn.Sequential:
        # Only the first block of a stage changes resolution or width.
        layers = [BasicBlock(in_channels, width, stride)]
        layers += [BasicBlock(width, width, 1) for _ in range(count - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.classifier(torch.flatten(self.pool(x), 1))


def build_resnet(blocks: Sequence[int] = (4, 4, 3), widths: Sequence[int] = (64, 128, 256),
                 strides: Sequence[int] = (1, 2, 2), stem_width: int = 64,
                 num_classes: int = 10) -> ResNet:
    """Build the network; the defaults are the reference project's 4,697,162-parameter ResNet."""
    return ResNet(blocks, widths, strides, stem_width, num_classes)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
