"""The training step: forward pass (under mixed precision where asked), loss (with a teacher:
the distillation loss), backward pass and SGD update of one batch.

helpers/options/compiled_step.py holds the same step through torch.compile (with CUDA graphs on
GPUs), for compile=True.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

EAGER = "eager"


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      base_loss: Callable, weight: float, temperature: float) -> torch.Tensor:
    """(1 - w) * base_loss + w * T^2 * KL(teacher || student) on T-softened distributions
    (Hinton et al. 2015; T^2 keeps the soft term's gradients the size of the hard term's)."""
    soft = F.kl_div(F.log_softmax(logits.float() / temperature, 1),
                    F.softmax(teacher_logits.float() / temperature, 1), reduction="batchmean")
    return (1 - weight) * base_loss(logits, targets) + weight * temperature ** 2 * soft


class Distillation:
    """A teacher network (in eval mode) and how strongly the student follows it."""

    def __init__(self, teacher: nn.Module, weight: float, temperature: float):
        self.teacher, self.weight, self.temperature = teacher.eval(), weight, temperature

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, images: torch.Tensor,
             base_loss: Callable) -> torch.Tensor:
        with torch.inference_mode():  # the teacher learns nothing: no graph, no saved tensors
            teacher_logits = self.teacher(images)
        # A copy made outside inference mode, so that autograd may save it for the backward.
        return distillation_loss(logits, teacher_logits.clone(), targets, base_loss,
                                 self.weight, self.temperature)


class TrainingStep:
    """One eager SGD step; returns (loss, logits, targets), detached and on the device, for the
    epoch's running totals (so that the targets are not copied to the device a second time)."""

    kind = EAGER

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable, *,
                 scaler: Optional[torch.amp.GradScaler] = None,
                 amp_dtype: Optional[torch.dtype] = None, channels_last: bool = False,
                 distillation: Optional[Distillation] = None):
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.scaler, self.amp_dtype, self.channels_last = scaler, amp_dtype, channels_last
        self.distillation = distillation
        self.device = next(model.parameters()).device

    def prepare_inputs(self, images: torch.Tensor, targets: torch.Tensor):
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, targets.to(self.device, non_blocking=True)

    def forward_and_loss(self, images: torch.Tensor,
                         targets: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(self.device.type, dtype=self.amp_dtype,
                            enabled=self.amp_dtype is not None):
            logits = self.model(images)
            if self.distillation is not None:
                loss = self.distillation.loss(logits, targets, images, self.loss_fn)
            else:
                loss = self.loss_fn(logits, targets)
        return loss, logits

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        images, targets = self.prepare_inputs(images, targets)
        loss, logits = self.forward_and_loss(images, targets)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return loss.detach(), logits.detach(), targets


def eager_reason(compile_setting, device: torch.device) -> Optional[str]:
    """Why `compile` gives the eager step on `device` without trying a compiled one (as said in
    the run's log), or None where helpers/options/compiled_step.py must choose."""
    if compile_setting is False:
        return "compile=False"
    if compile_setting == "auto" and device.type != "cuda":
        return "compile='auto' on the CPU, where compiling costs more than it saves"
    return None
