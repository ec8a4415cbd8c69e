"""The training step made fast on GPUs, three ways that compute the same thing.

* eager (helpers/step.py): PyTorch runs each operator as Python reaches it. The CPU launches
  several hundred small kernels per step, and on a large GPU it cannot launch them as fast as the
  GPU runs them (the profile in results/gpu-2026-11-26/ found the GPU idle 35-50 % of a step).
* compiled: `torch.compile` fuses the network and loss into fewer, larger kernels (BatchNorm
  with the ReLU after it, the loss with the classifier), forward and backward.
* compiled + CUDA graph: the whole compiled step, optimizer update included, is recorded once
  as a CUDA graph and replayed for every full batch with one launch, so the CPU never holds
  the GPU back. Inputs are copied into fixed buffers; the learning rate, which the schedule
  changes every step, is read by the graph from a one-element tensor.

`prepare_step` builds the fastest of these that this machine can run, warms it up (compiling
and capturing) before epoch 1 so that its cost is reported apart from the epochs' times, and
falls back, with a warning, to the next one if compiling or capturing fails. Warm-up trains on
a real batch and then puts weights, BatchNorm statistics and momentum back as they were.
"""
from __future__ import annotations

import contextlib
import time
import warnings
from typing import Callable, List, Sequence, Tuple

import torch
from torch import nn

from .step import EAGER, TrainingStep

COMPILED, CAPTURED = "compiled", "compiled + CUDA graph"
# The kinds that tests/test_step_gpu.py has shown, on a GPU, to give the eager step's losses and
# weights (its output is to be committed under results/gpu-step-check/; a CPU test keeps this list
# to what passed there: scripts/step_check.py reads it). compile="auto" takes the fastest of
# them and never another; until the check has passed on a GPU, it takes the eager step.
VERIFIED_ON_GPU: Tuple[str, ...] = ()


class CompiledStep(TrainingStep):
    """The same step with the network's forward pass and the loss compiled by torch.compile."""

    kind = COMPILED

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Shapes never change within a run except for an epoch's last batch: compiling for fixed
        # shapes gives the fastest kernels, at the cost of one more compile for that batch.
        self.forward_and_loss = torch.compile(self.forward_and_loss, dynamic=False)


class CapturedStep(CompiledStep):
    """The compiled step, optimizer update included, recorded as one CUDA graph.

    Full batches replay the graph; any other batch size (an epoch's last batch) runs the
    compiled step. The graph reads inputs from fixed buffers and the learning rate of each
    parameter group from a one-element tensor that is refreshed before every replay, so the
    optimizer's param_groups, the schedulers and the checkpoints keep plain float rates."""

    kind = CAPTURED
    cache_casts = False  # a cache filled during capture would point into the graph's memory
    graph = None

    def capture(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        """Record the step for batches shaped like these (call after a warm-up on them)."""
        images, targets = self.prepare_inputs(images, targets)
        self.static_images, self.static_targets = images.clone(), targets.clone()
        groups = self.optimizer.param_groups
        self.rates = [torch.tensor(float(g["lr"]), device=self.device) for g in groups]
        floats = [g["lr"] for g in groups]
        self.graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)  # the graph's backward then writes, not adds
        try:
            for group, rate in zip(groups, self.rates):
                group["lr"] = rate
            # thread_local: another thread's CUDA call (a DataLoader's pinning thread) cannot
            # invalidate the capture.
            with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
                loss, logits = self.forward_and_loss(self.static_images, self.static_targets)
                loss.backward()
                self.optimizer.step()
        finally:
            for group, rate in zip(groups, floats):
                group["lr"] = rate
        self.static_loss, self.static_logits = loss.detach(), logits.detach()

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if self.graph is None or images.shape != self.static_images.shape \
                or targets.shape != self.static_targets.shape:
            return super().__call__(images, targets)  # before capture, and odd-sized batches
        self.static_images.copy_(images, non_blocking=True)
        self.static_targets.copy_(targets, non_blocking=True)
        for group, rate in zip(self.optimizer.param_groups, self.rates):
            rate.fill_(group["lr"])  # a kernel on the GPU's queue: no waiting
        self.graph.replay()
        return self.static_loss, self.static_logits, self.static_targets


def choose_step_kind(compile_setting, device: torch.device, *, scaler=None,
                     distributed: bool = False, distillation: bool = False) -> Tuple[str, str]:
    """(kind, why) for the `compile` parameter on this machine."""
    if compile_setting is False:
        return EAGER, "compile=False"
    if compile_setting == "auto":
        if device.type != "cuda":
            return EAGER, "compile='auto' on the CPU, where compiling costs more than it saves"
        if torch.cuda.get_device_capability(device)[0] < 8:
            return EAGER, ("compile='auto' on a GPU older than compute capability 8.0 "
                           "(such as Colab's T4)")
    if device.type != "cuda":
        return COMPILED, "compile=True on the CPU (no CUDA graphs there)"
    blockers = [why for why, present in (("fp16 gradient scaling", scaler is not None),
                                         ("several ranks", distributed),
                                         ("a teacher network", distillation)) if present]
    kinds = [COMPILED] if blockers else [CAPTURED, COMPILED]
    if compile_setting == "auto":
        kinds = [kind for kind in kinds if kind in VERIFIED_ON_GPU]
        if not kinds:
            return EAGER, ("compile='auto' takes only step kinds verified on a GPU by "
                           "tests/test_step_gpu.py, and none of those allowed here is yet; "
                           "compile=True tries the compiled step")
    why = f"compile={compile_setting!r} on {torch.cuda.get_device_name(device)}"
    return kinds[0], why + (f"; no CUDA graph with {', '.join(blockers)}" if blockers else "")


class _SavedState:
    """Weights, BatchNorm statistics and momentum, copied so that they can be put back in
    place (a captured graph holds these very tensors, so they must not be replaced)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        self.tensors = [*model.parameters(), *model.buffers()]
        self.values = [t.detach().clone() for t in self.tensors]
        self.optimizer = optimizer
        self.momentum = {id(p): (s["momentum_buffer"].clone() if s.get("momentum_buffer") is not None
                                 else None)
                         for p, s in optimizer.state.items()}

    @torch.no_grad()
    def restore(self) -> None:
        for tensor, value in zip(self.tensors, self.values):
            tensor.copy_(value)
        for group in self.optimizer.param_groups:
            for parameter in group["params"]:
                buffer = self.optimizer.state.get(parameter, {}).get("momentum_buffer")
                if buffer is None:
                    continue
                saved = self.momentum.get(id(parameter))
                # A zero buffer gives the first step exactly what a missing one gives (SGD
                # without dampening): momentum * 0 + gradient.
                buffer.copy_(saved) if saved is not None else buffer.zero_()


def warm_up(step: TrainingStep, batch: Tuple[torch.Tensor, torch.Tensor],
            sizes: Sequence[int], steps: int = 3) -> None:
    """Run `steps` steps on the first `size` images of `batch` for every batch size (compiling
    for each), capture the graph of a CapturedStep, then put the model and optimizer back."""
    saved = _SavedState(step.model, step.optimizer)
    images, targets = batch
    try:
        # Before a capture, warm-up runs on a side stream, as the CUDA graphs docs prescribe.
        side_stream = torch.cuda.Stream() if step.kind == CAPTURED else None
        if side_stream is not None:
            side_stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side_stream) if side_stream is not None else contextlib.nullcontext():
            for size in sizes:
                for _ in range(steps):
                    step(images[:size], targets[:size])
        if side_stream is not None:
            torch.cuda.current_stream().wait_stream(side_stream)
            step.capture(images[:sizes[0]], targets[:sizes[0]])
            step(images[:sizes[0]], targets[:sizes[0]])  # one replay: fail here, if at all
            torch.cuda.synchronize(step.device)
    finally:
        step.model.train()
        saved.restore()


def prepare_step(kind: str, make: Callable[[type], TrainingStep],
                 batch: Tuple[torch.Tensor, torch.Tensor],
                 sizes: Sequence[int]) -> Tuple[TrainingStep, float, List[str]]:
    """(step, warm-up seconds, fallback notes): the step of `kind`, warmed up, or the next
    simpler kind that works here. `make(cls)` builds a step of class `cls`."""
    notes = []
    order = [CAPTURED, COMPILED, EAGER]
    for candidate in order[order.index(kind):]:
        step = make({CAPTURED: CapturedStep, COMPILED: CompiledStep, EAGER: TrainingStep}[candidate])
        if candidate == EAGER:
            return step, 0.0, notes
        started = time.perf_counter()
        try:
            warm_up(step, batch, sizes)
            return step, time.perf_counter() - started, notes
        except Exception as error:  # compiler and capture errors come in many types
            note = (f"the {candidate} training step failed ({type(error).__name__}: "
                    f"{str(error).splitlines()[0] if str(error) else ''}); falling back")
            warnings.warn(note)
            notes.append(note)
    raise AssertionError("unreachable: the eager step needs no warm-up")
